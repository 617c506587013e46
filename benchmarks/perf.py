"""Shared pieces of the speed benchmarks (cpu_throughput.py, gpu_suite.py): synthetic data,
trainers built exactly as the CLI builds them, timing loops and model-FLOP counting.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` over real training
steps (forward, backward and, where a step has one, the double backward of R1 / path
length), i.e. the model FLOPs the step performs, 2 FLOPs per multiply-add; elementwise
work is not counted.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

#: dense bf16 tensor-core peak (TFLOP/s) by GPU name (NVIDIA data sheets, without sparsity)
BF16_PEAK_TFLOPS = {
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H100": 989.4,      # SXM5 (the "H100 80GB HBM3")
    "H200": 989.4,
    "A100": 312.0,
}


def bf16_peak_tflops(name: str) -> float | None:
    for key, value in BF16_PEAK_TFLOPS.items():
        if key in name:
            return value
    return None


def smooth_planes(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` structured (1, size, size) float32 planes (blurred noise, 0..200)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    planes = []
    for _ in range(n):
        img = ndimage.gaussian_filter(rng.random((size, size)), 3.0)
        img = (img - img.min()) / (img.max() - img.min()) * 200
        planes.append(img.astype(np.float32)[None])
    return planes


def pix2pix_trainer(device, batch: int = 8, patch: int = 96, adv_weight: float = 1.0, amp: bool = True,
                    compile: bool = False, gpu_patches: bool | None = None, planes: int = 4,
                    size: int = 512, out_dir: str | None = None, **cfg_kw):
    """A Pix2Pix trainer on synthetic noisy/clean pairs; adversarial from the first step."""
    from napari_gan.core.data import PairedSet, poisson_gaussian_noise
    from napari_gan.core.training.base import Budget
    from napari_gan.core.families.pix2pix import Pix2PixConfig, Pix2PixTrainer

    clean = smooth_planes(planes, size)
    rng = np.random.default_rng(1)
    noisy = [poisson_gaussian_noise(c, 30, 0.02, rng) for c in clean]
    data = PairedSet.build(noisy, clean)
    cfg = Pix2PixConfig(batch=batch, patch=patch, adv_weight=adv_weight, adv_warmup=0.0, amp=amp,
                        lr_decay=False, **cfg_kw)
    out_dir = out_dir or tempfile.mkdtemp(prefix="napari-gan-perf-")
    return Pix2PixTrainer(cfg, data, out_dir, Budget(steps=10**9), device, compile=compile,
                          gpu_patches=gpu_patches)


def stylegan2_trainer(device, resolution: int, size: str = "small", batch: int | None = None,
                      compile: bool = False, amp: bool = True, out_dir: str | None = None):
    """A StyleGAN2 trainer (auto hyper-parameters) on synthetic structured images."""
    from napari_gan.core.training.base import Budget
    from napari_gan.core.families.stylegan2 import ImageSet, StyleGAN2Config, StyleGAN2Trainer

    planes = smooth_planes(4, max(4 * resolution, 256))
    data = ImageSet.build(planes, resolution)
    cfg = StyleGAN2Config(resolution=resolution, size=size, batch=batch, compile=compile, amp=amp,
                          eval_images=8)
    out_dir = out_dir or tempfile.mkdtemp(prefix="napari-gan-perf-")
    return StyleGAN2Trainer(cfg, data, out_dir, Budget(steps=10**9), device)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step_fn, device, warmup: int = 3, min_steps: int = 5, min_seconds: float = 5.0,
               max_steps: int = 10**6) -> tuple[int, float]:
    """Run ``step_fn`` ``warmup`` times, then at least ``min_steps`` times and ``min_seconds``;
    return (timed steps, seconds)."""
    for _ in range(warmup):
        step_fn()
    sync(device)
    n, t0 = 0, time.perf_counter()
    while n < min_steps or (time.perf_counter() - t0 < min_seconds and n < max_steps):
        step_fn()
        n += 1
    sync(device)
    return n, time.perf_counter() - t0


def count_flops(fn, steps: int = 1) -> float:
    """Model FLOPs of ``steps`` calls of ``fn`` (averaged per call).

    Uses the FLOP formulas of ``torch.utils.flop_counter`` (the ones FlopCounterMode uses)
    in a plain dispatch mode: FlopCounterMode's module tracker cannot follow
    ``autograd.grad`` (R1, path length), this counter can.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Counter.total += formula(*args, **kwargs, out_val=out)
            return out

    with Counter():
        for _ in range(steps):
            fn()
    return Counter.total / steps


@contextmanager
def peak_gpu_memory(device):
    """Yields a dict whose 'bytes' is the peak allocated GPU memory inside the block."""
    import torch

    box = {"bytes": None}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    yield box
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        box["bytes"] = torch.cuda.max_memory_allocated(device)


def predictor(device, width: int = 32, depth: int = 3):
    """A default-architecture Pix2Pix predictor with random weights (speed does not depend on them)."""
    import torch

    from napari_gan.core.data import Normalizer
    from napari_gan.core.inference import Predictor
    from napari_gan.core.families.pix2pix import Pix2PixConfig, build_generator

    torch.manual_seed(0)
    cfg = Pix2PixConfig(width=width, depth=depth)
    norm = Normalizer([0.0], [200.0])
    return Predictor(build_generator(cfg), {"scale": 1, "depth": depth, "in_channels": 1, "out_channels": 1},
                     norm, norm, device)


def unet_flops_per_pixel(device, width: int = 32, depth: int = 3, tile: int = 256) -> float:
    """Forward model FLOPs per input pixel of the uNet (counted on one tile)."""
    import torch

    p = predictor(device, width, depth)
    x = torch.zeros(1, 1, tile, tile, device=device)
    with torch.no_grad():   # (inference_mode tensors bypass the counting dispatch mode)
        flops = count_flops(lambda: p.G(x))
    return flops / tile**2


def write_markdown(path: Path, title: str, header: list[str], rows: list[list], notes: list[str] = ()) -> Path:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    path.write_text("\n".join(lines) + "\n")
    return path
