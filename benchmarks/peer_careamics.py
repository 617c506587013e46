"""The peer, side by side: CAREamics (supervised CARE) vs napari-gan Pix2Pix vs our plain
uNet on W2S, in one run, on the same machine, data split and wall-clock budget.

Data: W2S fields 001-048 (3 channels each) train, 049-060 held out (same split and
loading as ``pix2pix_w2s.py``). Every method trains for ``--minutes`` of wall-clock time
with 96x96 patches, batch 8, flips/rotations, then predicts the 36 held-out 512x512
images tiled (tile 256, overlap 48). PSNR/SSIM (data range 255, outputs clipped to
0..255) are computed by the same code for all three.

CAREamics needs torch 2.11 (torchvision <= 0.26), so it runs in its own virtual
environment (``--careamics-python``, default /work/careamics-venv/bin/python) as a
subprocess of this script; a Lightning callback stops it at the budget. Each method
predicts with the model it keeps by default: CAREamics its best checkpoint by validation
loss, napari-gan its best by validation PSNR. CAREamics' early stopping is switched off so
that it uses the whole budget like the others.

    python3 -m venv /work/careamics-venv
    /work/careamics-venv/bin/pip install torch==2.11.0 torchvision==0.26.0 careamics==0.3.5
    flock /tmp/napari-gan-bench.lock python benchmarks/peer_careamics.py --minutes 10
    python benchmarks/peer_careamics.py --smoke            # seconds per method
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS_IMAGES, cpu_info, machine, save_json  # noqa: E402

DEFAULT_CAREAMICS_PYTHON = os.environ.get("CAREAMICS_PYTHON", "/work/careamics-venv/bin/python")


# ------------------------------------------------------------- CAREamics (child process)
def careamics_child(spec: dict) -> None:
    """Runs inside the CAREamics environment: train with a time budget, predict, save."""
    import torch

    torch.set_num_threads(spec["threads"])
    import careamics
    from careamics import CAREamist
    from careamics.config import create_care_config
    try:
        from pytorch_lightning.callbacks import Callback as LCallback
    except ImportError:  # pragma: no cover
        from lightning.pytorch.callbacks import Callback as LCallback

    class WallClock(LCallback):
        def __init__(self, seconds: float | None, steps: int | None):
            self.seconds, self.steps, self.t0 = seconds, steps, None

        def on_train_start(self, trainer, pl_module):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            over_time = self.seconds is not None and time.perf_counter() - self.t0 >= self.seconds
            over_steps = self.steps is not None and trainer.global_step >= self.steps
            if over_time or over_steps:
                trainer.should_stop = True

    work = Path(spec["work_dir"])
    d = np.load(work / "data.npz")
    cfg = create_care_config(experiment_name="w2s_care", data_type="array", axes="SYX",
                             patch_size=(spec["patch"], spec["patch"]), batch_size=spec["batch"],
                             num_epochs=100000, num_steps=spec["steps_per_epoch"])
    # CAREamics stops early by default (validation loss flat for 3 epochs of 200 steps);
    # the comparison is at equal wall-clock budget, so it trains for the whole budget and
    # still predicts with its best checkpoint by validation loss.
    cfg.training_config.early_stopping_params = None
    clock = WallClock(spec["seconds"], spec["steps"])
    careamist = CAREamist(cfg, work_dir=work / "careamics", callbacks=[clock], enable_progress_bar=False)
    t0 = time.perf_counter()
    careamist.train(train_data=d["train_noisy"], train_data_target=d["train_clean"])
    train_s = time.perf_counter() - t0
    steps = int(careamist.trainer.global_step)
    t0 = time.perf_counter()
    out = careamist.predict(d["test_noisy"], data_type="array", axes="SYX", tile_size=(256, 256),
                            tile_overlap=(48, 48))
    predict_s = time.perf_counter() - t0
    arrays = out[0] if isinstance(out, tuple) else out       # 0.3.5: (predictions, sources)
    arrays = arrays if isinstance(arrays, list) else [arrays]
    preds = np.concatenate([np.asarray(o, np.float32).reshape(-1, *d["test_noisy"].shape[-2:]) for o in arrays])
    assert preds.shape == d["test_noisy"].shape, preds.shape
    # Its prediction without tiles (each image whole, CAREamics' default without tile_size):
    # napari-gan predicts each 512x512 image whole by default, so this is the like-for-like time.
    t0 = time.perf_counter()
    careamist.predict(d["test_noisy"], data_type="array", axes="SYX")
    predict_whole_s = time.perf_counter() - t0
    np.save(work / "careamics_pred.npy", preds)
    try:
        import pytorch_lightning as lightning
    except ImportError:  # pragma: no cover
        import lightning

    (work / "careamics_result.json").write_text(json.dumps({
        "train_seconds": train_s, "predict_seconds": predict_s, "predict_whole_seconds": predict_whole_s,
        "steps": steps,
        "images_per_s": steps * spec["batch"] / train_s,
        "versions": {"careamics": careamics.__version__, "torch": torch.__version__,
                     "lightning": lightning.__version__},
        "threads": torch.get_num_threads()}))


# ------------------------------------------------------------------ parent
def run_careamics(python: str, work: Path, minutes: float | None, steps: int | None, threads: int) -> dict:
    spec = {"work_dir": str(work), "seconds": None if minutes is None else 60 * minutes, "steps": steps,
            "patch": 96 if steps is None else 32, "batch": 8, "steps_per_epoch": 200 if steps is None else 2,
            "threads": threads}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [python, __file__, "--careamics-child", json.dumps(spec)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    (work / "careamics.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"CAREamics failed (log: {work / 'careamics.log'}):\n{proc.stderr[-3000:]}")
    result = json.loads((work / "careamics_result.json").read_text())
    result["preds"] = np.load(work / "careamics_pred.npy")
    return result


def scores(preds, clean) -> dict:
    from napari_gan.core.metrics import high_frequency_ratio, psnr, ssim

    preds = [np.clip(p, 0, 255) for p in preds]
    c = [x.astype(np.float32) for x in clean]
    return {"psnr": float(np.mean([psnr(p, t, 255) for p, t in zip(preds, c)])),
            "ssim": float(np.mean([ssim(p, t, 255) for p, t in zip(preds, c)])),
            "hf_ratio": float(np.mean([high_frequency_ratio(p, t) for p, t in zip(preds, c)]))}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["methods"])
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), constrained_layout=True)
    panels = [("psnr", "held-out PSNR (dB)"), ("ssim", "held-out SSIM"), ("predict_seconds", "prediction time (s), 36 × 512²")]
    for ax, (key, title) in zip(axes, panels):
        vals = [results["methods"][n][key] for n in names]
        bars = ax.bar(range(len(names)), vals, color=["#888", "#1f77b4", "#ff7f0e"][:len(names)])
        ax.bar_label(bars, fmt="%.3f" if key == "ssim" else "%.2f", fontsize=8)
        ax.set_xticks(range(len(names)), [n.replace(" (", "\n(") for n in names], fontsize=7)
        ax.set_title(title, fontsize=9)
        if key != "predict_seconds":
            base = results["noisy_input"][key]
            ax.axhline(base, color="k", ls=":", lw=1)
            ax.set_ylim(min(vals + [base]) * 0.95, max(vals) * 1.02)
    fig.suptitle(f"W2S denoising, {results['minutes']} min training budget each, same machine "
                 f"({results['machine']['cores']} CPU cores)", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_variant(text: str) -> dict:
    """``width=16,disc_width=16`` -> Pix2Pix settings (numbers as numbers)."""
    out = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        out[key.strip()] = json.loads(value) if value.strip()[:1].isdigit() else value.strip()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--careamics-child", help=argparse.SUPPRESS)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--careamics-python", default=DEFAULT_CAREAMICS_PYTHON)
    ap.add_argument("--smoke", action="store_true", help="3 steps per method on small crops")
    ap.add_argument("--tag", default="")
    ap.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                    help="napari-gan methods to run beside CAREamics (default: all of pix2pix_w2s.METHODS)")
    ap.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                    help="also train napari-gan Pix2Pix with these settings (e.g. width=16,disc_width=16); "
                         "repeat for several")
    args = ap.parse_args()
    if args.careamics_child:
        careamics_child(json.loads(args.careamics_child))
        return

    import torch

    torch.set_num_threads(args.threads)
    from common import w2s_pairs
    from napari_gan import __version__
    from napari_gan.core.device import resolve_device
    from napari_gan.core.metrics import psnr, ssim
    from napari_gan.core.training.base import Budget
    from pix2pix_w2s import METHODS, evaluate, figure, train

    crop = 128 if args.smoke else None
    train_noisy, train_clean = w2s_pairs(range(1, 3) if args.smoke else range(1, 49), crop=crop)
    test_noisy, test_clean = w2s_pairs(range(49, 50) if args.smoke else range(49, 61), crop=crop)
    device = resolve_device("cpu")
    minutes = None if args.smoke else args.minutes
    steps = 3 if args.smoke else None
    results = {"machine": machine(), "cpu": cpu_info(), "minutes": args.minutes if not args.smoke else None, "smoke": args.smoke,
               "threads": args.threads, "split": {"train": "W2S FOV 001-048 x 3 channels",
                                                  "test": "W2S FOV 049-060 x 3 channels"},
               "noisy_input": {
                   "psnr": float(np.mean([psnr(n.astype(np.float32), c.astype(np.float32), 255) for n, c in zip(test_noisy, test_clean)])),
                   "ssim": float(np.mean([ssim(n.astype(np.float32), c.astype(np.float32), 255) for n, c in zip(test_noisy, test_clean)]))},
               "methods": {}}
    preds_by_method = {}
    with tempfile.TemporaryDirectory(prefix="peer-") as tmp:
        work = Path(tmp)
        np.savez(work / "data.npz", train_noisy=np.stack(train_noisy).astype(np.float32),
                 train_clean=np.stack(train_clean).astype(np.float32),
                 test_noisy=np.stack(test_noisy).astype(np.float32))
        print(f"== CAREamics CARE ({'3 steps' if args.smoke else f'{args.minutes} min'})", flush=True)
        load0 = os.getloadavg()[0]
        r = run_careamics(args.careamics_python, work, minutes, steps, args.threads)
        r["load_average_1min"] = [load0, os.getloadavg()[0]]
        preds = list(r.pop("preds"))
        r.update(scores(preds, test_clean), predict_mpix_per_s=sum(p.size for p in preds) / 1e6 / r["predict_seconds"])
        results["methods"]["CAREamics CARE"] = r
        preds_by_method["CAREamics CARE"] = preds
        print(f"  PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}, {r['steps']} steps, "
              f"predict {r['predict_seconds']:.1f} s", flush=True)

        budget = Budget(steps=steps) if args.smoke else Budget(minutes=args.minutes)
        chosen = {name: kw for name, kw in METHODS.items() if args.methods is None or name in args.methods}
        chosen.update({f"napari-gan Pix2Pix ({text})": parse_variant(text) for text in args.variant})
        for k, (name, kw) in enumerate(chosen.items()):
            print(f"== {name}", flush=True)
            run_dir = work / f"method{k}"
            load0 = os.getloadavg()[0]
            trainer, train_s, history = train(kw, train_noisy, train_clean, budget, device, run_dir)
            t0 = time.perf_counter()
            sc, preds = evaluate(run_dir, test_noisy, test_clean, "cpu")
            evaluate_s = time.perf_counter() - t0
            # the prediction loop alone (as CAREamics' figure is its predict call alone; the
            # evaluation also loads the model and computes PSNR, SSIM and HF ratio)
            predict_s = sum(p.size for p in test_noisy) / 1e6 / sc["predict_mpix_per_s"]
            sc.update(steps=trainer.step, train_seconds=train_s, predict_seconds=predict_s,
                      evaluate_seconds=evaluate_s,
                      images_per_s=trainer.step * trainer.cfg.batch / train_s,
                      versions={"napari-gan": __version__, "torch": torch.__version__}, threads=args.threads,
                      load_average_1min=[load0, os.getloadavg()[0]],
                      history=history)
            results["methods"][name] = sc
            preds_by_method[name] = preds
            print(f"  PSNR {sc['psnr']:.2f} dB, SSIM {sc['ssim']:.3f}, {trainer.step} steps, "
                  f"predict {predict_s:.1f} s", flush=True)
    mpix = sum(p.size for p in test_noisy) / 1e6
    for r in results["methods"].values():
        r.pop("predict_mpix_per_s", None)
        r["predict_mpix_per_s"] = mpix / r["predict_seconds"]
        if "predict_whole_seconds" in r:
            r["predict_whole_mpix_per_s"] = mpix / r["predict_whole_seconds"]
    care = results["methods"]["CAREamics CARE"]
    for name, r in results["methods"].items():
        if name == "CAREamics CARE":
            continue
        # our ratios to the peer: training img/s, prediction Mpix/s (its tiled 256/48 and its
        # whole-image prediction), PSNR difference in dB
        r["vs_careamics"] = {"train": r["images_per_s"] / care["images_per_s"],
                             "predict_tiled": r["predict_mpix_per_s"] / care["predict_mpix_per_s"],
                             "predict_whole": (r["predict_mpix_per_s"] / care["predict_whole_mpix_per_s"]
                                               if "predict_whole_mpix_per_s" in care else None),
                             "psnr_db": r["psnr"] - care["psnr"]}
        print(f"  {name} / CAREamics: train {r['vs_careamics']['train']:.2f}x, predict "
              f"{r['vs_careamics']['predict_tiled']:.2f}x (its tiled) "
              + (f"{r['vs_careamics']['predict_whole']:.2f}x (its whole), " if r['vs_careamics']['predict_whole'] else "")
              + f"PSNR {r['vs_careamics']['psnr_db']:+.2f} dB", flush=True)
    path = save_json(f"peer_careamics{'_smoke' if args.smoke else ''}{args.tag}.json", results)
    if not args.smoke:
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        plot(results, DOCS_IMAGES / f"peer_careamics{args.tag}.png")
        figure(test_noisy, test_clean, preds_by_method, DOCS_IMAGES / f"peer_careamics_crops{args.tag}.png")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
