"""Growth: tiled-prediction time and host memory for 1k^2 ... 16k^2 images, and training
from a huge memory-mapped pair.

Each measurement runs in a fresh subprocess, so its peak memory is its own. Inputs are
uint16 TIFFs written to a scratch folder and read memory-mapped (``tifffile.memmap``).
Memory is the process's anonymous resident memory (``RssAnon``: heap, numpy and torch
buffers; memory-mapped file pages are page cache and not counted), sampled every 10 ms,
minus the same figure just before the call. Two output modes:

* ``ram``: ``Predictor.predict`` returns a float32 array (what the napari widget gets);
  memory should be output + a constant.
* ``memmap``: ``Predictor.predict_plane(..., out=tifffile.memmap(...))`` writes straight
  into a float32 TIFF on disk (what a huge-image CLI run can do); memory should be flat.

Weights are random (timing and memory do not depend on them). The default model
(depth 3, width 32, CPU tile 256) runs the sizes that finish in reasonable time on 2 CPU
cores; the 1k^2-16k^2 sweep uses a narrow model (``--sweep-width``, default 2, tile 512)
so that it completes there: it measures the tiling pipeline with a cheap network.

    python benchmarks/growth.py                      # the published run (about 25 min on 2 cores)
    python benchmarks/growth.py --smoke              # seconds; used by CI
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DOCS_IMAGES, OUT, machine, save_json  # noqa: E402


# ------------------------------------------------------------------ memory probe
def _rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak RssAnon while the block runs (sampled in a thread every 10 ms)."""

    def __enter__(self):
        self.base = self.peak = _rss_anon()
        self._run = True
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while self._run:
            self.peak = max(self.peak, _rss_anon())
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._run = False
        self._t.join()
        self.peak = max(self.peak, _rss_anon())

    @property
    def extra(self) -> int:
        return self.peak - self.base


# ------------------------------------------------------------------ inputs
def make_tiff(path: Path, size: int, seed: int = 0) -> Path:
    """A size x size uint16 TIFF with smooth structure plus noise, written band by band."""
    import tifffile

    if path.exists():
        return path
    arr = tifffile.memmap(path, shape=(size, size), dtype=np.uint16)
    rng = np.random.default_rng(seed)
    yy = np.arange(size, dtype=np.float32)
    band = 1024
    for r in range(0, size, band):
        rows = yy[r:r + band, None]
        base = 2000 + 1000 * np.sin(rows / 37.0) * np.cos(yy[None, :] / 53.0)
        arr[r:r + band] = (base + rng.normal(0, 200, base.shape)).clip(0, 65535).astype(np.uint16)
    arr.flush()
    del arr
    return path


def _predictor(width: int, threads: int):
    import torch

    from napari_gan.core.data import Normalizer
    from napari_gan.core.inference import Predictor
    from napari_gan.core.families.pix2pix import Pix2PixConfig, build_generator

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = Pix2PixConfig(width=width)
    G = build_generator(cfg)
    norm = Normalizer([1000.0], [3000.0])
    return Predictor(G, {"scale": 1, "depth": cfg.depth, "in_channels": 1, "out_channels": 1},
                     norm, norm, torch.device("cpu"))


# ------------------------------------------------------------------ one measurement (child)
def child_predict(path: str, width: int, mode: str, threads: int, tile: int | None, scratch: str) -> dict:
    import tifffile

    from napari_gan.core.io import read_tiff

    predictor = _predictor(width, threads)
    image = read_tiff(path, memmap=True)
    assert isinstance(image, np.memmap), "input was not memory-mapped"
    warm = np.ascontiguousarray(image[:128, :128])[None]
    predictor.predict_plane(warm, tile)                 # first-call allocations out of the timing
    out_path = Path(scratch) / f"out_{os.getpid()}.tif"
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        if mode == "ram":
            result = predictor.predict(image, tile=tile)
        else:
            result = tifffile.memmap(out_path, shape=image.shape, dtype=np.float32)
            predictor.predict_plane(image[None], tile, out=result.reshape((1,) + image.shape))
            result.flush()
        seconds = time.perf_counter() - t0
    checksum = float(np.asarray(result[..., :64, :64], np.float64).mean())
    del result
    if out_path.exists():
        out_path.unlink()
    return {"seconds": seconds, "mpix_per_s": image.size / 1e6 / seconds, "extra_bytes": mem.extra,
            "input_bytes": image.nbytes, "output_bytes": 4 * image.size, "checksum": checksum,
            "tile": tile or predictor.tile, "threads": threads}


def child_train(inp: str, tgt: str, steps: int, threads: int) -> dict:
    import torch

    from napari_gan.core.data import paired_set_from_files
    from napari_gan.core.training.base import Budget
    from napari_gan.core.families.pix2pix import Pix2PixConfig, Pix2PixTrainer

    torch.set_num_threads(threads)
    with PeakMemory() as mem, tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        data = paired_set_from_files(inp, tgt)
        cfg = Pix2PixConfig(width=8, disc_width=8, patch=64, batch=4)
        trainer = Pix2PixTrainer(cfg, data, out, Budget(steps=steps), torch.device("cpu"), val_every=steps)
        for _ in trainer.run():
            pass
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "extra_bytes": mem.extra, "steps": steps,
            "input_bytes": 2 * os.path.getsize(inp)}


def run_child(kind: str, **kw) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps({"kind": kind, **kw})]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ plot
def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    for label, rows in results["predict"].items():
        mp = [r["megapixels"] for r in rows]
        a1.loglog(mp, [r["seconds"] for r in rows], "o-", label=label)
        a2.loglog(mp, [max(r["extra_bytes"], 1) / 2**20 for r in rows], "o-", label=label)
    mp = sorted({r["megapixels"] for rows in results["predict"].values() for r in rows})
    a2.loglog(mp, [4 * m * 1e6 / 2**20 for m in mp], "k:", label="float32 output array")
    a1.set_xlabel("image size (megapixels)")
    a1.set_ylabel("prediction time (s)")
    a1.set_title(f"tiled prediction time, {results['threads']} CPU threads")
    a2.set_xlabel("image size (megapixels)")
    a2.set_ylabel("peak extra anonymous memory (MiB)")
    a2.set_title("host memory (input memory-mapped)")
    for a in (a1, a2):
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; seconds")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192, 16384],
                    help="sizes run with the narrow model, output memory-mapped")
    ap.add_argument("--ram-sizes", type=int, nargs="+", default=[1024, 4096, 8192],
                    help="sizes run with the narrow model, output in RAM")
    ap.add_argument("--default-sizes", type=int, nargs="+", default=[1024, 2048],
                    help="sizes also run with the default (width 32) model")
    ap.add_argument("--sweep-width", type=int, default=2)
    ap.add_argument("--sweep-tile", type=int, default=512, help="tile of the narrow-model sweep")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-size", type=int, default=16384, help="side of the memory-mapped training pair")
    ap.add_argument("--scratch", default=os.environ.get("GROWTH_SCRATCH", "/tmp/napari-gan-growth"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        kind = spec.pop("kind")
        print(json.dumps(child_predict(**spec) if kind == "predict" else child_train(**spec)))
        return
    if args.smoke:
        args.sizes, args.ram_sizes, args.default_sizes, args.train_size = [128], [128], [], 160
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "load_average_start": os.getloadavg(), "threads": args.threads, "smoke": args.smoke, "predict": {}, "train": None}
    st = None if args.smoke else args.sweep_tile
    runs = [(f"width {args.sweep_width}, output in RAM", args.sweep_width, "ram", args.ram_sizes, st),
            (f"width {args.sweep_width}, output memory-mapped", args.sweep_width, "memmap", args.sizes, st),
            ("default model (width 32, tile 256), output in RAM", 32, "ram", args.default_sizes, None)]
    runs = [r for r in runs if r[3]]
    for label, width, mode, sizes, tile in runs:
        rows = results["predict"].setdefault(label, [])
        for size in sizes:
            path = make_tiff(scratch / f"in_{size}.tif", size)
            r = run_child("predict", path=str(path), width=width, mode=mode, threads=args.threads,
                          tile=tile, scratch=str(scratch))
            r.update(size=size, megapixels=size * size / 1e6, load_average_1min=os.getloadavg()[0])
            rows.append(r)
            print(f"{label:42s} {size:6d}^2: {r['seconds']:8.1f} s  {r['mpix_per_s']:6.3f} Mpix/s  "
                  f"extra memory {r['extra_bytes'] / 2**20:8.1f} MiB (output {r['output_bytes'] / 2**20:.0f} MiB)",
                  flush=True)
    n = args.train_size
    inp = make_tiff(scratch / f"in_{n}.tif", n)
    tgt = make_tiff(scratch / f"gt_{n}.tif", n, seed=1)
    results["train"] = dict(run_child("train", inp=str(inp), tgt=str(tgt), steps=2 if args.smoke else 20,
                                      threads=args.threads), size=n)
    t = results["train"]
    print(f"training from a {n}^2 memory-mapped pair ({t['input_bytes'] / 2**20:.0f} MiB on disk): "
          f"{t['steps']} steps in {t['seconds']:.1f} s, extra memory {t['extra_bytes'] / 2**20:.1f} MiB", flush=True)
    results["load_average_end"] = os.getloadavg()
    path = save_json(f"growth{'_smoke' if args.smoke else ''}{args.tag}.json", results)
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    plot(results, (OUT if args.smoke else DOCS_IMAGES) / f"growth{'_smoke' if args.smoke else ''}{args.tag}.png")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
