#!/usr/bin/env bash
# The main job on a fresh machine: set up, then train a small denoiser on the built-in
# sample data (600 steps: half a minute to two minutes on a 2-core CPU) and write the results to demo_output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/napari-gan demo --out demo_output "$@"
