"""CPU path: training images/s and tiled-inference megapixels/s of the default models,
with 1 and 2 torch threads, in bf16 autocast (the default on CPUs with native bf16:
AVX512-BF16 or AMX) and in float32, side by side in one run.

Measured (synthetic structured data; speed does not depend on the content):

* Pix2Pix default (uNet depth 3 / width 32 + PatchGAN, 96x96 patches, batch 8), a full
  adversarial step (G and D);
* the plain uNet (same generator, L1 only: ``--adv-weight 0``);
* StyleGAN2 "small" at 64x64 (auto batch), a step averaged over the R1 / path-length
  intervals (16 steps);
* tiled prediction of a 1024x1024 image with the default uNet (CPU tile 256, overlap 48).

Model FLOPs are counted with torch's FlopCounterMode, to show which fraction of the CPU's
arithmetic the step uses.

    python benchmarks/cpu_throughput.py                 # the published run (about 10 min)
    python benchmarks/cpu_throughput.py --smoke         # seconds; used by CI
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # noqa: E402
from common import DOCS_IMAGES, OUT, machine, save_json  # noqa: E402


def measure_pix2pix(device, adv_weight: float, smoke: bool, seconds: float) -> dict:
    kw = dict(batch=2, patch=32, depth=2, width=8, disc_width=8, size=128) if smoke else {}
    trainer = perf.pix2pix_trainer(device, adv_weight=adv_weight, **kw)
    flops = perf.count_flops(lambda: trainer.train_step(0.5))
    n, s = perf.time_steps(lambda: trainer.train_step(0.5), device, warmup=1 if smoke else 3,
                           min_steps=2 if smoke else 5, min_seconds=0 if smoke else seconds)
    return {"images_per_s": n * trainer.cfg.batch / s, "step_s": s / n, "steps": n,
            "gflop_per_step": flops / 1e9, "gflops": flops * n / s / 1e9, "batch": trainer.cfg.batch,
            "patch": trainer.cfg.patch}


def measure_stylegan2(device, smoke: bool, seconds: float, channels_last: bool = True) -> dict:
    import torch

    trainer = perf.stylegan2_trainer(device, 16 if smoke else 64, batch=4 if smoke else None)
    if not channels_last:   # the layout of earlier releases: NCHW networks and batches
        trainer.memory_format = torch.contiguous_format
        for net in (trainer.G, trainer.D, trainer.G_ema):
            net.to(memory_format=torch.contiguous_format)
    period = 1 if smoke else 16     # R1 every 16 D steps, path length every 4 G steps

    def step():
        trainer.train_step(0.5)
        trainer.step += 1            # the step counter drives the R1 / path-length schedule

    flops = perf.count_flops(step, period)
    n, s = perf.time_steps(step, device, warmup=1 if smoke else 2, min_steps=2 if smoke else period,
                           min_seconds=0 if smoke else seconds)
    batch = trainer.cfg.batch
    return {"images_per_s": n * batch / s, "s_per_kimg": s / (n * batch) * 1000, "steps": n,
            "gflop_per_step": flops / 1e9, "gflops": flops * n / s / 1e9, "batch": batch,
            "resolution": trainer.cfg.resolution}


def measure_predict(device, smoke: bool, tile: int | None = None) -> dict:
    size = 128 if smoke else 1024
    p = perf.predictor(device, *((8, 2) if smoke else (32, 3)))
    p.tile = tile or p.tile
    image = perf.smooth_planes(1, size)[0][0]
    p.predict(image[:64, :64])                                   # warm-up
    t0 = time.perf_counter()
    p.predict(image)
    s = time.perf_counter() - t0
    fpp = perf.unet_flops_per_pixel(device, *((8, 2) if smoke else (32, 3)), tile=64 if smoke else 256)
    return {"mpix_per_s": size * size / 1e6 / s, "seconds": s, "size": size, "tile": p.tile,
            "overlap": p.overlap, "gflop_per_pixel_untiled": fpp / 1e9,
            "gflops_effective": fpp * size * size / s / 1e9}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["pix2pix", "plain_unet", "stylegan2_64"]
    labels = ["Pix2Pix train\n(img/s, 96², b8)", "plain uNet train\n(img/s, 96², b8)",
              "StyleGAN2 small 64²\ntrain (img/s)", "tiled predict\n(Mpix/s ×10)"]
    fig, ax = plt.subplots(figsize=(9, 3.8), constrained_layout=True)
    runs = list(results["runs"])
    width = 0.8 / len(runs)
    for j, key in enumerate(runs):
        r = results["runs"][key]
        vals = [r[n]["images_per_s"] if n in r else 0 for n in names] + [10 * r["predict"]["mpix_per_s"]]
        xs = np.arange(len(labels)) + (j - (len(runs) - 1) / 2) * width
        precision, threads = key.split("/")
        bars = ax.bar(xs, vals, width, label=f"{precision}, {threads} thread{'s' if int(threads) > 1 else ''}")
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    ax.set_xticks(np.arange(len(labels)), labels, fontsize=8)
    ax.set_ylabel("throughput")
    ax.set_title(f"CPU path ({results['machine']['cpu']}, {results['machine']['cores']} cores)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def measure_all(device, args, tile512: bool) -> dict:
    r = {}
    if not args.stylegan2_only:
        r["pix2pix"] = measure_pix2pix(device, 1.0, args.smoke, args.seconds)
        r["plain_unet"] = measure_pix2pix(device, 0.0, args.smoke, args.seconds)
    if not args.skip_stylegan2:
        # the two memory layouts alternate, twice, so that a change in machine load hits both
        for rep in range(1 if args.smoke else 2):
            for key, channels_last in (("stylegan2_64", True), ("stylegan2_64_nchw", False)):
                m = measure_stylegan2(device, args.smoke, args.seconds, channels_last)
                r.setdefault(key, []).append(m)
        for key in ("stylegan2_64", "stylegan2_64_nchw"):
            r[key] = max(r[key], key=lambda m: m["images_per_s"]) | {"repeats": len(r[key])}
    if args.stylegan2_only:
        return r
    r["predict"] = measure_predict(device, args.smoke)
    if tile512 and not args.smoke:
        r["predict_tile512"] = measure_predict(device, args.smoke, tile=512)
    return r


def report(key: str, r: dict) -> None:
    line = f"{key}: "
    if "pix2pix" in r:
        line += (f"pix2pix {r['pix2pix']['images_per_s']:.2f} img/s, "
                 f"plain uNet {r['plain_unet']['images_per_s']:.2f} img/s, ")
    if "stylegan2_64" in r:
        sg, nchw = r["stylegan2_64"], r["stylegan2_64_nchw"]
        line += (f"stylegan2 {sg['images_per_s']:.2f} img/s ({sg['s_per_kimg']:.0f} s/kimg; NCHW "
                 f"{nchw['images_per_s']:.2f} img/s, channels-last {sg['images_per_s'] / nchw['images_per_s']:.2f}x), ")
    if "predict" in r:
        line += f"predict {r['predict']['mpix_per_s']:.3f} Mpix/s"
    if "predict_tile512" in r:
        line += f" (tile 512: {r['predict_tile512']['mpix_per_s']:.3f})"
    print(line, flush=True)


def main() -> None:
    import torch

    from napari_gan.core.device import cpu_has_native_bf16

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--precisions", nargs="+", choices=("bf16", "fp32"), default=["bf16", "fp32"],
                    help="bf16 is skipped on CPUs without native bf16 (it is not used there)")
    ap.add_argument("--seconds", type=float, default=20.0, help="minimum timed seconds per measurement")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--skip-stylegan2", action="store_true")
    ap.add_argument("--stylegan2-only", action="store_true",
                    help="only StyleGAN2, in both memory layouts (written with the tag '_stylegan2')")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.stylegan2_only:
        args.tag = args.tag or "_stylegan2"
    device = torch.device("cpu")
    precisions = [p for p in args.precisions if p == "fp32" or cpu_has_native_bf16()]
    results = {"machine": machine(), "native_bf16": cpu_has_native_bf16(),
               "load_average_start": os.getloadavg(), "smoke": args.smoke, "runs": {}}
    for precision in precisions:
        os.environ["NAPARI_GAN_CPU_BF16"] = "1" if precision == "bf16" else "0"
        for t in args.threads:
            torch.set_num_threads(t)
            key = f"{precision}/{t}"
            results["runs"][key] = measure_all(device, args, tile512=precision == precisions[0])
            report(key, results["runs"][key])
    results["load_average_end"] = os.getloadavg()
    path = save_json(f"cpu_throughput{'_smoke' if args.smoke else ''}{args.tag}.json", results)
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    if not args.stylegan2_only:
        plot(results, (OUT if args.smoke else DOCS_IMAGES) / f"cpu_throughput{'_smoke' if args.smoke else ''}{args.tag}.png")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
