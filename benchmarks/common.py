"""Shared helpers for the benchmark scripts: the W2S data split, machine description."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
W2S = Path(os.environ.get("W2S_DIR", ROOT.parent / "shared" / "data" / "w2s"))
OUT = ROOT / "benchmarks" / "out"
DOCS_IMAGES = ROOT / "docs" / "images"


def w2s_pairs(fovs: range, channels=(0, 1, 2), crop: int | None = None):
    """(noisy, clean) uint8 arrays for the given fields of view (numbers 1-60)."""
    import tifffile

    if not (W2S / "noisy").is_dir():
        raise SystemExit(f"W2S data not found at {W2S} (set W2S_DIR)")
    noisy, clean = [], []
    for fov in fovs:
        for ch in channels:
            name = f"{fov:03d}_{ch}.tif"
            n, c = tifffile.imread(W2S / "noisy" / name), tifffile.imread(W2S / "clean" / name)
            if crop:
                n, c = n[:crop, :crop], c[:crop, :crop]
            noisy.append(n)
            clean.append(c)
    return noisy, clean


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def save_json(name: str, data) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(data, indent=2, default=float))
    return path


def load_json(name: str):
    path = OUT / name
    return json.loads(path.read_text()) if path.exists() else None
