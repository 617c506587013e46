"""StyleGAN2 on the W2S clean images: quality (patch SWD) over a wall-clock budget, speed,
and a grid of real beside generated crops. Writes docs/benchmarks_stylegan2.md (keeping
the hand-written reading below its marker line) and docs/images/stylegan2_w2s_*.png.

    .venv/bin/python benchmarks/stylegan2_w2s.py --minutes 10

``--crops``: the setting users have (issue 17): 64x64 crops of the clean images at native
resolution (no downscaling), trained on fields 001-048 only and scored on crops of the
held-out fields 049-060 (patch SWD of the EMA generator's samples from fixed latents against
fixed held-out crops; real-vs-real: training-field crops against the same held-out crops).
Writes benchmarks/out/stylegan2_crops_<tag>.json and docs/images/stylegan2_crops_<tag>.png,
not the document. Candidate settings are given as overrides (``--channel-base`` ...), so the
published defaults are what runs without them.

    ATEN_CPU_CAPABILITY=avx2 NAPARI_GAN_CPU_BF16=0 .venv/bin/python benchmarks/stylegan2_w2s.py \
        --crops --minutes 8 --tag defaults
    .venv/bin/python benchmarks/stylegan2_w2s.py --crops --smoke     # seconds

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
import sys
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
RUN_DEFAULT = Path("/tmp/napari_gan_stylegan2_w2s")
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


def fov_range(text: str) -> list[int]:
    """"1-48" or "49-60,3" -> field-of-view numbers."""
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b or a) + 1))
    return out


def load_fovs(folder: Path, fovs: list[int], stains=(0, 1, 2)) -> tuple[list[np.ndarray], list[str]]:
    """The clean images of the given fields of view and stains, at native resolution, (1, H, W)."""
    planes, names = [], []
    for fov in fovs:
        for stain in stains:
            f = folder / f"{fov:03d}_{stain}.tif"
            planes.append(np.asarray(read_tiff(f), np.float32)[None])
            names.append(f.name)
    return planes, names


def fixed_crops(planes: list[np.ndarray], norm, n: int, size: int, seed: int) -> np.ndarray:
    """``n`` fixed random crops (no flips) of ``planes`` in model space, with the normaliser
    ``norm`` (the training images')."""
    data = ImageSet(list(planes), norm, [f"{i}" for i in range(len(planes))])
    return CropSampler(data, size, np.random.default_rng(seed), mirror=False).sample(n)


@torch.no_grad()
def ema_samples(trainer, n: int, seed: int, c: torch.Tensor | None = None) -> np.ndarray:
    """``n`` images of the trainer's EMA generator from latents fixed by ``seed`` (model space,
    constant noise, float32 as the generate command on a CPU)."""
    z = torch.randn(n, trainer.cfg.z_dim, generator=torch.Generator().manual_seed(seed))
    out = []
    for i in range(0, n, 32):
        ci = None if c is None else c[i:i + 32].to(trainer.device)
        out.append(trainer.G_ema(z[i:i + 32].to(trainer.device), noise_mode="const", c=ci).float().cpu())
    return torch.cat(out).numpy()


def lscpu() -> dict:
    """CPU model and the flags that matter for speed (AVX-512, bf16, AMX)."""
    import subprocess

    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {"model": fields.get("Model name", "").strip(),
            "flags": sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))}


def run_env() -> dict:
    """The environment that sets the CPU code paths, and what torch made of it."""
    from napari_gan.core.device import uses_bf16

    env = {k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "NAPARI_GAN_CPU_BF16", "OMP_NUM_THREADS")}
    return {**env, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_autocast": uses_bf16(torch.device("cpu"))}


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


def parse_overrides(items: list[str]) -> dict:
    """``["gamma=0.05", "augment=none"]`` -> config overrides (numbers parsed as JSON)."""
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            out[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.replace("-", "_")] = value
    return out


def crops_main(args) -> None:
    """Native-resolution 64x64 crops, trained on fields 001-048, scored on 049-060."""
    from common import save_json

    t_start, load_start = time.strftime("%Y-%m-%d %H:%M:%S"), os.getloadavg()
    device = resolve_device("auto")
    stains = (0, 1, 2) if args.stains == "all" else tuple(int(k) for k in args.stains.split(","))
    train_fovs, held_fovs = fov_range(args.train_fovs), fov_range(args.heldout_fovs)
    if args.smoke:
        train_fovs, held_fovs = train_fovs[:2], held_fovs[:1]
    planes, names = load_fovs(args.data, train_fovs, stains)
    held, _ = load_fovs(args.data, held_fovs, stains)
    overrides = parse_overrides(args.set)
    cfg = StyleGAN2Config(**{"resolution": args.resolution, "size": args.size, "batch": args.batch, "lr": args.lr,
                             **overrides})
    data = ImageSet.build(planes, cfg.resolution, names)
    print(f"{len(planes)} training images {planes[0].shape} (fields {train_fovs[0]}-{train_fovs[-1]}), "
          f"{len(held)} held-out; {describe_device(device)}; overrides {overrides}", flush=True)
    budget = Budget(steps=args.steps) if args.steps else Budget(minutes=args.minutes)
    trainer = StyleGAN2Trainer(cfg, data, args.run, budget, device, args.seed,
                               log_every=args.log_every, val_every=args.val_every)
    marks = [float(k) for k in args.snapshot_kimg.split(",")] if args.snapshot_kimg else []
    snapshots, history, t0, last = {}, [], time.perf_counter(), None
    for event in trainer.run():
        last = event
        if event.kind in ("validation", "done") and "swd" in event.metrics:
            history.append({"minutes": (time.perf_counter() - t0) / 60, "step": event.step,
                            "kimg": event.losses.get("kimg", trainer.images_seen / 1000),
                            "swd_train_crops": event.metrics["swd"], "aug_p": event.losses.get("aug_p"),
                            "load": os.getloadavg()[0]})
            print(event.summary()[:200], flush=True)
        while marks and trainer.images_seen >= marks[0] * 1000:   # samples at fixed kimg (a second each)
            snapshots[marks.pop(0)] = ema_samples(trainer, args.eval_n, args.seed + 5)
    wall = time.perf_counter() - t0
    load_end = os.getloadavg()

    # scoring, outside the budget: fixed held-out crops, the generator's samples from fixed latents,
    # at the end of the run and from the model file the user gets (the best EMA by the in-training SWD)
    fake = ema_samples(trainer, args.eval_n, args.seed + 5)
    model_fake = model_file_samples(last.paths["best"], args.eval_n, args.seed + 5) if last else fake
    scores = score(fake, snapshots, planes, held, data.norm, args.eval_n, cfg.resolution, model_fake)
    swd, floor = scores["swd_heldout"], scores["floor_train_vs_heldout"]
    real_held = scores.pop("real_held")
    result = {
        "tag": args.tag, "started": t_start, "machine": {**common_machine(), "lscpu": lscpu(), "env": run_env(),
                                                          "load_start": load_start, "load_end": load_end},
        "device": describe_device(device), "config": {k: v for k, v in cfg.to_dict().items()},
        "overrides": overrides, "train_fovs": ",".join(map(str, train_fovs)),
        "heldout_fovs": ",".join(map(str, held_fovs)),
        "stains": list(stains), "budget": {"minutes": args.minutes, "steps": args.steps},
        "wall_s": wall, "steps": trainer.step, "kimg": trainer.images_seen / 1000,
        "img_per_s": trainer.images_seen / wall, "end": last.message if last else "",
        **scores, "eval_n": args.eval_n, "history": history,
    }
    tag = args.tag + ("_smoke" if args.smoke else "")
    save_json(f"stylegan2_crops_{tag}.json", result)
    np.savez_compressed(args.run / "samples.npz", fake=fake, model=model_fake, real_held=real_held,
                        **{f"kimg_{k:g}": v for k, v in snapshots.items()})
    if not args.smoke or args.figure:
        images = ROOT / "benchmarks" / "out" if args.smoke else args.docs / "images"   # smoke: not in the docs
        images.mkdir(parents=True, exist_ok=True)
        plot_samples(real_held, model_fake, images / f"stylegan2_crops_{tag}.png")
    print(json.dumps({k: result[k] for k in ("tag", "steps", "kimg", "img_per_s", "ratio", "ratio_model",
                                              "ratio_heldout_floor",
                                              "swd_heldout_at_kimg")}, default=float), flush=True)
    print(f"SWD {swd['swd']:.4f}  floor(train vs held-out) {floor['swd']:.4f}  floor(held-out vs held-out) "
          f"{scores['floor_heldout_vs_heldout']['swd']:.4f}  load {load_start[0]:.2f} -> {load_end[0]:.2f}", flush=True)


def model_file_samples(path, n: int, seed: int) -> np.ndarray:
    """``n`` images (model space) of a saved model file from latents fixed by ``seed``, as
    :func:`ema_samples` draws them from a trainer."""
    from napari_gan.core.generation import load_generator

    gen = load_generator(path, "cpu")
    z = torch.randn(n, gen.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return torch.cat([gen.G(z[i:i + 32], noise_mode="const") for i in range(0, n, 32)]).numpy()


def score(fake: np.ndarray, snapshots: dict, planes: list, held: list, norm, n: int, size: int,
          model_fake: np.ndarray | None = None) -> dict:
    """Patch SWDs of the samples ``fake`` (and of each kimg snapshot) and the real-vs-real
    references, all over ``n`` fixed crops:

    * ``swd_heldout``: samples at the end of the run against crops of the held-out fields;
    * ``swd_heldout_model`` (``ratio_model``): the same for the samples ``model_fake`` of the model
      file the user gets (the trainer keeps the best EMA generator by its in-training SWD);
    * ``floor_train_vs_heldout``: crops of the training fields against the same held-out crops,
      the distance of real images the model could have learnt from (the "real-vs-real distance";
      ``ratio`` = swd_heldout / it);
    * ``floor_heldout_vs_heldout``: two crop sets of the same held-out images (lower: they share
      images; ``ratio_heldout_floor``);
    * ``swd_train`` / ``floor_train_vs_train``: the same against training-field crops, as the
      in-training SWD and the whole-field benchmark measure it (``ratio_train``).
    """
    real_held = fixed_crops(held, norm, n, size, 1234)
    real_held_b = fixed_crops(held, norm, n, size, 4321)
    real_train = fixed_crops(planes, norm, n, size, 999)
    real_train_b = fixed_crops(planes, norm, n, size, 555)
    out = {"swd_heldout": patch_swd(real_held, fake), "floor_train_vs_heldout": patch_swd(real_held, real_train),
           "floor_heldout_vs_heldout": patch_swd(real_held, real_held_b),
           "swd_train": patch_swd(real_train_b, fake), "floor_train_vs_train": patch_swd(real_train_b, real_train)}
    out["ratio"] = out["swd_heldout"]["swd"] / out["floor_train_vs_heldout"]["swd"]
    if model_fake is not None:
        out["swd_heldout_model"] = patch_swd(real_held, model_fake)
        out["ratio_model"] = out["swd_heldout_model"]["swd"] / out["floor_train_vs_heldout"]["swd"]
    out["ratio_heldout_floor"] = out["swd_heldout"]["swd"] / out["floor_heldout_vs_heldout"]["swd"]
    out["ratio_train"] = out["swd_train"]["swd"] / out["floor_train_vs_train"]["swd"]
    out["swd_heldout_at_kimg"] = {f"{float(k):g}": patch_swd(real_held, v)["swd"] for k, v in snapshots.items()}
    out["diversity_fake"], out["diversity_real"] = diversity(fake[:32]), diversity(real_held[:32])
    out["real_held"] = real_held
    return out


def rescore(args) -> None:
    """Recompute the scores of a finished ``--crops`` run from its saved samples (same crops)."""
    from common import load_json, save_json

    info = load_json(f"stylegan2_crops_{args.tag}.json")
    stains = tuple(info["stains"])
    planes, _ = load_fovs(args.data, fov_range(info["train_fovs"]), stains)
    held, _ = load_fovs(args.data, fov_range(info["heldout_fovs"]), stains)
    norm = ImageSet.build(planes, info["config"]["resolution"]).norm
    saved = np.load(Path(f"/tmp/napari_gan_sg2_crops_{args.tag}") / "samples.npz")
    snapshots = {float(k[5:]): saved[k] for k in saved.files if k.startswith("kimg_")}
    scores = score(saved["fake"], snapshots, planes, held, norm, info["eval_n"], info["config"]["resolution"],
                   saved["model"] if "model" in saved.files else None)
    scores.pop("real_held")
    info.update(scores)
    save_json(f"stylegan2_crops_{args.tag}.json", info)
    print({k: scores.get(k) for k in ("ratio", "ratio_model", "ratio_heldout_floor", "ratio_train",
                                      "swd_heldout_at_kimg")})


def compare_figure(entries: list[str], path: Path, n: int = 5) -> None:
    """Real held-out crops beside the samples of finished ``--crops`` runs: each entry is a tag
    (its samples after the budget) or ``tag@kimg`` (its samples at that snapshot)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from common import load_json

    panels = []
    for entry in entries:
        tag, _, kimg = entry.partition("@")
        info = load_json(f"stylegan2_crops_{tag}.json")
        samples = np.load(Path(f"/tmp/napari_gan_sg2_crops_{tag}") / "samples.npz")
        if not panels:
            panels.append((samples["real_held"], "real crops, held-out fields"))
        if kimg:
            swd = info["swd_heldout_at_kimg"][kimg] / info["floor_train_vs_heldout"]["swd"]
            panels.append((samples[f"kimg_{kimg}"], f"{tag} at {float(kimg):g} kimg\nSWD {swd:.2f}x real-vs-real"))
        else:
            panels.append((samples["fake"], f"{tag}: {info['wall_s'] / 60:.0f} min, {info['kimg']:.1f} kimg\n"
                                            f"SWD {info['ratio']:.2f}x real-vs-real"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.9))
    for ax, (images, title) in zip(np.atleast_1d(axes), panels):
        grid = image_grid(np.clip(images[: n * n], -1, 1), n)
        ax.imshow(grid, cmap="gray", vmin=-1, vmax=1)
        for k in range(1, n):
            ax.axhline(k * images.shape[-2] - 0.5, color="k", lw=1)
            ax.axvline(k * images.shape[-1] - 0.5, color="k", lw=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def common_machine() -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import machine

    return machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crops", action="store_true",
                   help="native-resolution crops, fields --train-fovs for training, --heldout-fovs for scoring")
    p.add_argument("--train-fovs", default="1-48")
    p.add_argument("--heldout-fovs", default="49-60")
    p.add_argument("--steps", type=int, help="(--crops) a step budget instead of minutes")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a config field, e.g. --set channel_base=1024 (repeatable)")
    p.add_argument("--tag", default="defaults", help="(--crops) name of the output files")
    p.add_argument("--eval-n", type=int, default=128, help="(--crops) images per set for the held-out SWD")
    p.add_argument("--snapshot-kimg", default="", help="(--crops) also score samples at these kimg, e.g. 2,4,6")
    p.add_argument("--smoke", action="store_true", help="(--crops) seconds: 2 training fields, 10 steps")
    p.add_argument("--figure", action="store_true", help="(--crops --smoke) write the figure too")
    p.add_argument("--rescore", action="store_true", help="recompute the scores of the finished run --tag")
    p.add_argument("--compare", nargs="+", metavar="TAG[@KIMG]",
                   help="only draw docs/images/stylegan2_crops_samples.png from finished --crops runs")
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
    p.add_argument("--val-every", type=int, help="steps between SWD evaluations (default 50; --crops: 200, the CLI's)")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch default)")
    p.add_argument("--out", type=Path, help="(--compare) where to draw the figure")
    p.add_argument("--run", type=Path, default=RUN_DEFAULT)
    p.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rescore:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        return rescore(args)
    if args.compare:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        (args.docs / "images").mkdir(parents=True, exist_ok=True)
        return compare_figure(args.compare, args.out or args.docs / "images" / "stylegan2_crops_samples.png")
    if args.val_every is None:
        args.val_every = 200 if args.crops else 50
    if args.crops:
        if args.run == RUN_DEFAULT:
            args.run = Path(f"/tmp/napari_gan_sg2_crops_{args.tag}")
        if args.smoke:
            args.steps, args.eval_n, args.val_every = args.steps or 10, min(args.eval_n, 16), 5
            args.run = args.run.with_name(args.run.name + "_smoke")
        return crops_main(args)
    device = resolve_device("auto")
    planes, names = load_planes(args.data, args.downscale, args.stains)
    cfg = StyleGAN2Config(resolution=args.resolution, size=args.size, batch=args.batch, lr=args.lr,
                          **parse_overrides(args.set))
    data = ImageSet.build(planes, cfg.resolution, names)
    print(f"{len(planes)} images {planes[0].shape}, {describe_device(device)}; overrides {args.set}", flush=True)
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
