"""``napari-gan demo``: train a small denoiser on built-in sample data and show the result.

The demo never replaces a file: when its --out folder already holds anything (an earlier
demo, the user's own files), it writes into a new subfolder ``demo-1``, ``demo-2``, ...
of it and says so."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_device_arg


DEMO_STEPS = 600


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="train a small denoiser on built-in sample data (600 steps: half a minute "
                                    "to two minutes on a 2-core CPU)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo_output"),
                   help="folder for the results (when it already holds files: a new subfolder demo-N of it)")
    # A step budget, not a time one, so every machine reaches the same result: over 30 dB on the
    # held-out rows (docs/benchmarks.md, section 2d: float32 on AVX2, seeds 0/1/2: 36.8, 33.8,
    # 37.6 dB in 71-76 s; bf16: 36.4, 33.6 dB in 37 s)
    p.add_argument("--steps", type=int, default=DEMO_STEPS, help="training steps")
    p.add_argument("--minutes", type=float, help="train for this many minutes instead of --steps")
    add_device_arg(p)
    from ..core import settings
    from ..core.training.base import RunSettings

    settings.add_arguments(p, RunSettings, only=("seed",))
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ..core import samples
    from ..core.data import PairedSet
    from ..core.device import describe_device, resolve_device
    from ..core.inference import load_predictor
    from ..core.io import check_writable, write_tiff
    from ..core.metrics import psnr, ssim
    from ..core.training.base import Budget, RunSettings
    from ..core.families.pix2pix import Pix2PixConfig, Pix2PixTrainer
    from .apply import _check_finite
    from .common import exit_status, run_trainer

    # the options first (the ranges declared in RunSettings), then the folder
    steps = None if args.minutes is not None else args.steps
    RunSettings(steps=steps, minutes=args.minutes, seed=args.seed)
    budget = Budget(steps=steps) if steps is not None else Budget(minutes=args.minutes)
    device = resolve_device(args.device)
    out = claim_folder(args.out.expanduser())
    check_writable(out / "noisy.tif")
    noisy, clean = samples.noisy_clean_pair(seed=args.seed)
    write_tiff(out / "noisy.tif", noisy)
    write_tiff(out / "clean.tif", clean)
    print(f"demo: denoising scikit-image's 'cell' image ({clean.shape[1]}x{clean.shape[0]}) with "
          f"synthetic Poisson-Gaussian noise; training on {describe_device(device)}", flush=True)

    # the networks a float32 CPU trains by default (WIDTHS_FLOAT32_CPU), on every machine alike
    cfg = Pix2PixConfig(task="denoise", patch=64, batch=8, width=16, disc_width=16, val_fraction=0.15)
    data = PairedSet.build([noisy[None]], [clean[None]], names=["cell"])
    trainer = Pix2PixTrainer(cfg, data, out / "model", budget, device, args.seed, log_every=25, val_every=100)
    status = exit_status(run_trainer(trainer))
    if status:
        return status   # stopped by SIGTERM/SIGHUP: the model is saved, the rest skipped

    denoised = load_predictor(out / "model", args.device).predict(noisy)
    _check_finite(denoised, "the noisy image", out / "model")
    write_tiff(out / "denoised.tif", denoised)
    held_out = slice(trainer.data.inputs[0].shape[-2], None)  # rows never seen in training
    clean_f = clean.astype(np.float32)
    print("\n                       PSNR (dB)   SSIM")
    for label, image in (("noisy input", noisy), ("napari-gan denoised", denoised)):
        a, b = image[held_out], clean_f[held_out]
        print(f"{label:22s} {psnr(a, b, 255):9.2f}  {ssim(a, b, 255):6.3f}")
    print("(measured on the bottom 15% of rows, held out from training)")
    png = _side_by_side(out / "demo.png", noisy, denoised, clean)
    print(f"\nwrote {out / 'denoised.tif'} and {png}")
    return 0


def claim_folder(out: Path) -> Path:
    """``out`` when it is new or empty, else a new subfolder ``demo-N`` of it (made here, so
    two demos started together never share one): the demo never replaces a file."""
    from ..core.errors import NapariGanError

    if out.exists() and not out.is_dir():
        raise NapariGanError(f"--out '{out}' is a file; give a folder for the demo's results.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not any(out.iterdir()):
            return out
        for n in range(1, 10_000):
            sub = out / f"demo-{n}"
            try:
                sub.mkdir()
            except FileExistsError:
                continue
            print(f"'{out}' already holds files; writing this demo to '{sub}' so that none of them is "
                  "replaced.", flush=True)
            return sub
    except OSError as exc:
        raise NapariGanError(f"Cannot create folder '{out}' or a subfolder: {exc.strerror or exc}.") from exc
    raise NapariGanError(f"'{out}' holds too many demo-N folders; give another --out.")


def _side_by_side(path: Path, noisy, denoised, clean) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.io import atomic_write

    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6), constrained_layout=True)
    try:
        for ax, image, title in zip(axes, (noisy, denoised, clean), ("noisy input", "napari-gan output", "clean")):
            ax.imshow(image, cmap="gray", vmin=0, vmax=255)
            ax.set_title(title)
            ax.axis("off")
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
