"""Helpers of the tests/core/test_safety_*.py files: tiny runs, the CLI in-process, hashes."""

from __future__ import annotations

import hashlib
import os
import resource
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile

from napari_gan.cli import main
from tests.images import smooth_image

TINY = ["--patch", "32", "--batch", "2", "--width", "4", "--depth", "2", "--disc-width", "4",
        "--val-every", "2"]
TINY_SG = ["--resolution", "16", "--channel-base", "128", "--channel-max", "16", "--z-dim", "16",
           "--batch", "4", "--eval-images", "8"]


def write_pairs(folder: Path, n: int = 2, shape=(64, 64)) -> tuple[Path, Path]:
    (folder / "in").mkdir(parents=True)
    (folder / "gt").mkdir()
    for i in range(n):
        clean = smooth_image(shape, seed=i)
        noisy = np.clip(clean + np.random.default_rng(i).normal(0, 10, clean.shape), 0, 255)
        tifffile.imwrite(folder / "in" / f"f{i}.tif", noisy.astype(np.uint16))
        tifffile.imwrite(folder / "gt" / f"f{i}.tif", clean.astype(np.uint8))
    return folder / "in", folder / "gt"


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(code: int, err: str, *patterns: str) -> None:
    """Exit status 2 and exactly one line on stderr, ``error: ...``, holding every pattern."""
    lines = [line for line in err.splitlines() if line.strip() and "%" not in line]  # progress lines aside
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err, err
    for pattern in patterns:
        assert pattern.lower() in lines[0].lower(), err


def hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (files or folders), by path."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def leftovers(folder: Path) -> list[str]:
    """Temporary files napari-gan's writers would leave if a write were not cleaned up."""
    return sorted(str(p) for p in folder.rglob("*") if p.name.endswith(".part") or ".stale-" in p.name)


def train_pix2pix(tmp: Path, name: str = "run", *extra) -> tuple[Path, Path, Path]:
    inp, gt = write_pairs(tmp / f"{name}_data")
    out = tmp / name
    assert main(["train", "pix2pix", "--input", str(inp), "--target", str(gt), "--out", str(out),
                 "--steps", "2", *TINY, "--quiet", *extra]) == 0
    return inp, gt, out


def train_stylegan2(tmp: Path) -> Path:
    stack = np.stack([smooth_image((40, 40), seed=s) for s in range(3)]).astype(np.float32)
    tifffile.imwrite(tmp / "sg_stack.tif", stack)
    out = tmp / "sg"
    assert main(["train", "stylegan2", "--images", str(tmp / "sg_stack.tif"), "--out", str(out), "--steps", "1",
                 *TINY_SG, "--quiet"]) == 0
    return out


_shared: dict = {}


def shared_runs(tmp_path_factory) -> dict:
    """One tiny Pix2Pix run (with its images) and one tiny StyleGAN2 run for all the safety
    tests of a session; tests that need to change them copy them first."""
    if not _shared:
        tmp = tmp_path_factory.mktemp("safety_runs")
        inp, gt, run = train_pix2pix(tmp)
        _shared.update({"in": inp, "gt": gt, "run": run, "sg": train_stylegan2(tmp)})
    return _shared


@contextmanager
def file_size_limit(nbytes: int):
    """``ulimit -f`` for this process: writes past ``nbytes`` fail with EFBIG (Python ignores
    SIGXFSZ, so they raise instead of killing the process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def subprocess_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="2")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env
