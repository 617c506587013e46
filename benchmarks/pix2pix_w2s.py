"""Denoising quality on W2S: plain uNet (L1) vs napari-gan Pix2Pix, same data, same budget.

Trains each method on fields 001-048 (3 channels each) for the same wall-clock budget,
one after the other on the same machine, then predicts the held-out fields 049-060 and
reports PSNR/SSIM (data_range 255, outputs clipped to 0..255), the high-frequency power
ratio (output vs target; 1 = as sharp as the target, below 1 = blurred), training steps,
and prediction speed. Writes benchmarks/out/pix2pix_w2s.json and a crop figure.

    python benchmarks/pix2pix_w2s.py --minutes 10            # the published run
    python benchmarks/pix2pix_w2s.py --smoke                 # seconds; used by CI
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from common import DOCS_IMAGES, OUT, machine, save_json, w2s_pairs

METHODS = {
    "plain uNet (L1)": dict(adv_weight=0.0),
    "napari-gan Pix2Pix (default)": dict(),
}


def train(method_kw: dict, noisy, clean, budget, device, out_dir, seed=0):
    from napari_gan.core.data import PairedSet
    from napari_gan.core.families.pix2pix import Pix2PixConfig, Pix2PixTrainer

    cfg = Pix2PixConfig(task="denoise", **method_kw)
    data = PairedSet.build([n[None] for n in noisy], [c[None] for c in clean])
    trainer = Pix2PixTrainer(cfg, data, out_dir, budget, device, seed, val_every=250, log_every=50)
    t0 = time.perf_counter()
    history = []
    for ev in trainer.run():
        if ev.kind in ("validation", "done") and ev.metrics:
            history.append({"step": ev.step, "seconds": ev.elapsed_s, **ev.metrics})
            print(f"  {ev.summary()}", flush=True)
    return trainer, time.perf_counter() - t0, history


def evaluate(model_dir, noisy, clean, device):
    from napari_gan.core.inference import load_predictor
    from napari_gan.core.metrics import high_frequency_ratio, psnr, ssim

    predictor = load_predictor(model_dir, device)
    t0 = time.perf_counter()
    preds = [np.clip(predictor.predict(n), 0, 255) for n in noisy]
    seconds = time.perf_counter() - t0
    c = [x.astype(np.float32) for x in clean]
    return {
        "psnr": float(np.mean([psnr(p, t, 255) for p, t in zip(preds, c)])),
        "ssim": float(np.mean([ssim(p, t, 255) for p, t in zip(preds, c)])),
        "hf_ratio": float(np.mean([high_frequency_ratio(p, t) for p, t in zip(preds, c)])),
        "predict_mpix_per_s": sum(p.size for p in preds) / 1e6 / seconds,
    }, preds


def figure(noisy, clean, preds_by_method, path, index=0, box=(slice(160, 352), slice(160, 352))):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("noisy input", noisy[index])] + [(m, p[index]) for m, p in preds_by_method.items()] + \
             [("clean target (avg400)", clean[index])]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), constrained_layout=True)
    for ax, (title, img) in zip(axes, panels):
        crop = np.asarray(img, np.float32)[box]
        ax.imshow(crop, cmap="magma", vmin=0, vmax=np.percentile(np.asarray(clean[index])[box], 99.8))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    import torch

    from napari_gan.core.device import describe_device, resolve_device
    from napari_gan.core.metrics import psnr, ssim
    from napari_gan.core.training.base import Budget

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--steps", type=int, help="a step budget instead of minutes (quality at equal steps, "
                                              "independent of the machine's load)")
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                    metavar="METHOD", help="which methods to run (default: all)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--smoke", action="store_true", help="a few steps on small crops")
    ap.add_argument("--tag", default="", help="suffix for the output files")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    crop = 128 if args.smoke else None
    train_noisy, train_clean = w2s_pairs(range(1, 3) if args.smoke else range(1, 49), crop=crop)
    test_noisy, test_clean = w2s_pairs(range(49, 50) if args.smoke else range(49, 61), crop=crop)
    budget = Budget(steps=3) if args.smoke else Budget(steps=args.steps) if args.steps else Budget(minutes=args.minutes)
    print(f"W2S: {len(train_noisy)} training pairs, {len(test_noisy)} held-out pairs, device "
          f"{describe_device(device)}, budget {budget}", flush=True)

    baseline = {
        "psnr": float(np.mean([psnr(n.astype(np.float32), c.astype(np.float32), 255) for n, c in zip(test_noisy, test_clean)])),
        "ssim": float(np.mean([ssim(n.astype(np.float32), c.astype(np.float32), 255) for n, c in zip(test_noisy, test_clean)])),
    }
    results = {"machine": machine(), "device": describe_device(device), "minutes": args.minutes,
               "smoke": args.smoke, "noisy_input": baseline, "methods": {}}
    preds_by_method = {}
    for name, kw in ((m, METHODS[m]) for m in args.methods):
        print(f"\n== {name}", flush=True)
        run_dir = OUT / f"w2s_{name.split()[0].lower()}{'_smoke' if args.smoke else ''}{args.tag}"
        trainer, train_s, history = train(kw, train_noisy, train_clean, budget, device, run_dir)
        scores, preds = evaluate(run_dir, test_noisy, test_clean, args.device)
        scores.update(steps=trainer.step, train_seconds=train_s, history=history,
                      images_per_s=trainer.step * trainer.cfg.batch / train_s)
        results["methods"][name] = scores
        preds_by_method[name] = preds
        print(f"  held-out: PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.3f}, "
              f"HF ratio {scores['hf_ratio']:.2f}, {trainer.step} steps", flush=True)
    path = save_json(f"pix2pix_w2s{'_smoke' if args.smoke else ''}{args.tag}.json", results)
    if not args.smoke:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        figure(test_noisy, test_clean, preds_by_method, DOCS_IMAGES / f"pix2pix_w2s_crops{args.tag}.png")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
