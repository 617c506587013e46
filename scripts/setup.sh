#!/usr/bin/env bash
# Set up everything napari-gan needs on a bare Debian machine (run as root or with sudo):
# system packages for Python and headless Qt, then a virtual environment in .venv with the
# CPU build of PyTorch and napari-gan installed editable. Safe to run again: it only adds
# what is missing. Usage: bash scripts/setup.sh [--gui]   (--gui: Qt/napari test stack)
set -euo pipefail
cd "$(dirname "$0")/.."
want_gui=0
[ "${1:-}" = "--gui" ] && want_gui=1

SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing system packages: ${missing[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

if command -v apt-get >/dev/null; then
    python3 -c "import venv, ensurepip" 2>/dev/null || apt_install python3 python3-venv python3-pip
    if [ "$want_gui" = 1 ]; then
        apt_install xvfb xauth libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
            libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxkbcommon-x11-0 libxcb-cursor0 \
            libxcb-shape0 libxcb-xkb1 libegl1 libdbus-1-3 libgl1-mesa-dri libglib2.0-0 libfontconfig1
    fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
PIP=".venv/bin/python -m pip"
# The CPU build of PyTorch first: a bare 'torch' requirement would pull GBs of CUDA packages.
.venv/bin/python -c "import torch" 2>/dev/null || $PIP install -q "torch==2.13.0" \
    || $PIP install -q torch
if [ "$want_gui" = 1 ]; then
    $PIP install -q -e ".[testing]"
else
    $PIP install -q -e .
fi
