"""GPU path: every GPU figure of the performance issue in one script, for one GPU.

* Pix2Pix training images/s at 256x256 patches, batch 1 and 16, for three settings:
  ``fp32`` (TF32 matmuls, NCHW, patches cut on the host), ``default`` (bf16 autocast,
  channels_last, patches cut on the GPU, fused Adam: what ``napari-gan train`` does on a
  GPU) and ``default+compile`` (``torch.compile`` on G and D).
* StyleGAN2 seconds per kimg at 64, 128 and 256 (auto batch, R1 every 16 and path length
  every 4 steps included: the timed window is a multiple of 16 steps), network sizes
  ``small`` (napari-gan's default) and ``full`` (the reference's widths), eager and
  compiled; anchor: stylegan2-ada-pytorch's published single-A100 figures quoted in the
  issue (6.79 s/kimg at 128^2, 12.53 at 256^2, with its custom CUDA ops).
* Tiled inference megapixels/s on an 8192x8192 image (default uNet, random weights),
  for a few tile/batch settings.
* For each: peak GPU memory (``torch.cuda.max_memory_allocated``) and the fraction of the
  GPU's dense bf16 peak reached, from model FLOPs counted with torch's FLOP formulas over
  real steps (2 FLOPs per multiply-add; fp32 rows are also compared with the bf16 peak).

Writes ``benchmarks/out/gpu_suite.json`` and ``docs/benchmarks_gpu.md`` (tables) plus
``docs/images/gpu_suite.png``.

    python benchmarks/gpu_suite.py                        # on the GPU machine (about 15 min)
    python benchmarks/gpu_suite.py --only pix2pix --no-compile
    python benchmarks/gpu_suite.py --smoke --device cpu   # code path check, seconds
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # noqa: E402
from common import DOCS_IMAGES, OUT, ROOT, machine, save_json  # noqa: E402

ANCHOR_S_PER_KIMG = {128: 6.79, 256: 12.53}   # stylegan2-ada-pytorch, 1x A100 (as quoted in the issue)


def _set_pix2pix_mode(trainer, mode: str) -> None:
    """fp32: NCHW, autocast off, host patches; default/compile: as built."""
    import torch

    if mode == "fp32":
        trainer.cfg.amp = False
        trainer.channels_last = False
        trainer.cutter = None
        trainer.G.to(memory_format=torch.contiguous_format)
        trainer.D.to(memory_format=torch.contiguous_format)


def bench_pix2pix(device, args, peak_tflops) -> list[dict]:
    rows = []
    modes = ["fp32", "default"] + ([] if (args.no_compile or args.smoke) else ["default+compile"])
    batches = [1, 2] if args.smoke else [1, 16]
    patch = 32 if args.smoke else 256
    small = dict(depth=2, width=8, disc_width=8, size=96, planes=2) if args.smoke else dict(size=1024, planes=8)
    for batch in batches:
        for mode in modes:
            try:
                trainer = perf.pix2pix_trainer(device, batch=batch, patch=patch, compile=mode.endswith("compile"),
                                               **small)
                _set_pix2pix_mode(trainer, mode)
                step = lambda: trainer.train_step(0.5)
                flop_trainer = trainer
                if mode.endswith("compile"):   # count on an eager twin (same math)
                    flop_trainer = perf.pix2pix_trainer(device, batch=batch, patch=patch, **small)
                flops = perf.count_flops(lambda: flop_trainer.train_step(0.5))
                del flop_trainer
                with perf.peak_gpu_memory(device) as mem:
                    n, s = perf.time_steps(step, device, warmup=2 if args.smoke else 10,
                                           min_steps=2 if args.smoke else 20,
                                           min_seconds=0 if args.smoke else args.seconds)
                tflops = flops * n / s / 1e12
                rows.append({"family": "pix2pix", "mode": mode, "batch": batch, "patch": patch,
                             "images_per_s": n * batch / s, "step_ms": 1000 * s / n, "steps": n,
                             "gflop_per_step": flops / 1e9, "tflops": tflops,
                             "fraction_of_bf16_peak": tflops / peak_tflops if peak_tflops else None,
                             "peak_mem_gib": mem["bytes"] / 2**30 if mem["bytes"] else None})
                print(_fmt(rows[-1]), flush=True)
            except Exception as exc:   # one failing setting must not lose the others
                rows.append({"family": "pix2pix", "mode": mode, "batch": batch, "error": repr(exc)})
                traceback.print_exc()
            _free(device)
    return rows


def bench_stylegan2(device, args, peak_tflops) -> list[dict]:
    rows = []
    resolutions = [16] if args.smoke else args.resolutions
    sizes = ["small"] if args.smoke else args.sizes
    compiles = [False] if (args.no_compile or args.smoke) else [False, True]
    period = 16
    for res in resolutions:
        for size in sizes:
            for compile in compiles:
                mode = f"{size}{'+compile' if compile else ''}"
                try:
                    trainer = perf.stylegan2_trainer(device, res, size=size, compile=compile,
                                                     batch=4 if args.smoke else None)

                    def step(t=trainer):
                        t.train_step(0.5)
                        t.step += 1   # drives the R1 / path-length schedule

                    flop_trainer = perf.stylegan2_trainer(device, res, size=size, batch=4 if args.smoke else None) \
                        if compile else trainer
                    flops = perf.count_flops(lambda: (flop_trainer.train_step(0.5), setattr(
                        flop_trainer, "step", flop_trainer.step + 1)), 2 if args.smoke else period)
                    del flop_trainer
                    trainer.step = 0
                    for _ in range(1 if args.smoke else period):   # warm-up: every kind of step, compiled
                        step()
                    with perf.peak_gpu_memory(device) as mem:
                        perf.sync(device)
                        t0, n = time.perf_counter(), 0
                        while n < (2 if args.smoke else 2 * period) or \
                                (not args.smoke and time.perf_counter() - t0 < args.seconds) or n % period:
                            step()
                            n += 1
                        perf.sync(device)
                        s = time.perf_counter() - t0
                    batch = trainer.cfg.batch
                    tflops = flops * n / s / 1e12
                    rows.append({"family": "stylegan2", "mode": mode, "resolution": res, "batch": batch,
                                 "s_per_kimg": s / (n * batch) * 1000, "images_per_s": n * batch / s,
                                 "steps": n, "gflop_per_step": flops / 1e9, "tflops": tflops,
                                 "fraction_of_bf16_peak": tflops / peak_tflops if peak_tflops else None,
                                 "peak_mem_gib": mem["bytes"] / 2**30 if mem["bytes"] else None,
                                 "anchor_s_per_kimg_a100": ANCHOR_S_PER_KIMG.get(res)})
                    print(_fmt(rows[-1]), flush=True)
                except Exception as exc:
                    rows.append({"family": "stylegan2", "mode": mode, "resolution": res, "error": repr(exc)})
                    traceback.print_exc()
                _free(device)
    return rows


def bench_inference(device, args, peak_tflops) -> list[dict]:
    rows = []
    size = 256 if args.smoke else 8192
    settings = [(128, 2)] if args.smoke else [(512, 4), (1024, 4), (2048, 2)]
    width, depth = (8, 2) if args.smoke else (32, 3)
    image = np.random.default_rng(0).random((size, size), dtype=np.float32) * 200
    for tile, batch in settings:
        try:
            p = perf.predictor(device, width, depth)
            p.batch = batch
            p.predict(image[:tile, :tile], tile=tile)            # warm-up (cudnn autotune)
            # model FLOPs actually run: one tile's forward x number of tiles
            tiles = _count_tiles(size, tile, p.overlap, p.multiple)
            fpp = perf.unet_flops_per_pixel(device, width, depth, tile)
            flops = fpp * tile * tile * tiles
            with perf.peak_gpu_memory(device) as mem:
                t0 = time.perf_counter()
                p.predict(image, tile=tile)
                perf.sync(device)
                s = time.perf_counter() - t0
            tflops = flops / s / 1e12
            rows.append({"family": "inference", "mode": f"tile {tile}, batch {batch}", "size": size,
                         "tile": tile, "batch": batch, "seconds": s, "mpix_per_s": size * size / 1e6 / s,
                         "tiles": tiles, "gflop_per_mpix_untiled": fpp * 1e6 / 1e9, "tflops": tflops,
                         "fraction_of_bf16_peak": tflops / peak_tflops if peak_tflops else None,
                         "peak_mem_gib": mem["bytes"] / 2**30 if mem["bytes"] else None})
            print(_fmt(rows[-1]), flush=True)
        except Exception as exc:
            rows.append({"family": "inference", "mode": f"tile {tile}, batch {batch}", "error": repr(exc)})
            traceback.print_exc()
        _free(device)
    return rows


def _count_tiles(size: int, tile: int, overlap: int, multiple: int) -> int:
    from napari_gan.core.inference import _round_up, tile_starts

    t = max(multiple, tile // multiple * multiple)
    t = min(t, _round_up(size + 2 * overlap, multiple))
    return len(tile_starts(size + 2 * overlap, t, overlap)) ** 2


def _free(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _fmt(r: dict) -> str:
    main = (f"{r['images_per_s']:9.1f} img/s" if r["family"] == "pix2pix" else
            f"{r['s_per_kimg']:8.2f} s/kimg" if r["family"] == "stylegan2" else f"{r['mpix_per_s']:9.1f} Mpix/s")
    frac = r.get("fraction_of_bf16_peak")
    mem = r.get("peak_mem_gib")
    return (f"{r['family']:9s} {r['mode']:22s} {r.get('batch', ''):>3} {r.get('resolution', r.get('patch', r.get('size', ''))):>5} "
            f"{main}  {r['tflops']:7.2f} TFLOP/s" + (f" ({100 * frac:.1f}% of bf16 peak)" if frac else "")
            + (f"  peak {mem:.2f} GiB" if mem else ""))


def markdown(results: dict) -> str:
    m = results["machine"]
    peak = results["bf16_peak_tflops"]
    out = [f"GPU: {m.get('gpu', 'none')}; torch {m['torch']}; dense bf16 peak used: "
           f"{peak if peak else 'unknown'} TFLOP/s; {m['date']}.", ""]

    def pct(r):
        return f"{100 * r['fraction_of_bf16_peak']:.1f}%" if r.get("fraction_of_bf16_peak") else "n/a"

    def mem(r):
        return f"{r['peak_mem_gib']:.2f}" if r.get("peak_mem_gib") else "n/a"

    rows = [r for r in results["rows"] if r["family"] == "pix2pix" and "error" not in r]
    out += ["**Pix2Pix training, 256×256 patches**", "",
            "| batch | setting | images/s | ms/step | GFLOP/step | TFLOP/s | % of bf16 peak | peak GPU memory (GiB) |",
            "|---|---|---|---|---|---|---|---|"]
    out += [f"| {r['batch']} | {r['mode']} | {r['images_per_s']:.1f} | {r['step_ms']:.2f} | {r['gflop_per_step']:.1f} | "
            f"{r['tflops']:.1f} | {pct(r)} | {mem(r)} |" for r in rows]
    rows = [r for r in results["rows"] if r["family"] == "stylegan2" and "error" not in r]
    out += ["", "**StyleGAN2 training (auto batch; R1/16 and path length/4 included)**", "",
            "| resolution | network | batch | s/kimg | A100 anchor s/kimg | GFLOP/step | TFLOP/s | % of bf16 peak | peak GPU memory (GiB) |",
            "|---|---|---|---|---|---|---|---|---|"]
    out += [f"| {r['resolution']}² | {r['mode']} | {r['batch']} | {r['s_per_kimg']:.2f} | "
            f"{r['anchor_s_per_kimg_a100'] or '–'} | {r['gflop_per_step']:.1f} | {r['tflops']:.1f} | {pct(r)} | {mem(r)} |"
            for r in rows]
    rows = [r for r in results["rows"] if r["family"] == "inference" and "error" not in r]
    out += ["", "**Tiled inference, default uNet**", "",
            "| image | setting | seconds | Mpix/s | TFLOP/s | % of bf16 peak | peak GPU memory (GiB) |",
            "|---|---|---|---|---|---|---|"]
    out += [f"| {r['size']}² | {r['mode']} | {r['seconds']:.2f} | {r['mpix_per_s']:.1f} | {r['tflops']:.1f} | "
            f"{pct(r)} | {mem(r)} |" for r in rows]
    errors = [r for r in results["rows"] if "error" in r]
    if errors:
        out += ["", "Settings that failed: " + "; ".join(f"{r['family']} {r['mode']}: {r['error'][:120]}" for r in errors)]
    return "\n".join(out) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    rows = [r for r in results["rows"] if "error" not in r]
    p2p = [r for r in rows if r["family"] == "pix2pix"]
    labels = [f"b{r['batch']}\n{r['mode']}" for r in p2p]
    axes[0].bar(range(len(p2p)), [r["images_per_s"] for r in p2p])
    axes[0].set_xticks(range(len(p2p)), labels, fontsize=7)
    axes[0].set_title("Pix2Pix training, 256² (images/s)", fontsize=9)
    sg = [r for r in rows if r["family"] == "stylegan2"]
    for mode in sorted({r["mode"] for r in sg}):
        pts = sorted((r["resolution"], r["s_per_kimg"]) for r in sg if r["mode"] == mode)
        axes[1].plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=mode)
    axes[1].plot(list(ANCHOR_S_PER_KIMG), list(ANCHOR_S_PER_KIMG.values()), "k*", ms=10,
                 label="stylegan2-ada-pytorch, A100")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("resolution")
    axes[1].set_title("StyleGAN2 s/kimg (lower is better)", fontsize=9)
    axes[1].legend(fontsize=7)
    inf = [r for r in rows if r["family"] == "inference"]
    axes[2].bar(range(len(inf)), [r["mpix_per_s"] for r in inf])
    axes[2].set_xticks(range(len(inf)), [r["mode"] for r in inf], fontsize=7)
    axes[2].set_title("tiled inference, 8192² (Mpix/s)", fontsize=9)
    fig.suptitle(results["machine"].get("gpu", "no GPU"), fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    import torch

    from napari_gan.core.device import resolve_device

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", nargs="+", choices=("pix2pix", "stylegan2", "inference"),
                    default=["pix2pix", "stylegan2", "inference"])
    ap.add_argument("--resolutions", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--sizes", nargs="+", default=["small", "full"])
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--seconds", type=float, default=10.0, help="minimum timed seconds per setting")
    ap.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the GPU (default: from its name)")
    ap.add_argument("--smoke", action="store_true", help="tiny models and sizes; checks the code path")
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    device = resolve_device(args.device)
    if device.type != "cuda" and not args.smoke:
        raise SystemExit("gpu_suite.py measures a GPU; none is available here (use --smoke to check the code path).")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or perf.bf16_peak_tflops(name)
    results = {"machine": machine(), "device": name, "bf16_peak_tflops": peak, "smoke": args.smoke, "rows": []}
    benches = {"pix2pix": bench_pix2pix, "stylegan2": bench_stylegan2, "inference": bench_inference}
    for key in args.only:
        results["rows"] += benches[key](device, args, peak)
        save_json(f"gpu_suite{'_smoke' if args.smoke else ''}{args.tag}.json", results)   # keep partial results
    path = save_json(f"gpu_suite{'_smoke' if args.smoke else ''}{args.tag}.json", results)
    md = markdown(results)
    if not args.smoke:
        (ROOT / "docs").mkdir(exist_ok=True)
        (ROOT / "docs" / f"benchmarks_gpu{args.tag}.md").write_text(md)
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    plot(results, (OUT if args.smoke else DOCS_IMAGES) / f"gpu_suite{'_smoke' if args.smoke else ''}{args.tag}.png")
    print(md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
