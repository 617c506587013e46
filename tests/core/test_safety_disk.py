"""A full disk, a quota or a file-size limit (``ulimit -f``; Python ignores SIGXFSZ, so writes
fail with EFBIG) ends every writer with one ``error:`` line: the previous files stay intact
and no temporary file is left behind."""

import resource
import shutil
import subprocess
import sys

import numpy as np
import pytest

from napari_gan.core.errors import NapariGanError
from tests.core.safety_common import (assert_one_error, file_size_limit, hashes, leftovers, run_cli,
                                      shared_runs, subprocess_env)


@pytest.fixture
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory)


def test_training_under_a_file_size_limit_keeps_the_saved_run(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["run"], run)
    before = hashes(run, runs["in"], runs["gt"])
    cmd = [sys.executable, "-m", "napari_gan.cli", "train", "pix2pix", "--input", str(runs["in"]),
           "--target", str(runs["gt"]), "--out", str(run), "--resume", "--steps", "4", "--val-every", "2", "--quiet"]
    limit = 20_000                     # below every model file and training state (ulimit -f 20)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(), timeout=300,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert_one_error(proc.returncode, proc.stderr, "could not write", "file too large", "unchanged")
    assert hashes(run, runs["in"], runs["gt"]) == before     # the last good model and state
    assert leftovers(run) == [] and sorted(p.name for p in run.iterdir()) == [
        "last.safetensors", "model.safetensors", "training_state.safetensors"]


def test_predict_generate_and_demo_writers_fail_cleanly(runs, tmp_path, capsys):
    image = runs["in"] / "f0.tif"
    out = tmp_path / "out"
    out.mkdir()
    assert run_cli(capsys, "predict", "--model", runs["run"], "--input", image, "--output", out / "p.tif")[0] == 0
    before = hashes(out)
    with file_size_limit(2_000):       # the TIFF of a 64x64 float32 prediction is larger
        code, _, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", image, "--output", out / "p.tif")
    assert_one_error(code, err, f"could not write '{out / 'p.tif'}'", "file too large", "unchanged")
    assert hashes(out) == before and leftovers(out) == []

    gen = ["generate", "--model", runs["sg"], "--n", "4", "--output", out / "g.tif", "--save-latents", out / "z.npy"]
    with file_size_limit(200):         # the latent vectors (4 x 16 float32 and the .npy header) are larger
        code, _, err = run_cli(capsys, *gen)
    assert_one_error(code, err, "z.npy", "file too large")
    with file_size_limit(1_000):       # the latents fit, the 4 x 16 x 16 float32 stack does not
        code, _, err = run_cli(capsys, *gen)
    assert_one_error(code, err, "g.tif", "file too large")
    assert sorted(p.name for p in out.iterdir()) == ["p.tif", "z.npy"] and leftovers(out) == []
    assert np.load(out / "z.npy").shape == (4, 16)

    with file_size_limit(1_000):
        code, _, err = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--steps", "1")
    assert_one_error(code, err, "noisy.tif", "file too large")
    assert leftovers(tmp_path / "demo") == [] and list((tmp_path / "demo").iterdir()) == []

    from napari_gan.cli.demo import _side_by_side

    noisy = np.random.default_rng(0).uniform(0, 255, (64, 64))
    with file_size_limit(3_000), pytest.raises(NapariGanError, match="demo.png.*File too large"):
        _side_by_side(tmp_path / "demo.png", noisy, noisy, noisy)
    assert not (tmp_path / "demo.png").exists() and leftovers(tmp_path) == []
