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


#: environment variables that choose the CPU code paths (the AVX2 emulation sets them)
ISA_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "NAPARI_GAN_CPU_BF16")
#: the lscpu flags that decide the CPU path's speed
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_info() -> dict:
    """The CPU model and its relevant instruction-set flags (``lscpu``), the code-path
    environment variables set for this process, and whether napari-gan uses bf16 here."""
    info = {"model": platform.processor() or platform.machine(), "flags": [],
            "env": {k: os.environ[k] for k in ISA_ENV if k in os.environ}}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and info["model"] in ("", platform.machine()):
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                info["flags"] = [f for f in CPU_FLAGS if f in have]
                break
    except OSError:
        pass
    try:
        import torch

        from napari_gan.core.device import uses_bf16

        info["aten_capability"] = torch.backends.cpu.get_cpu_capability()
        info["bf16"] = uses_bf16(torch.device("cpu"))
    except Exception:  # noqa: BLE001 - informative only
        pass
    return info


def cpu_line(info: dict) -> str:
    """One line for a table caption: model, flags, code-path variables."""
    env = " ".join(f"{k}={v}" for k, v in info.get("env", {}).items())
    return (f"{info.get('model')}; flags {' '.join(info.get('flags', [])) or '-'}"
            + (f"; {env}" if env else "") + f"; ATen {info.get('aten_capability', '?')}"
            + f"; {'bf16 autocast' if info.get('bf16') else 'float32'}")
