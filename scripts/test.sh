#!/usr/bin/env bash
# Run the whole test suite on a bare Debian machine: installs the system packages headless
# Qt needs, the Python environment, then runs pytest with a virtual X display (Xvfb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --gui
export QT_QPA_PLATFORM=xcb NAPARI_GAN_SYNC_WORKERS=0 OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest -p no:cacheprovider "$@"
