"""StyleGAN2 on the W2S clean images: quality (patch SWD) over a wall-clock budget, speed,
and a grid of real beside generated crops. Writes docs/benchmarks_stylegan2.md (keeping
the hand-written reading below its marker line) and docs/images/stylegan2_w2s_*.png.

    .venv/bin/python benchmarks/stylegan2_w2s.py --minutes 10

The images are read from their folder (never copied), optionally only some stains
(``--stains``); each is area-downscaled by ``--downscale`` (default 8: a 512x512 field of
view becomes one 64x64 image of whole cells), then the trainer takes random crops (with
flips/rotations) as for any user image.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from skimage.transform import downscale_local_mean

from napari_gan.core.device import describe_device, resolve_device
from napari_gan.core.io import expand_paths, read_tiff
from napari_gan.core.metrics import patch_swd
from napari_gan.core.training.base import Budget
from napari_gan.core.families.stylegan2 import (CropSampler, ImageSet, StyleGAN2Config, StyleGAN2Trainer,
                                                image_grid)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("/work/shared/data/w2s/clean")
# what follows this line in the document (the reading of the results) is kept when it is rewritten
HAND_WRITTEN = "<!-- written by hand below this line; kept when the benchmark rewrites the page -->"


def load_planes(folder: Path, downscale: int, stains: str = "all") -> tuple[list[np.ndarray], list[str]]:
    """The clean images (files FOV_STAIN.tif), only the stains listed ("0,2") unless "all"."""
    planes, names = [], []
    for f in expand_paths(folder):
        if stains != "all" and f.stem.rsplit("_", 1)[-1] not in stains.split(","):
            continue
        img = np.asarray(read_tiff(f), np.float32)
        if downscale > 1:
            img = downscale_local_mean(img, (downscale, downscale)).astype(np.float32)
        planes.append(img[None])
        names.append(f.name)
    return planes, names


def diversity(images: np.ndarray) -> float:
    """Mean absolute difference between pairs of images (model space): ~0 means collapse."""
    n = len(images)
    return float(np.mean([np.abs(images[i] - images[j]).mean() for i in range(n) for j in range(i + 1, n)]))


def train(args, data: ImageSet, cfg: StyleGAN2Config, device: torch.device, minutes: float,
          resume: bool = False, start_minutes: float = 0.0) -> dict:
    """Train for ``minutes`` (continuing the run in ``args.run`` if ``resume``)."""
    trainer = StyleGAN2Trainer(cfg, data, args.run, Budget(minutes=minutes), device, args.seed,
                               log_every=args.log_every, val_every=args.val_every)
    if resume:
        trainer.resume_from()
    first_image = trainer.images_seen
    validate, eval_seconds = trainer.validate, [0.0]

    def timed_validate():
        t = time.perf_counter()
        result = validate()
        eval_seconds[0] += time.perf_counter() - t
        return result

    trainer.validate = timed_validate
    history, t0 = [], time.perf_counter()
    if not resume:
        initial, _ = validate()
        history.append({"minutes": 0.0, "step": 0, "kimg": 0.0, "swd": initial["swd"], "aug_p": 0.0})
    last = None
    for event in trainer.run():
        last = event
        print(event.summary()[:220], flush=True)
        if event.kind in ("validation", "done") and "swd" in event.metrics:
            history.append({"minutes": start_minutes + (time.perf_counter() - t0) / 60, "step": event.step,
                            "kimg": event.losses["kimg"], "swd": event.metrics["swd"],
                            "aug_p": event.losses["aug_p"], "r1": event.losses["r1"],
                            "pl": event.losses["pl"], "g": event.losses["g"], "d": event.losses["d"],
                            "load": os.getloadavg()[0]})
    wall = time.perf_counter() - t0
    train_seconds = wall - eval_seconds[0]
    images = trainer.images_seen - first_image          # in this run
    fake = trainer.generate_eval()
    return {"history": history, "wall_s": wall, "eval_s": eval_seconds[0], "steps": trainer.step,
            "images": trainer.images_seen, "img_per_s_total": images / wall, "img_per_s_train": images / train_seconds,
            "final": last.metrics, "fake": fake, "real": trainer.eval_real,
            "end": last.message, "best_path": last.paths["best"],
            "g_params": sum(q.numel() for q in trainer.G.parameters()),
            "d_params": sum(q.numel() for q in trainer.D.parameters())}


def plot_swd(result: dict, floor: float, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result["history"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([e["minutes"] for e in h], [e["swd"] for e in h], "o-", label="generated vs real")
    ax.axhline(floor, color="gray", ls="--", label="real vs other real crops")
    ax.set_xlabel("wall-clock minutes (2-core CPU)")
    ax.set_ylabel("patch SWD (lower is better)")
    ax.set_yscale("log")
    top = ax.secondary_xaxis("top", functions=(lambda m: m, lambda m: m))
    top.set_ticks([e["minutes"] for e in h[::max(1, len(h) // 5)]],
                  labels=[f"{e['kimg']:.1f}" for e in h[::max(1, len(h) // 5)]])
    top.set_xlabel("kimg")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_samples(real: np.ndarray, fake: np.ndarray, path: Path, n: int = 5) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 5.3))
    for ax, images, title in ((axes[0], real, "real crops"), (axes[1], fake, "generated (EMA, fixed seeds)")):
        grid = image_grid(np.clip(images[: n * n], -1, 1), n)
        ax.imshow(grid, cmap="gray", vmin=-1, vmax=1)
        for k in range(1, n):
            ax.axhline(k * images.shape[-2] - 0.5, color="k", lw=1)
            ax.axvline(k * images.shape[-1] - 0.5, color="k", lw=1)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def more_section(more: dict, result: dict) -> str:
    h = more["history"]
    total = h[-1]["minutes"] if h else result["wall_s"] / 60
    return f"""
### Continued: {total:.0f} minutes in all

The same run resumed from its training state for {more['wall_s'] / 60:.1f} minutes more
(`--more-minutes`): {more['images'] / 1000:.1f} kimg in total, {more['img_per_s_train']:.1f} images/s
training; patch SWD {h[-1]['swd']:.4f} at the end (best {min(e['swd'] for e in h):.4f});
variety {more['diversity_fake']:.3f}. The table above goes on with these rows.

![real and generated crops after {total:.0f} minutes](images/stylegan2_w2s_samples_more.png)
"""


def write_doc(args, cfg: StyleGAN2Config, data: ImageSet, device, result: dict, floor: float,
              div_real: float, div_fake: float, path: Path, more: dict | None = None) -> None:
    h = result["history"] + (more["history"] if more else [])
    loads = [e["load"] for e in h if "load" in e] or [os.getloadavg()[0]]
    rows = "\n".join(f"| {e['minutes']:.1f} | {e['step']} | {e['kimg']:.2f} | {e['swd']:.4f} | {e['aug_p']:.3f} |"
                     for e in h)
    main_h = result["history"]
    best = min(e["swd"] for e in main_h[1:]) if len(main_h) > 1 else float("nan")
    more_arg = f" --more-minutes {args.more_minutes:g}" if more else ""
    whole = data.planes[0].shape[-1] == cfg.resolution
    shows = "one whole field of view (whole cells)" if whole else "a random crop of a field of view"
    origin = ("all from `auto_hyperparameters` (what the CLI picks on a CPU)" if args.batch is None
              else "all from `auto_hyperparameters` except the explicit batch")
    batch_arg = "" if args.batch is None else f" --batch {cfg.batch}"
    doc = f"""# StyleGAN2 benchmark: W2S clean images, 64x64, CPU

Generated by `benchmarks/stylegan2_w2s.py --minutes {args.minutes:g} --downscale {args.downscale} --stains {args.stains} --threads {args.threads}{more_arg}`
on {platform.processor() or platform.machine()} ({os.cpu_count()} cores), {describe_device(device)}, torch {torch.__version__}.
Machine load during the run (1-minute load average, sampled at each evaluation): mean
{np.mean(loads):.1f}, range {min(loads):.1f}-{max(loads):.1f} (2.0 = both cores busy).

**GPU figures pending**: no GPU was available in this session.

## Set-up

- Data: {len(data.planes)} clean W2S images (512x512, uint8; stains: {args.stains}), area-downscaled
  by {args.downscale} to {data.planes[0].shape[-1]}x{data.planes[0].shape[-2]}, so that a
  {cfg.resolution}x{cfg.resolution} training image shows {shows};
  random flips/90-degree rotations, percentile normalisation as for Pix2Pix.
- Model: `size="{cfg.size}"` (channel_base {cfg.channel_base}, channel_max {cfg.channel_max},
  z/w {cfg.z_dim}, {cfg.mapping_layers} mapping layers); G and D have
  {result['g_params'] / 1e6:.2f} M and {result['d_params'] / 1e6:.2f} M parameters.
- Training: batch {cfg.batch}, lr {cfg.lr:g}, R1 gamma {cfg.gamma:.4g} every {cfg.r1_interval} steps,
  path length weight {cfg.pl_weight:g} every {cfg.pl_interval} steps, style mixing {cfg.style_mixing:g},
  EMA half-life {cfg.ema_kimg:g} kimg (ramp-up {cfg.ema_rampup:g}), ADA target {cfg.ada_target:g}
  (speed {cfg.ada_kimg:g} kimg), {origin}.
- Quality figure: multi-scale patch sliced Wasserstein distance (7x7 patches of a band-pass
  pyramid, normalised by the real patches' statistics; no downloaded weights) between
  {cfg.eval_images} fixed real crops and {cfg.eval_images} images of the EMA generator from fixed
  latents. The floor is the same figure between two disjoint sets of real crops.

## Results

- Wall time: {result['wall_s'] / 60:.1f} min for {result['steps']} steps, {result['images'] / 1000:.1f} kimg
  (run ended: {result['end']}).
- Speed on CPU: **{result['img_per_s_train']:.1f} images/s** training
  ({result['img_per_s_total']:.1f} images/s including {result['eval_s']:.0f} s of periodic SWD evaluation).
- Patch SWD: {main_h[0]['swd']:.4f} untrained -> {main_h[-1]['swd']:.4f} at the end (best {best:.4f});
  real-vs-real floor {floor:.4f}.
- Variety (mean absolute difference between pairs of images, model units): generated
  {div_fake:.3f}, real {div_real:.3f}; a collapsed generator would be near 0.

| minutes | step | kimg | SWD | augmentation p |
|--:|--:|--:|--:|--:|
{rows}

![SWD over training](images/stylegan2_w2s_swd.png)

![real and generated crops](images/stylegan2_w2s_samples.png)
{more_section(more, result) if more else ""}
Reproduce: `.venv/bin/python benchmarks/stylegan2_w2s.py --minutes {args.minutes:g}{more_arg}`
(about {args.minutes + args.more_minutes:g} minutes plus start-up). The same training from the command line:
`napari-gan train stylegan2 --images FOLDER --resolution 64{batch_arg} --minutes {args.minutes:g} --out RUN`
(FOLDER holding the images downscaled as above; the CLI takes random 64x64 crops of what it is given).
"""
    kept = path.read_text().partition(HAND_WRITTEN)[2] if path.exists() else ""
    path.write_text(doc + (f"\n{HAND_WRITTEN}{kept}" if kept else ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--more-minutes", type=float, default=0.0,
                   help="then resume the run for this many minutes more (what a longer run gives)")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--downscale", type=int, default=8)
    p.add_argument("--stains", default="all", help="which stains (file suffixes) to train on: all, or e.g. 0,2")
    p.add_argument("--batch", type=int, help="images per step (default: auto, as the CLI)")
    p.add_argument("--size", default="small")
    p.add_argument("--lr", type=float, help="learning rate (default: auto, as the CLI)")
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch default)")
    p.add_argument("--run", type=Path, default=Path("/tmp/napari_gan_stylegan2_w2s"))
    p.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device("auto")
    planes, names = load_planes(args.data, args.downscale, args.stains)
    cfg = StyleGAN2Config(resolution=args.resolution, size=args.size, batch=args.batch, lr=args.lr)
    data = ImageSet.build(planes, cfg.resolution, names)
    print(f"{len(planes)} images {planes[0].shape}, {describe_device(device)}", flush=True)
    other_real = CropSampler(data, cfg.resolution, np.random.default_rng(99), mirror=False).sample(cfg.eval_images)

    result = train(args, data, cfg, device, args.minutes)
    floor = patch_swd(result["real"], other_real)["swd"]
    div_real, div_fake = diversity(result["real"][:32]), diversity(result["fake"][:32])
    more = None
    if args.more_minutes:
        more = train(args, data, cfg, device, args.more_minutes, resume=True, start_minutes=result["wall_s"] / 60)
        more["diversity_fake"] = diversity(more["fake"][:32])

    images = args.docs / "images"
    images.mkdir(parents=True, exist_ok=True)
    plot_swd({"history": result["history"] + (more["history"] if more else [])}, floor,
             images / "stylegan2_w2s_swd.png")
    plot_samples(result["real"], result["fake"], images / "stylegan2_w2s_samples.png")
    if more:
        plot_samples(more["real"], more["fake"], images / "stylegan2_w2s_samples_more.png")
    write_doc(args, cfg, data, device, result, floor, div_real, div_fake, args.docs / "benchmarks_stylegan2.md", more)
    summary = {k: v for k, v in result.items() if k not in ("fake", "real")}
    if more:
        summary["more"] = {k: v for k, v in more.items() if k not in ("fake", "real")}
    (args.run / "benchmark.json").write_text(json.dumps({**summary, "floor": floor, "diversity_real": div_real,
                                                          "diversity_fake": div_fake}, indent=1, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, default=str), flush=True)


if __name__ == "__main__":
    main()
