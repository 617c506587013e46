"""The benchmark scripts' smoke modes (seconds each; no W2S data, CAREamics or GPU needed)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


def _run(script, *args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="2", GROWTH_SCRATCH=os.environ.get("GROWTH_SCRATCH", ""))
    if not env["GROWTH_SCRATCH"]:
        env.pop("GROWTH_SCRATCH")
    proc = subprocess.run([sys.executable, str(BENCH / script), "--smoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_cpu_throughput_smoke():
    out = _run("cpu_throughput.py", "--threads", "1", "--precisions", "fp32")
    assert "pix2pix" in out and "Mpix/s" in out
    r = json.loads((BENCH / "out" / "cpu_throughput_smoke.json").read_text())
    row = r["runs"]["fp32/1"]
    assert row["pix2pix"]["images_per_s"] > 0 and row["pix2pix"]["gflop_per_step"] > 0
    assert row["stylegan2_64"]["s_per_kimg"] > 0


def test_growth_smoke(tmp_path):
    out = _run("growth.py", "--scratch", str(tmp_path))
    r = json.loads((BENCH / "out" / "growth_smoke.json").read_text())
    assert all(row["seconds"] > 0 for rows in r["predict"].values() for row in rows)
    assert r["train"]["steps"] == 2
    assert "memory-mapped pair" in out


def test_gpu_suite_smoke_on_cpu():
    pytest.importorskip("matplotlib")
    out = _run("gpu_suite.py", "--device", "cpu", "--only", "pix2pix", "inference")
    r = json.loads((BENCH / "out" / "gpu_suite_smoke.json").read_text())
    assert not [row for row in r["rows"] if "error" in row]
    assert {row["family"] for row in r["rows"]} == {"pix2pix", "inference"}
    assert "Pix2Pix training" in out


def test_live_preview_smoke(tmp_path):
    out = _run("live_preview.py", "--threads", "1", "--scratch", str(tmp_path))
    assert "first pixels" in out
    r = json.loads((BENCH / "out" / "live_preview_smoke.json").read_text())
    row = r["rows"][0]
    assert 0 < row["first_s"] <= row["full_s"] and row["tiles"] > 1
    assert r["cpu"]["model"] and "load_average" in r
