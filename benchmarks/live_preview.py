"""Live preview latency: how soon the first pixels and the full view of a 1024x1024 view appear.

A synthetic uint16 slide (8192 x 8192 by default, the pattern of benchmarks/streaming.py) is
written once as OME-Zarr (chunks of 512) and read lazily, as napari's layer would be. A
default-size Pix2Pix generator (uNet depth 3, width 32; random weights: this measures time,
not quality) predicts the view in the middle of the slide through the code the Live toggle
runs (:class:`napari_gan.core.regions.RegionPrediction`: tiles of the whole slide that touch
the view, centre first), headless. Reported per tile size: time to the first tile (first
pixels), to the full view, and the number of tiles. The model is loaded and warmed up before
timing (Live keeps it loaded); the Zarr chunks are read cold by the first timed repeat only.

    python benchmarks/live_preview.py --smoke                  # seconds: 1024 slide, 256 view
    flock /tmp/napari-gan-bench.lock python benchmarks/live_preview.py          # 2 threads, CPU
    python benchmarks/live_preview.py --device cuda             # when a GPU is lent

Results: benchmarks/out/live_preview[_smoke].json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_info, machine, save_json  # noqa: E402
from streaming import SyntheticSlide  # noqa: E402


def make_slide(scratch: Path, size: int) -> Path:
    from napari_gan.core.axes import AxesImage
    from napari_gan.core.zarr_io import LazyArray, write_ome_zarr

    path = scratch / f"slide{size}.ome.zarr"
    if not path.exists():
        write_ome_zarr(path, AxesImage(LazyArray(SyntheticSlide(size)), "YX"), chunk=512, levels=1)
    return path


def make_predictor(device: str, width: int, depth: int):
    import torch

    from napari_gan.core.device import resolve_device
    from napari_gan.core.families.pix2pix import Pix2PixConfig, build_generator
    from napari_gan.core.inference import Predictor
    from napari_gan.core.normalization import Normalizer

    cfg = Pix2PixConfig(width=width, depth=depth)
    torch.manual_seed(0)
    norm = Normalizer([1000.0], [4000.0])
    return Predictor(build_generator(cfg), cfg.to_dict(), norm, norm, resolve_device(device))


def time_view(predictor, plane, view: int, tile: int, centre: tuple[int, int]) -> dict:
    from napari_gan.core.regions import Region, RegionPrediction

    y, x = centre
    region = Region(y - view // 2, x - view // 2, y + view // 2, x + view // 2)
    sync = (lambda: __import__("torch").cuda.synchronize()) if predictor.device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    job = RegionPrediction(predictor, plane, region, tile)
    job.step()
    sync()
    first = time.perf_counter() - start
    while job.done < job.total:
        job.step()
    job.partial()
    sync()
    full = time.perf_counter() - start
    return {"tile": job.tile, "overlap": job.overlap, "tiles": job.total, "first_s": first, "full_s": full,
            "mpix_per_s": view * view / full / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a 1024 slide, a 256 view, a tiny network")
    ap.add_argument("--size", type=int, default=8192, help="slide side in pixels")
    ap.add_argument("--view", type=int, default=1024, help="view side in pixels")
    ap.add_argument("--tiles", type=int, nargs="+", default=[256, 512], help="preview tile sizes to time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scratch", type=Path, default=None, help="where the slide is written (kept)")
    args = ap.parse_args()
    width, depth = 32, 3
    if args.smoke:
        args.size, args.view, args.tiles, args.repeats, width, depth = 1024, 256, [128], 1, 8, 2

    import torch

    torch.set_num_threads(args.threads)
    from napari_gan.core.zarr_io import read_ome_zarr

    scratch = args.scratch or Path(tempfile.gettempdir()) / "napari-gan-live-bench"
    scratch.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    slide = make_slide(scratch, args.size)
    made_s = time.perf_counter() - t0
    image = read_ome_zarr(slide)
    plane = image.data[None]                          # (C, H, W), lazy
    predictor = make_predictor(args.device, width, depth)
    centre = (args.size // 2, args.size // 2)
    time_view(predictor, plane, 256, args.tiles[0], (128, 128))      # warm up (a corner, not the view)
    rows = []
    for tile in args.tiles:
        for r in range(args.repeats):
            row = time_view(predictor, plane, args.view, tile, centre)
            row["repeat"] = r
            rows.append(row)
            print(f"tile {row['tile']:4d} (overlap {row['overlap']}, {row['tiles']} tiles), repeat {r}: first "
                  f"pixels {row['first_s']:.3f} s, full {args.view}x{args.view} view {row['full_s']:.2f} s "
                  f"({row['mpix_per_s']:.2f} Mpix/s)", flush=True)
    result = {"machine": machine(), "cpu": cpu_info(), "load_average": os.getloadavg(),
              "slide": {"size": args.size, "path": str(slide), "made_s": made_s},
              "view": args.view, "device": predictor.device_name, "threads": args.threads,
              "network": {"width": width, "depth": depth, "params": sum(p.numel() for p in predictor.G.parameters())},
              "rows": rows}
    path = save_json("live_preview_smoke.json" if args.smoke else "live_preview.json", result)
    print(f"load average {os.getloadavg()[0]:.2f}; written {path}")


if __name__ == "__main__":
    main()
