"""Conditional generation on W2S (issue 17): images from label masks (Pix2Pix ``--task labels``)
and images of a chosen class (class-conditional StyleGAN2), trained on fields 001-048 and
measured on the held-out fields 049-060. Writes benchmarks/out/conditional_w2s.json and
docs/images/conditional_masks.png, docs/images/conditional_classes.png.

    .venv/bin/python benchmarks/conditional_w2s.py --minutes 8          # both parts, 8 minutes each
    .venv/bin/python benchmarks/conditional_w2s.py --smoke              # seconds

**Masks to images.** The masks are made from the clean images of one stain (``--mask-stain``,
default 0, mitochondria: many separate objects) by thresholding and labelling: Gaussian
smoothing (sigma ``--sigma``), Otsu's threshold, objects under ``--min-size`` pixels removed,
connected components labelled (instance labels). Pix2Pix (task labels, its defaults) learns
(mask, clean image) pairs of the training fields for a fixed budget; it then generates an
image from the mask of each held-out field. The generated image is segmented by the same
procedure and compared with the mask it was made from (foreground IoU). References, each
segmented the same way and compared with the same mask:

* the real clean image: 1 by construction (the mask is its own segmentation);
* the single noisy exposure of the same field (W2S ``noisy/``): another real image of the
  same objects, so what a real re-acquisition recovers;
* the mask itself, blurred (a Gaussian of sigma ``--sigma`` scaled to the real image's
  range): an unrealistic image that is easy to segment;
* the real image of another held-out field: chance.

Realism beside it: patch SWD of 64x64 crops (the same positions) of the generated, blurred
and real held-out images against real crops of the training fields (lower: more like
real images), with the real held-out crops as the floor.

**Images of a class.** Two stains as classes (``--class-stains``, default 0 and 1:
mitochondria and the second W2S channel), 64x64 crops at native resolution of the training
fields; class-conditional StyleGAN2 (CPU defaults: ``size="small"``) for a fixed budget. For
each class, samples from fixed latents are compared (patch SWD) with held-out crops of
its own stain and of the other; the same matrix for real training-field crops is the
reference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS_IMAGES, OUT, W2S, machine, save_json  # noqa: E402

STAIN_NAMES = {0: "mitochondria", 1: "stain 1", 2: "actin"}


def read_clean(fovs, stain: int, folder: str = "clean", crop: int | None = None) -> list[np.ndarray]:
    import tifffile

    out = []
    for fov in fovs:
        img = tifffile.imread(W2S / folder / f"{fov:03d}_{stain}.tif").astype(np.float32)
        out.append(img[:crop, :crop] if crop else img)
    return out


# ------------------------------------------------------------------------- masks
def segment(image: np.ndarray, sigma: float, min_size: int) -> np.ndarray:
    """The threshold procedure: Gaussian smoothing, Otsu, small objects removed, labelled
    (4-connected) -> instance labels (int32, 0 background)."""
    from skimage.filters import gaussian, threshold_otsu
    from skimage.measure import label
    from skimage.morphology import remove_small_objects

    smooth = gaussian(np.asarray(image, np.float32), sigma, preserve_range=True)
    fg = smooth > threshold_otsu(smooth)
    try:   # skimage >= 0.26: max_size removes objects up to and including it
        fg = remove_small_objects(fg, max_size=min_size - 1)
    except TypeError:
        fg = remove_small_objects(fg, min_size)
    return label(fg, connectivity=1).astype(np.int32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def blurred_mask_image(mask: np.ndarray, like: np.ndarray, sigma: float) -> np.ndarray:
    """The mask as an image: foreground blurred, scaled to the real image's 1-99.5 percentiles."""
    from skimage.filters import gaussian

    lo, hi = np.percentile(like, [1, 99.5])
    return (lo + (hi - lo) * gaussian((mask > 0).astype(np.float32), sigma)).astype(np.float32)


def crops_at(images: list[np.ndarray], n: int, size: int, seed: int) -> np.ndarray:
    """``n`` crops (N, 1, size, size) at fixed random positions (the same for equal shapes and seed)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        img = images[k % len(images)]
        r, c = rng.integers(0, img.shape[0] - size + 1), rng.integers(0, img.shape[1] - size + 1)
        out.append(img[r:r + size, c:c + size])
    return np.stack(out)[:, None].astype(np.float32)


def settings_given(items: list[str]) -> dict:
    """``["l1_weight=10"]`` -> ``{"l1_weight": 10.0}`` (numbers as numbers)."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def masks_part(args, device, budget) -> dict:
    from napari_gan.core.families import Images, get
    from napari_gan.core.families.pix2pix import Pix2PixConfig
    from napari_gan.core.inference import load_predictor
    from napari_gan.core.metrics import patch_swd

    stain, crop = args.mask_stain, 128 if args.smoke else None
    train_fovs, held_fovs = (range(1, 3), range(49, 51)) if args.smoke else (range(1, 49), range(49, 61))
    train_img = read_clean(train_fovs, stain, crop=crop)
    held_img = read_clean(held_fovs, stain, crop=crop)
    held_noisy = read_clean(held_fovs, stain, "noisy", crop=crop)
    seg = lambda im: segment(im, args.sigma, args.min_size)  # noqa: E731
    train_masks = [seg(im) for im in train_img]
    held_masks = [seg(im) for im in held_img]
    print(f"masks: {np.mean([m.max() for m in train_masks]):.0f} objects per training image, "
          f"foreground {np.mean([(m > 0).mean() for m in train_masks]):.2f}", flush=True)

    family = get("pix2pix")
    cfg = Pix2PixConfig(task="labels", **({"patch": 64, "batch": 2} if args.smoke else {}), **settings_given(args.set))
    images = {"input": Images([m[None] for m in train_masks], [f"mask {f:03d}" for f in train_fovs]),
              "target": Images([im[None] for im in train_img], [f"{f:03d}_{stain}.tif" for f in train_fovs])}
    run = args.run / "masks"
    trainer = family.make_trainer(cfg, images, run, budget, device, args.seed, None,
                                  log_every=50, val_every=5 if args.smoke else 250)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    for ev in trainer.run():
        if ev.kind in ("validation", "done"):
            print("  " + ev.summary()[:200], flush=True)
    train_s, load1 = time.perf_counter() - t0, os.getloadavg()[0]

    predictor = load_predictor(run, str(device))
    generated = [np.asarray(predictor.predict(m), np.float32) for m in held_masks]
    blurred = [blurred_mask_image(m, im, args.sigma) for m, im in zip(held_masks, held_img)]
    rows = []
    for i, fov in enumerate(held_fovs):
        other = held_img[(i + 1) % len(held_img)]
        rows.append({"fov": fov, "objects": int(held_masks[i].max()),
                     "generated": iou(seg(generated[i]), held_masks[i]),
                     "generated_objects": int(seg(generated[i]).max()),
                     "noisy_same_field": iou(seg(held_noisy[i]), held_masks[i]),
                     "blurred_mask": iou(seg(blurred[i]), held_masks[i]),
                     "other_field": iou(seg(other), held_masks[i])})
    size, n = (64, 32) if args.smoke else (64, 256)
    real_train = crops_at(train_img, n, size, 7)
    swd = {name: patch_swd(real_train, crops_at(imgs, n, size, 11))["swd"]
           for name, imgs in (("generated", generated), ("blurred_mask", blurred), ("real_heldout", held_img))}
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("generated", "noisy_same_field", "blurred_mask",
                                                              "other_field")}
    result = {"stain": stain, "sigma": args.sigma, "min_size": args.min_size,
              "train_fovs": f"{train_fovs[0]}-{train_fovs[-1]}", "heldout_fovs": f"{held_fovs[0]}-{held_fovs[-1]}",
              "budget": str(budget), "steps": trainer.step, "train_s": train_s,
              "images_per_s": trainer.step * cfg.batch / train_s, "load": [load0, load1],
              "config": {k: cfg.to_dict()[k] for k in ("task", "label_classes", "label_distance", "patch", "batch",
                                                        "depth", "width", "adv_weight", "l1_weight", "lr")},
              "iou_mean": mean, "iou_per_field": rows,
              "objects_per_heldout_mask": float(np.mean([r["objects"] for r in rows])),
              "objects_per_generated_segmentation": float(np.mean([r["generated_objects"] for r in rows])),
              "patch_swd_to_training_crops": swd, "swd_crops": {"n": n, "size": size}}
    print(f"IoU: {mean}\nSWD: {swd}", flush=True)
    if not args.smoke or args.figures:
        folder = OUT if args.smoke else DOCS_IMAGES   # smoke figures stay out of the docs
        masks_figure(held_masks, generated, held_img, list(held_fovs), rows,
                     folder / f"conditional_masks{'_smoke' if args.smoke else ''}{args.tag}.png")
    return result


def masks_figure(masks, generated, real, fovs, rows, path, n=3) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.color import label2rgb

    n = min(n, len(masks))
    h, w = masks[0].shape
    box = (slice(h // 4, h - h // 4), slice(w // 4, w - w // 4))   # the central half, to see the objects
    fig, axes = plt.subplots(n, 3, figsize=(9, 3.1 * n), constrained_layout=True, squeeze=False)
    for k in range(n):
        i = k * max(1, len(masks) // n)
        top = np.percentile(real[i][box], 99.8)
        panels = [(label2rgb(masks[i][box], bg_label=0), f"mask (field {fovs[i]:03d}, held out)"),
                  (generated[i][box], f"generated from the mask (IoU {rows[i]['generated']:.2f})"),
                  (real[i][box], "real clean image")]
        for ax, (img, title) in zip(axes[k], panels):
            ax.imshow(img, cmap="gray", vmin=0, vmax=top) if img.ndim == 2 else ax.imshow(img)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------- classes
def classes_part(args, device, budget) -> dict:
    import torch

    from napari_gan.core.families.stylegan2 import ImageSet, StyleGAN2Config, StyleGAN2Trainer, one_hot
    from napari_gan.core.generation import load_generator
    from napari_gan.core.metrics import patch_swd
    from stylegan2_w2s import ema_samples, fixed_crops

    stains = [int(s) for s in args.class_stains.split(",")]
    names = [f"{STAIN_NAMES.get(s, f'stain {s}')} (channel {s})" for s in stains]
    crop = None   # whole fields even in the smoke run (a 128x128 corner can be all background)
    train_fovs, held_fovs = (range(1, 3), range(49, 50)) if args.smoke else (range(1, 49), range(49, 61))
    planes, plane_names, classes = [], [], []
    for k, s in enumerate(stains):
        imgs = read_clean(train_fovs, s, crop=crop)
        planes += [im[None] for im in imgs]
        plane_names += [f"{f:03d}_{s}.tif" for f in train_fovs]
        classes += [k] * len(imgs)
    held = {k: [im[None] for im in read_clean(held_fovs, s, crop=crop)] for k, s in enumerate(stains)}
    train_by_class = {k: [p for p, c in zip(planes, classes) if c == k] for k in range(len(stains))}
    cfg = StyleGAN2Config(resolution=64, size="small", classes=True, c_dim=len(stains), class_names=names)
    data = ImageSet.build(planes, cfg.resolution, plane_names, classes=classes)
    run = args.run / "classes"
    trainer = StyleGAN2Trainer(cfg, data, run, budget, device, args.seed, log_every=50,
                               val_every=5 if args.smoke else 200)
    t0, load0 = time.perf_counter(), os.getloadavg()[0]
    for ev in trainer.run():
        if ev.kind in ("validation", "done"):
            print("  " + ev.summary()[:200], flush=True)
    train_s, load1 = time.perf_counter() - t0, os.getloadavg()[0]

    n = 16 if args.smoke else 128
    fake = {k: ema_samples(trainer, n, args.seed + 5, c=one_hot([k] * n, cfg.c_dim)) for k in range(len(stains))}
    real = {k: fixed_crops(held[k], data.norm, n, cfg.resolution, 1234) for k in fake}
    real_train = {k: fixed_crops(train_by_class[k], data.norm, n, cfg.resolution, 999) for k in fake}
    # swd[real class j][sample class k]: normalised by real class j's patch statistics
    gen = {names[j]: {names[k]: patch_swd(real[j], fake[k])["swd"] for k in fake} for j in real}
    ref = {names[j]: {names[k]: patch_swd(real[j], real_train[k])["swd"] for k in fake} for j in real}
    own_closer = {names[k]: gen[names[k]][names[k]] < min(gen[names[j]][names[k]] for j in real if j != k)
                  for k in fake}
    # and the other way round: each class's held-out crops are closer to its own class's samples
    own_closer_by_real = {names[j]: gen[names[j]][names[j]] < min(gen[names[j]][names[k]] for k in fake if k != j)
                          for j in real}
    # the same through the public path: the saved model, generate --class NAME
    model = load_generator(run, str(device))
    assert model.class_names == names, model.class_names
    public = {name: model.generate(4, seed=0, class_name=name).shape for name in names}
    result = {"stains": stains, "class_names": names, "train_fovs": f"{train_fovs[0]}-{train_fovs[-1]}",
              "heldout_fovs": f"{held_fovs[0]}-{held_fovs[-1]}", "budget": str(budget), "steps": trainer.step,
              "kimg": trainer.images_seen / 1000, "train_s": train_s,
              "images_per_s": trainer.images_seen / train_s, "load": [load0, load1],
              "config": {k: cfg.to_dict()[k] for k in ("resolution", "size", "batch", "lr", "gamma", "channel_base",
                                                        "channel_max", "z_dim", "mapping_layers", "c_dim")},
              "n": n, "swd_heldout_real_vs_samples": gen, "swd_heldout_real_vs_training_real": ref,
              "own_class_closer": own_closer,
              "own_class_closer_by_real_class": own_closer_by_real, "generate_class_shapes": {k: list(v) for k, v in public.items()}}
    print(f"SWD (rows: held-out real class, columns: samples of class): {gen}\nreal reference: {ref}\n"
          f"own class closer: {own_closer}", flush=True)
    if not args.smoke or args.figures:
        folder = OUT if args.smoke else DOCS_IMAGES
        classes_figure(real, fake, names, folder / f"conditional_classes{'_smoke' if args.smoke else ''}.png")
    return result


def classes_figure(real: dict, fake: dict, names: list[str], path: Path, cols: int = 6, rows: int = 3) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from napari_gan.core.families.stylegan2 import image_grid

    fig, axes = plt.subplots(len(names), 2, figsize=(11, (5.5 * rows / cols + 0.4) * len(names)),
                             constrained_layout=True, squeeze=False)
    for k, name in enumerate(names):
        for ax, imgs, what in ((axes[k, 0], real[k], "real held-out crops"),
                               (axes[k, 1], fake[k], "generated, class chosen")):
            grid = image_grid(np.clip(imgs[: rows * cols], -1, 1), cols)
            ax.imshow(grid, cmap="gray", vmin=-1, vmax=1)
            for r in range(1, rows):
                ax.axhline(r * imgs.shape[-2] - 0.5, color="k", lw=1)
            for c in range(1, cols):
                ax.axvline(c * imgs.shape[-1] - 0.5, color="k", lw=1)
            ax.set_title(f"{name}: {what}", fontsize=9)
            ax.axis("off")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    import torch

    from napari_gan.core.device import describe_device, resolve_device
    from napari_gan.core.training.base import Budget

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", choices=("masks", "classes"), default=["masks", "classes"])
    ap.add_argument("--minutes", type=float, default=8.0, help="training budget of each part")
    ap.add_argument("--steps", type=int, help="a step budget instead of minutes")
    ap.add_argument("--mask-stain", type=int, default=0)
    ap.add_argument("--sigma", type=float, default=1.5, help="smoothing before Otsu's threshold (pixels)")
    ap.add_argument("--min-size", type=int, default=16, help="smallest object kept (pixels)")
    ap.add_argument("--class-stains", default="0,1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--run", type=Path, default=Path("/tmp/napari_gan_conditional_w2s"))
    ap.add_argument("--smoke", action="store_true", help="seconds: 2 fields, 128x128 crops, a few steps")
    ap.add_argument("--figures", action="store_true", help="(--smoke) write the figures too")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="(masks) a Pix2Pix setting other than its default, e.g. l1_weight=10; repeat for several")
    ap.add_argument("--tag", default="", help="suffix of the results file and the masks figure")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.smoke:
        args.run = args.run.with_name(args.run.name + "_smoke")
    budget = Budget(steps=6) if args.smoke else Budget(steps=args.steps) if args.steps else Budget(minutes=args.minutes)
    name = f"conditional_w2s{'_smoke' if args.smoke else ''}{args.tag}.json"
    from stylegan2_w2s import lscpu, run_env

    results = {"machine": {**machine(), "lscpu": lscpu(), "env": run_env()}, "device": describe_device(device),
               "smoke": args.smoke, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
               "load_start": os.getloadavg()}
    from common import load_json

    previous = load_json(name) or {}
    for part in args.parts:   # a part run alone keeps the other's published results
        print(f"\n== {part} ({budget})", flush=True)
        results[part] = (masks_part if part == "masks" else classes_part)(args, device, budget)
        results[part]["machine"] = results["machine"]
    for part in ("masks", "classes"):
        if part not in results and part in previous:
            results[part] = previous[part]
    results["load_end"] = os.getloadavg()
    print(f"\nwrote {save_json(name, results)}", flush=True)


if __name__ == "__main__":
    main()
