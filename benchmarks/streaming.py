"""Whole-slide prediction, streamed: peak memory and speed from 4k to 32k pixels square.

A synthetic uint16 slide (smooth structures plus noise, made band by band, never whole) is
written as OME-Zarr (and as an uncompressed, memory-mappable BigTIFF with ``--tiff``) and
predicted end to end with ``napari-gan predict`` by a small Pix2Pix uNet (width 4, depth 2,
made on the fly with random weights): OME-Zarr -> OME-Zarr with its pyramid, TIFF -> TIFF
(streamed through a temporary Zarr store: NAPARI_GAN_STREAM_TIFF_MB=0). Every run is a fresh
subprocess; its peak resident memory is ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``
(under torchrun: the largest of its processes); Mpix/s counts input pixels over the wall time
of the whole command (start-up, reading, prediction, pyramid, writing).
``--procs 2`` also predicts the smallest size with 2 torchrun processes (gloo, CPU, one
thread each) and checks that the output equals the single-process one.

    python benchmarks/streaming.py --smoke                    # seconds: 512 and 1024 pixels
    python benchmarks/streaming.py --sizes 4096 8192 --tiff   # what was measured here
    python benchmarks/streaming.py                            # 4k, 8k, 16k, 32k (hours on 2 cores)
    python benchmarks/streaming.py --sizes 4096 16384 32768 --rows 2048 --tiff --procs 1
                                    # peak memory of 32k-wide slides in minutes (rows stream)
    python benchmarks/streaming.py --sizes 4096 16384 32768 --rows 2048 --procs 1 --compare-strips
                                    # what column strips cost and save, side by side

Results: benchmarks/out/streaming[_smoke].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class SyntheticSlide:
    """A ``(H, W)`` uint16 slide computed on demand for any region (basic slices only)."""

    def __init__(self, size: int, seed: int = 0, rows: int | None = None):
        self.shape, self.dtype, self.seed = (rows or size, size), np.dtype(np.uint16), seed

    @property
    def ndim(self) -> int:
        return 2

    def __getitem__(self, key):
        ys, xs = key
        y = np.arange(*ys.indices(self.shape[0]), dtype=np.float32)[:, None]
        x = np.arange(*xs.indices(self.shape[1]), dtype=np.float32)[None, :]
        cells = np.sin(x / 23.0 + np.sin(y / 71.0)) * np.cos(y / 29.0 + np.cos(x / 83.0))
        # cheap deterministic noise: a hash of the pixel position
        h = (y.astype(np.uint32) * np.uint32(2654435761)) ^ (x.astype(np.uint32) * np.uint32(40503) + np.uint32(self.seed))
        noise = ((h ^ (h >> np.uint32(13))) * np.uint32(1274126177) >> np.uint32(22)).astype(np.float32)   # 0..1023
        return (1500 + 1200 * np.maximum(cells, 0) + noise).astype(np.uint16)


def make_model(path: Path) -> Path:
    import torch

    from napari_gan.core import checkpoint
    from napari_gan.core.families import get
    from napari_gan.core.families.pix2pix import Pix2PixConfig, build_generator
    from napari_gan.core.normalization import Normalizer

    cfg = Pix2PixConfig(depth=2, width=4, patch=32)
    torch.manual_seed(0)
    g = build_generator(cfg)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.2)
    arch, training = get("pix2pix").split_config(cfg)
    norm = Normalizer([1000.0], [4000.0]).to_dict()
    return checkpoint.save_model(path, "pix2pix", arch, {"generator": g}, {"input": norm, "target": norm},
                                 training=training)


def make_inputs(scratch: Path, size: int, tiff: bool, chunk: int, rows: int | None = None) -> dict[str, Path]:
    import tifffile

    from napari_gan.core.axes import AxesImage
    from napari_gan.core.zarr_io import LazyArray, write_ome_zarr

    slide = SyntheticSlide(size, rows=rows)
    h = slide.shape[0]
    size_name = f"{size}" if h == size else f"{h}x{size}"
    paths = {"zarr": scratch / f"slide{size_name}.ome.zarr"}
    if not paths["zarr"].exists():
        write_ome_zarr(paths["zarr"], AxesImage(LazyArray(slide), "YX", {"Y": 0.25, "X": 0.25}, "micron"),
                       chunk=chunk, levels=1)
    if tiff:
        paths["tiff"] = scratch / f"slide{size_name}.tif"
        if not paths["tiff"].exists():
            mm = tifffile.memmap(paths["tiff"], shape=slide.shape, dtype=np.uint16, bigtiff=True,
                                 resolution=(4e4, 4e4), resolutionunit="CENTIMETER")
            band = max(1, (1 << 24) // size)
            for r in range(0, h, band):
                mm[r:r + band] = slide[slice(r, r + band), slice(0, size)]
            mm.flush()
            del mm
    return paths


def run_predict(args: list[str], procs: int = 1, threads: int | None = None, env_extra: dict | None = None) -> dict:
    """One ``napari-gan predict`` in a fresh process (torchrun for ``procs`` > 1): wall time
    and peak resident memory, measured by a small wrapper process."""
    env = dict(os.environ, **(env_extra or {}))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
               "-m", "napari_gan.cli", "predict", *args]
    else:
        cmd = [sys.executable, "-m", "napari_gan.cli", "predict", *args]
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "t = time.perf_counter()\n"
               "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)\n"
               "wall = time.perf_counter() - t\n"
               "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
               "print(json.dumps({'rc': p.returncode, 'wall_s': wall, 'maxrss_mb': r.ru_maxrss / 1024, "
               "'cpu_s': r.ru_utime + r.ru_stime, 'tail': p.stdout[-1500:]}))\n")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], env=env, capture_output=True, text=True, cwd=ROOT)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"predict failed ({' '.join(cmd)}):\n{result['tail']}")
    return result


def same_pixels(a: Path, b: Path) -> float:
    """Largest absolute difference of two images (OME-Zarr level 0 or TIFF), read band by band."""
    from napari_gan.core.axes import read_image

    x, y = read_image(a).data, read_image(b).data
    assert x.shape == y.shape, (x.shape, y.shape)
    worst = 0.0
    band = max(1, (1 << 24) // x.shape[-1])
    for r in range(0, x.shape[-2], band):
        worst = max(worst, float(np.abs(np.asarray(x[..., r:r + band, :]) - np.asarray(y[..., r:r + band, :])).max()))
    return worst


def lscpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "")
    except OSError:
        return ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="seconds: 512 and 1024 pixels, tile 256")
    p.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192, 16384, 32768])
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--tiff", action="store_true", help="also TIFF -> TIFF (streamed)")
    p.add_argument("--procs", type=int, default=2, help="torchrun processes for the comparison (1: none)")
    p.add_argument("--rows", type=int, help="slide height (default: square). Memory depends on the width "
                   "(rows stream), so e.g. --sizes 32768 --rows 2048 measures a 32k slide's peak memory in "
                   "1/16 of its time")
    p.add_argument("--compare-strips", action="store_true",
                   help="also OME-Zarr -> OME-Zarr without column strips (the whole width held at once), "
                        "side by side: what the strips cost in time and save in memory")
    p.add_argument("--tag", default="", help="suffix of the results file")
    p.add_argument("--scratch", type=Path, help="folder for the slides and outputs (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = p.parse_args()
    if args.smoke:
        args.sizes, args.tile, args.tiff = [512, 1024], 256, True
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="napari-gan-streaming-"))
    scratch.mkdir(parents=True, exist_ok=True)
    model = make_model(scratch / "unet_w4_d2.safetensors")
    common = ["--model", str(model), "--tile", str(args.tile), "--chunk", str(args.chunk), "--device", "cpu"]
    results = {"machine": {**machine(), "lscpu_model": lscpu_model()}, "tile": args.tile, "chunk": args.chunk,
               "model": "pix2pix uNet width 4 depth 2 (random weights)", "runs": []}
    try:
        for size in args.sizes:
            t = time.perf_counter()
            inputs = make_inputs(scratch, size, args.tiff, args.chunk, args.rows)
            made = time.perf_counter() - t
            height = args.rows or size
            mpix = height * size / 1e6
            kinds = [("zarr->zarr", inputs["zarr"], scratch / f"out{size}.ome.zarr", {})]
            if args.compare_strips:
                kinds.append(("zarr->zarr, no strips", inputs["zarr"], scratch / f"outw{size}.ome.zarr",
                              {"NAPARI_GAN_STRIP_COLUMNS": str(1 << 30)}))
            if args.tiff:
                kinds.append(("tiff->tiff", inputs["tiff"], scratch / f"out{size}.tif",
                              {"NAPARI_GAN_STREAM_TIFF_MB": "0"}))
            for kind, src, dst, env in kinds:
                r = run_predict(common + ["--input", str(src), "--output", str(dst)], env_extra=env)
                row = {"kind": kind, "size": size, "rows": height, "mpix": mpix, "procs": 1, "wall_s": round(r["wall_s"], 2),
                       "mpix_per_s": round(mpix / r["wall_s"], 3), "maxrss_mb": round(r["maxrss_mb"], 1),
                       "cpu_s": round(r["cpu_s"], 1), "input_made_s": round(made, 1)}
                results["runs"].append(row)
                print(f"{kind:21s} {height:6d}x{size:<6d} 1 proc : {row['wall_s']:8.1f} s  {row['mpix_per_s']:7.2f} Mpix/s  "
                      f"peak {row['maxrss_mb']:7.0f} MB", flush=True)
                if args.procs > 1 and size == args.sizes[0] and not env.get("NAPARI_GAN_STRIP_COLUMNS"):
                    dst2 = dst.with_name(dst.name.replace("out", "out2p"))
                    r2 = run_predict(common + ["--input", str(src), "--output", str(dst2)], procs=args.procs,
                                     threads=1, env_extra=env)
                    diff = same_pixels(dst, dst2)
                    row2 = {**row, "procs": args.procs, "wall_s": round(r2["wall_s"], 2),
                            "mpix_per_s": round(mpix / r2["wall_s"], 3), "maxrss_mb": round(r2["maxrss_mb"], 1),
                            "cpu_s": round(r2["cpu_s"], 1), "max_abs_diff_vs_1proc": diff}
                    results["runs"].append(row2)
                    print(f"{kind:21s} {height:6d}x{size:<6d} {args.procs} proc: {row2['wall_s']:8.1f} s  "
                          f"{row2['mpix_per_s']:7.2f} Mpix/s  peak {row2['maxrss_mb']:7.0f} MB (per process)  "
                          f"max |diff| vs 1 process {diff:.3g}", flush=True)
                    shutil.rmtree(dst2, ignore_errors=True) if dst2.is_dir() else dst2.unlink(missing_ok=True)
                shutil.rmtree(dst, ignore_errors=True) if dst.is_dir() else dst.unlink(missing_ok=True)
            if not args.keep:   # the slides of this size are no longer needed
                for path in inputs.values():
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    finally:
        if not args.keep and args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    name = "streaming_smoke.json" if args.smoke else \
        f"streaming_rows{args.rows}{args.tag}.json" if args.rows else f"streaming{args.tag}.json"
    print(f"results -> {save_json(name, results)}  ({results['machine']['lscpu_model']})")


if __name__ == "__main__":
    main()
