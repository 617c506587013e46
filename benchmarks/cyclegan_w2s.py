"""CycleGAN on W2S: denoising learnt from unpaired images, beside Pix2Pix learnt from pairs,
and a stain-to-stain style transfer.

Denoising. Domain A: the noisy single exposures of fields 001-024; domain B: the clean averages
of fields 025-048, so no image has its partner in the other domain (3 channels per field, each
an image of its own: 72 images per domain). CycleGAN trains for ``--minutes`` of wall-clock
time; Pix2Pix then trains on the *paired* fields 001-048 for the same time (what pairs buy).
Both predict the held-out fields 049-060 (36 images), scored against the clean targets:
PSNR/SSIM with data_range 255, outputs clipped to 0..255, with the noisy input itself and
VST+BM3D (the generalised Anscombe transform with noise parameters fitted on each image, BM3D,
the asymptotically unbiased inverse; when the ``bm3d`` package is installed: ``pip install
bm3d``; otherwise the W2S README's 24.42 dB is cited). CycleGAN is scored with its best model
(chosen by the unpaired score, minus the patch SWD of a2b crops against B crops) and its last.
Writes benchmarks/out/cyclegan_w2s.json and docs/images/cyclegan_w2s_crops.png.

Style transfer. Domain A: the clean channel-0 images of fields 001-024; domain B: the clean
channel-1 images of fields 025-048 (another stain). After ``--style-minutes`` the held-out
channel-0 images are translated; the figure shows each beside its translation and, for
reference only, the real channel 1 of the same field (another structure, not a target). The
patch SWD to the real channel-1 images (lower: more alike) is reported for the input and
for the translation. Writes docs/images/cyclegan_w2s_style.png.

    .venv/bin/python benchmarks/cyclegan_w2s.py --minutes 10     # the published run (about 35 min in all)
    .venv/bin/python benchmarks/cyclegan_w2s.py --smoke          # seconds: everything on small crops
    .venv/bin/python benchmarks/cyclegan_w2s.py --minutes 3 --only cyclegan --set blocks=9 --tag _b9
    .venv/bin/python benchmarks/cyclegan_w2s.py --figure benchmarks/out/w2s_cyclegan_rerun \\
        benchmarks/out/w2s_pix2pix_for_cyclegan            # the crops figure from saved models
"""

from __future__ import annotations

import argparse
import ast
import time
from pathlib import Path

import numpy as np

from common import DOCS_IMAGES, OUT, machine, save_json, w2s_pairs

#: the W2S README's reference for VST + BM3D on this split (when bm3d is not installed)
BM3D_README_PSNR, BM3D_README_SSIM = 24.42, 0.740
PARTS = ("cyclegan", "pix2pix", "bm3d", "style")


def overrides(pairs: list[str]) -> dict:
    """``--set key=value`` pairs as CycleGAN settings (values read as Python literals)."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def train_cyclegan(a_planes, b_planes, budget, device, out_dir, settings: dict, seed: int = 0):
    """Train through the family (as ``napari-gan train cyclegan`` does); returns the trainer,
    seconds, and the validation history."""
    import shutil

    from napari_gan.core import families
    from napari_gan.core.families import Images

    family = families.get("cyclegan")
    shutil.rmtree(out_dir, ignore_errors=True)
    cfg = family.make_config(settings, device)
    images = {"a": Images([p[None] for p in a_planes], [f"A{i}" for i in range(len(a_planes))]),
              "b": Images([p[None] for p in b_planes], [f"B{i}" for i in range(len(b_planes))])}
    trainer = family.make_trainer(cfg, images, out_dir, budget, device, seed, None, val_every=250, log_every=50)
    print(f"  {trainer.describe()}", flush=True)
    t0, history = time.perf_counter(), []
    for ev in trainer.run():
        if ev.kind in ("validation", "done") and ev.metrics:
            history.append({"step": ev.step, "seconds": ev.elapsed_s, **ev.metrics})
            print(f"  {ev.summary()}", flush=True)
    return trainer, time.perf_counter() - t0, history


def scores(preds, clean) -> dict:
    from napari_gan.core.metrics import psnr, ssim

    c = [np.asarray(x, np.float32) for x in clean]
    p = [np.clip(np.asarray(x, np.float32), 0, 255) for x in preds]
    return {"psnr": float(np.mean([psnr(a, b, 255) for a, b in zip(p, c)])),
            "ssim": float(np.mean([ssim(a, b, 255) for a, b in zip(p, c)]))}


def predict(model, images, device, direction: str = "a2b"):
    from napari_gan.core.families import open_model

    predictor = open_model(model, "image", device, options={"direction": direction})[2]
    t0 = time.perf_counter()
    preds = [predictor.predict(np.asarray(x, np.float32)) for x in images]
    return preds, time.perf_counter() - t0


# ------------------------------------------------------------------------------ VST + BM3D
def noise_parameters(image: np.ndarray, block: int = 8) -> tuple[float, float]:
    """Poisson-Gaussian noise of ``image``: variance = a * mean + b, fitted over blocks (the
    variance of a high-pass residual against the local mean, the flattest half of the blocks)."""
    from scipy import ndimage

    x = np.asarray(image, np.float64)
    # pixel minus the mean of its 4 neighbours: variance 1.25 sigma^2 on flat regions
    resid = x - ndimage.convolve(x, np.array([[0, .25, 0], [.25, 0, .25], [0, .25, 0]]), mode="reflect")
    h, w = (x.shape[0] // block) * block, (x.shape[1] // block) * block

    def blocks(a):
        return a[:h, :w].reshape(h // block, block, w // block, block).swapaxes(1, 2).reshape(-1, block**2)

    means, var = blocks(x).mean(1), blocks(resid).var(1) / 1.25
    structure = blocks(x).std(1) ** 2 - var        # what the local variation has beyond noise
    keep = structure <= np.median(structure)
    a, b = np.polyfit(means[keep], var[keep], 1)
    return max(float(a), 1e-3), max(float(b), 0.0)


def vst_bm3d(image: np.ndarray) -> np.ndarray:
    import bm3d

    a, b = noise_parameters(image)
    z = np.asarray(image, np.float64)
    # generalised Anscombe transform: noise of unit variance
    f = 2.0 / a * np.sqrt(np.maximum(a * z + 0.375 * a * a + b, 0.0))
    d = bm3d.bm3d(f, sigma_psd=1.0)
    # asymptotically unbiased inverse (Anscombe's (D/2)^2 - 1/8, generalised)
    return (a * ((d / 2.0) ** 2 - 0.125) - b / a).astype(np.float32)


def bm3d_available() -> bool:
    try:
        import bm3d  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------- figures
def crop_figure(panels, path, box, vmax_from: int | None = -1, title: str | None = None) -> None:
    """One row per entry of ``panels`` (a list of rows of (title, image)), crops at ``box``;
    the display range of a row is that of its panel ``vmax_from`` (None: each panel its own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.2 * rows), constrained_layout=True, squeeze=False)
    for row, ax_row in zip(panels, axes):
        for ax, (name, img) in zip(ax_row, row):
            crop = np.asarray(img, np.float32)[box]
            ref = crop if vmax_from is None else np.asarray(row[vmax_from][1], np.float32)[box]
            lo, hi = np.percentile(ref, (0.5, 99.8)) if vmax_from is None else (0.0, np.percentile(ref, 99.8))
            ax.imshow(crop, cmap="magma", vmin=float(lo), vmax=float(hi) if hi > lo else float(lo) + 1.0)
            ax.set_title(name, fontsize=9)
        for ax in ax_row:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def swd_to(real_images, images, crop: int = 64, per_image: int = 4, seed: int = 0) -> float:
    """Patch SWD between crops of ``images`` and of ``real_images`` (each normalised to 0..1
    by its own 0.5/99.8 percentiles, as the model sees them)."""
    from napari_gan.core.metrics import patch_swd

    rng = np.random.default_rng(seed)

    def crops(imgs):
        out = []
        for img in imgs:
            x = np.asarray(img, np.float32)
            lo, hi = np.percentile(x, (0.5, 99.8))
            x = (x - lo) / max(hi - lo, 1e-6)
            for _ in range(per_image):
                r, c = rng.integers(0, x.shape[0] - crop + 1), rng.integers(0, x.shape[1] - crop + 1)
                out.append(x[None, r:r + crop, c:c + crop])
        return np.stack(out)

    return patch_swd(crops(real_images), crops(images))["swd"]


# ----------------------------------------------------------------------------------- main
def figure_from_runs(cyclegan_run: Path, pix2pix_run: Path, device: str, tag: str) -> None:
    test_noisy, test_clean = w2s_pairs(range(49, 50))      # the figure's two images: field 049
    rows = {"CycleGAN (unpaired)": predict(cyclegan_run, test_noisy, device)[0],
            "Pix2Pix (paired)": predict(pix2pix_run, test_noisy, device)[0]}
    if bm3d_available():
        rows["VST + BM3D"] = [vst_bm3d(x) for x in test_noisy]
    panels = [[("noisy input", test_noisy[i])] + [(m, p[i]) for m, p in rows.items()]
              + [("clean target (avg400)", test_clean[i])] for i in (0, 1)]
    path = DOCS_IMAGES / f"cyclegan_w2s_crops{tag}.png"
    crop_figure(panels, path, (slice(160, 352), slice(160, 352)))
    print(f"wrote {path}")


def main() -> None:
    import torch

    from napari_gan.core.device import describe_device, resolve_device
    from napari_gan.core.training.base import Budget

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="training time of CycleGAN and of Pix2Pix each")
    ap.add_argument("--steps", type=int, help="a step budget instead of minutes (CycleGAN and Pix2Pix)")
    ap.add_argument("--style-minutes", type=float, default=5.0, help="training time of the style transfer")
    ap.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="parts to run (default: all)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="CycleGAN settings to change (e.g. blocks=9 patch=96)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--smoke", action="store_true", help="a few steps on small crops (seconds)")
    ap.add_argument("--tag", default="", help="suffix for the output files")
    ap.add_argument("--figure", nargs=2, metavar=("CYCLEGAN_RUN", "PIX2PIX_RUN"), type=Path,
                    help="no training: draw the crops figure of the first two held-out images from the "
                         "models of earlier runs (with VST + BM3D when bm3d is installed)")
    args = ap.parse_args()
    if args.figure:
        return figure_from_runs(*args.figure, args.device, args.tag)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    smoke = args.smoke
    crop = 128 if smoke else None
    cg_settings = overrides(args.set)
    if smoke:
        budget = style_budget = Budget(steps=3)
        cg_settings.setdefault("batch", 2)
    else:
        budget = Budget(steps=args.steps) if args.steps else Budget(minutes=args.minutes)
        style_budget = Budget(minutes=args.style_minutes)
    suffix = ("_smoke" if smoke else "") + args.tag
    figures = OUT if smoke else DOCS_IMAGES

    # no field in both domains: A = noisy 001-024, B = clean 025-048; test pairs 049-060
    a_fields, b_fields = (range(1, 3), range(3, 5)) if smoke else (range(1, 25), range(25, 49))
    test_fields = range(49, 50) if smoke else range(49, 61)
    a_noisy, _ = w2s_pairs(a_fields, crop=crop)
    _, b_clean = w2s_pairs(b_fields, crop=crop)
    test_noisy, test_clean = w2s_pairs(test_fields, crop=crop)
    print(f"W2S: A {len(a_noisy)} noisy images (fields {a_fields.start:03d}-{a_fields.stop - 1:03d}), "
          f"B {len(b_clean)} clean images (fields {b_fields.start:03d}-{b_fields.stop - 1:03d}), "
          f"{len(test_noisy)} held-out pairs; device {describe_device(device)}, budget {budget}", flush=True)

    results = {"machine": machine(), "device": describe_device(device), "minutes": args.minutes,
               "steps": args.steps, "smoke": smoke, "cyclegan_settings": cg_settings,
               "split": {"a": "noisy fields %03d-%03d" % (a_fields.start, a_fields.stop - 1),
                         "b": "clean fields %03d-%03d" % (b_fields.start, b_fields.stop - 1),
                         "test": "fields %03d-%03d (noisy -> clean)" % (test_fields.start, test_fields.stop - 1)},
               "methods": {"noisy input": scores(test_noisy, test_clean)}}
    preds_by_method = {}

    if "cyclegan" in args.only:
        print("\n== CycleGAN (unpaired)", flush=True)
        run_dir = OUT / f"w2s_cyclegan{suffix}"
        trainer, seconds, history = train_cyclegan(a_noisy, b_clean, budget, device, run_dir, cg_settings)
        for which, model in (("best", run_dir / "model.safetensors"), ("last", run_dir / "last.safetensors")):
            preds, predict_s = predict(model, test_noisy, args.device)
            row = {**scores(preds, test_clean), "steps": trainer.step, "train_seconds": seconds,
                   "images_per_s": trainer.step * trainer.cfg.batch / seconds,
                   "predict_mpix_per_s": sum(p.size for p in preds) / 1e6 / predict_s}
            if which == "best":
                row["history"] = history
                preds_by_method["CycleGAN (unpaired)"] = preds
            results["methods"][f"CycleGAN, {which} model"] = row
            print(f"  {which} model: PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.3f} "
                  f"({trainer.step} steps, {row['images_per_s']:.1f} img/s)", flush=True)

    if "pix2pix" in args.only:
        from pix2pix_w2s import train as train_pix2pix

        print("\n== Pix2Pix (paired, fields of both domains)", flush=True)
        pn, pc = w2s_pairs(range(a_fields.start, b_fields.stop), crop=crop)
        run_dir = OUT / f"w2s_pix2pix_for_cyclegan{suffix}"
        trainer, seconds, _ = train_pix2pix({}, pn, pc, budget, device, run_dir)
        preds, _ = predict(run_dir, test_noisy, args.device)
        row = {**scores(preds, test_clean), "steps": trainer.step, "train_seconds": seconds,
               "images_per_s": trainer.step * trainer.cfg.batch / seconds}
        results["methods"]["Pix2Pix (paired)"] = row
        preds_by_method["Pix2Pix (paired)"] = preds
        print(f"  PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.3f} ({trainer.step} steps)", flush=True)

    if "bm3d" in args.only:
        if bm3d_available():
            print("\n== VST + BM3D", flush=True)
            t0 = time.perf_counter()
            preds = [vst_bm3d(x) for x in test_noisy]
            row = {**scores(preds, test_clean), "seconds": time.perf_counter() - t0,
                   "note": "bm3d package, noise parameters fitted per image, no intensity alignment"}
            preds_by_method["VST + BM3D"] = preds
            print(f"  PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.3f}", flush=True)
        else:
            row = {"psnr": BM3D_README_PSNR, "ssim": BM3D_README_SSIM,
                   "note": "not run (bm3d not installed): the W2S README's reference, mean over all 180 pairs"}
            print(f"\n== VST + BM3D: bm3d is not installed; citing the README's {BM3D_README_PSNR} dB", flush=True)
        results["methods"]["VST + BM3D"] = row

    if preds_by_method:
        panels = [[("noisy input", test_noisy[i])] + [(m, p[i]) for m, p in preds_by_method.items()]
                  + [("clean target (avg400)", test_clean[i])] for i in (0, 1) if i < len(test_noisy)]
        box = (slice(0, 128), slice(0, 128)) if smoke else (slice(160, 352), slice(160, 352))
        crop_figure(panels, figures / f"cyclegan_w2s_crops{suffix}.png", box)

    if "style" in args.only:
        print("\n== Style transfer: clean channel 0 (A, fields of A) -> clean channel 1 (B, fields of B)", flush=True)
        _, s_a = w2s_pairs(a_fields, channels=(0,), crop=crop)
        _, s_b = w2s_pairs(b_fields, channels=(1,), crop=crop)
        _, t_a = w2s_pairs(test_fields, channels=(0,), crop=crop)
        _, t_b = w2s_pairs(test_fields, channels=(1,), crop=crop)
        run_dir = OUT / f"w2s_cyclegan_style{suffix}"
        trainer, seconds, history = train_cyclegan(s_a, s_b, style_budget, device, run_dir, cg_settings)
        preds, _ = predict(run_dir / "last.safetensors", t_a, args.device)
        back, _ = predict(run_dir / "last.safetensors", preds, args.device, "b2a")
        swd_crop = 64 if smoke else 128
        results["style_transfer"] = {
            "steps": trainer.step, "train_seconds": seconds, "history": history,
            "swd_to_channel1": {"channel 0 as is": swd_to(t_b, t_a, swd_crop),
                                "channel 0 -> 1 (a2b)": swd_to(t_b, preds, swd_crop),
                                "real channel 1 of other fields": swd_to(t_b, s_b, swd_crop)},
            "cycle_a2b2a": scores(back, t_a),     # b2a(a2b(x)) against x
        }
        print(f"  SWD to channel 1: {results['style_transfer']['swd_to_channel1']}", flush=True)
        panels = [[("channel 0 (input)", t_a[i]), ("translated to channel 1", preds[i]),
                   ("back to channel 0 (b2a)", back[i]), ("real channel 1, same field (reference)", t_b[i])]
                  for i in (0, 1) if i < len(t_a)]
        box = (slice(0, 128), slice(0, 128)) if smoke else (slice(128, 384), slice(128, 384))
        crop_figure(panels, figures / f"cyclegan_w2s_style{suffix}.png", box, vmax_from=None)   # stains differ in range

    path = save_json(f"cyclegan_w2s{suffix}.json", results)
    print("\n" + "\n".join(f"{name:28s} PSNR {row['psnr']:6.2f} dB  SSIM {row['ssim']:.3f}"
                           for name, row in results["methods"].items()))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
