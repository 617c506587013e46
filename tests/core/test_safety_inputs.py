"""Options, model files and images from anywhere: every option is checked before work starts,
a damaged or hostile model file or training state is one ``error:`` line, a model never
produces NaN silently, every pixel type works or is refused with a reason, and anything
unexpected is reported as a bug with its traceback in a log file."""

import json
import os
import shutil

import numpy as np
import pytest
import tifffile
import torch
from safetensors.torch import load_file, save_file

from napari_gan.core import axes, checkpoint, families, runs as runs_mod
from napari_gan.core.axes import read_image
from tests.core.safety_common import TINY, assert_one_error, hashes, run_cli, shared_runs, write_pairs


@pytest.fixture
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory)


def rewrite(src, dst, header=None, tensors=None):
    """A copy of napari-gan file ``src`` at ``dst`` with its JSON header changed by
    ``header(raw)`` and/or its tensors by ``tensors(dict)``."""
    raw = checkpoint.read_header(src).raw
    data = load_file(str(src))
    if header:
        header(raw)
    if tensors:
        tensors(data)
    save_file(data, str(dst), metadata={"format": "pt", checkpoint.META_KEY: json.dumps(raw)})
    return dst


# ------------------------------------------------------------------ options come first
def test_predict_checks_every_option_before_reading_anything(runs, tmp_path, capsys, monkeypatch):
    touched = []
    monkeypatch.setattr(families, "open_model", lambda *a, **k: touched.append("model"))
    monkeypatch.setattr(axes, "read_image", lambda *a, **k: touched.append("image"))
    base = ["predict", "--model", runs["run"], "--input", runs["in"] / "f0.tif", "--output", tmp_path / "o.tif"]
    for extra, message in [(["--tile", "64", "--overlap", "32"], "larger than twice the overlap"),
                           (["--overlap", "-1"], "must be at least 0"),
                           (["--tile", "8"], "must be at least 32"),
                           (["--series", "-1"], "--series must be 0 or more"),
                           (["--axes", "QYX"], "Unknown axis letter"),
                           (["--axes", "YXZ"], "must end with YX")]:
        code, _, err = run_cli(capsys, *base, *extra)
        assert_one_error(code, err, message)
    code, _, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", runs["in"], "--output", runs["in"])
    assert_one_error(code, err, "would replace the input image")
    assert touched == [] and list(tmp_path.iterdir()) == []


def test_train_refuses_the_same_images_as_input_and_target(tmp_path, capsys):
    inp, gt = write_pairs(tmp_path)
    linked = tmp_path / "linked"
    linked.mkdir()
    for f in inp.iterdir():
        os.symlink(f, linked / f.name)                       # the same files inside another folder
    before = hashes(inp, gt)
    for a, b in [(inp / "f0.tif", inp / "f0.tif"), (inp / "f0.tif", tmp_path / "in" / ".." / "in" / "f0.tif"),
                 (inp, inp), (inp, linked)]:
        code, _, err = run_cli(capsys, "train", "pix2pix", "--input", a, "--target", b, "--out", tmp_path / "r",
                               "--steps", "2", *TINY)
        assert_one_error(code, err, "the input and the target are the same file")
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", inp, "--target", gt, "--out", tmp_path / "r",
                           "--steps", "2", *TINY, "--patch", "16")
    assert_one_error(code, err, "too small for a discriminator")
    assert not (tmp_path / "r").exists() and hashes(inp, gt) == before


# ------------------------------------------------------------------ model files from anywhere
def _deep(raw):
    nested = []
    for _ in range(200):
        nested = [nested]
    raw["training"] = nested


def _zero_range(raw):
    norm = raw["normalization"]["input"]
    norm["high"] = list(norm["low"])


@pytest.mark.parametrize("change,message", [
    (lambda raw: raw["architecture"].update(width="wide"), "must be a number"),
    (lambda raw: raw["architecture"].update(width=10_000_000), "must be at most"),
    (lambda raw: raw["architecture"].update(depth=[2]), "must be a number"),
    (_deep, "deeply nested JSON"),
    (_zero_range, "empty or negative range"),
    (lambda raw: raw.update(normalization=[]), "normalization"),
], ids=["wrong-type", "absurd-width", "list-for-number", "deep-json", "zero-range", "normalization-not-a-dict"])
def test_hostile_model_files_are_one_error_line(runs, tmp_path, capsys, change, message):
    bad = rewrite(runs["run"] / "model.safetensors", tmp_path / "bad.safetensors", header=change)
    before = hashes(bad)
    code, _, err = run_cli(capsys, "predict", "--model", bad, "--input", runs["in"] / "f0.tif",
                           "--output", tmp_path / "o.tif")
    assert_one_error(code, err, message, "bad.safetensors")
    assert hashes(bad) == before and not (tmp_path / "o.tif").exists()


def test_a_training_state_with_missing_parts_is_refused_on_resume(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs["run"], run)

    def drop_optimiser(raw):
        raw["skeleton"]["__dict__"] = [item for item in raw["skeleton"]["__dict__"] if item[0] != "opt_d"]

    state = run / checkpoint.STATE_FILENAME
    rewrite(state, state, header=drop_optimiser)
    before = hashes(run)
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", runs["in"], "--target", runs["gt"], "--out", run,
                           "--resume", "--steps", "4", "--quiet")
    assert_one_error(code, err, "missing parts", "opt_d")
    assert hashes(run) == before and not (run / runs_mod.LOCK_FILENAME).exists()


def test_a_model_producing_nan_stops_with_the_file_named(runs, tmp_path, capsys):
    def poison(data):
        for k, v in data.items():
            if k.startswith("generator.") and v.is_floating_point():
                data[k] = torch.full_like(v, float("nan"))

    nan_p2p = rewrite(runs["run"] / "model.safetensors", tmp_path / "nan_p2p.safetensors", tensors=poison)
    code, _, err = run_cli(capsys, "predict", "--model", nan_p2p, "--input", runs["in"], "--output", tmp_path / "out")
    assert_one_error(code, err, "NaN or infinite", "f0.tif", "nothing was written")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    nan_sg = rewrite(runs["sg"] / "model.safetensors", tmp_path / "nan_sg.safetensors", tensors=poison)
    code, _, err = run_cli(capsys, "generate", "--model", nan_sg, "--n", "2", "--output", tmp_path / "g.tif")
    assert_one_error(code, err, "NaN or infinite", "g.tif")
    assert not (tmp_path / "g.tif").exists()


# ------------------------------------------------------------------ images from anywhere
def test_multi_series_tiffs_need_a_series(runs, tmp_path, capsys):
    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.stack([tifffile.imread(runs["in"] / "f0.tif")] * 3), photometric="minisblack",
                 metadata={"axes": "ZYX"})
        tw.write(np.zeros((8, 8), np.uint8), photometric="minisblack")
    before = hashes(path)
    code, _, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", path, "--output", tmp_path / "o.tif")
    assert_one_error(code, err, "holds 2 images (series)", "series 0: shape (3, 64, 64)", "series 1: shape (8, 8)",
                     "--series N")
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", path, "--target", runs["gt"] / "f0.tif",
                           "--out", tmp_path / "r", "--steps", "2", *TINY)
    assert_one_error(code, err, "holds 2 images (series)", "--series")
    code, _, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", path, "--output",
                           tmp_path / "o.tif", "--series", "2")
    assert_one_error(code, err, "has no series 2")
    code, _, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", path, "--output",
                           tmp_path / "o.tif", "--series", "0")
    assert code == 0, err
    assert read_image(tmp_path / "o.tif").shape == (3, 64, 64) and hashes(path) == before


def test_float64_beyond_float32_is_refused(runs, tmp_path, capsys):
    image = tifffile.imread(runs["in"] / "f0.tif").astype(np.float64)
    image[0, 0] = 1e300
    tifffile.imwrite(tmp_path / "wide.tif", image)
    code, _, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", tmp_path / "wide.tif",
                           "--output", tmp_path / "o.tif")
    assert_one_error(code, err, "wide.tif", "beyond the float32 range")
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize("dtype,byteorder", [(np.bool_, "<"), (np.int8, "<"), (np.int64, "<"), (np.uint32, "<"),
                                             (np.float16, "<"), (np.uint16, ">"), (np.float32, ">")],
                         ids=["bool", "int8", "int64", "uint32", "float16", "big-endian-uint16", "big-endian-float32"])
def test_every_pixel_type_predicts_end_to_end(runs, tmp_path, capsys, dtype, byteorder):
    base = tifffile.imread(runs["in"] / "f0.tif").astype(np.float64)
    if dtype == np.bool_:
        data = base > np.median(base)
    elif dtype == np.int8:
        data = (base - 128).clip(-128, 127).astype(np.int8)
    else:
        data = base.astype(dtype)
    tifffile.imwrite(tmp_path / "in.tif", data, byteorder=byteorder, photometric="minisblack")
    assert tifffile.imread(tmp_path / "in.tif").dtype.byteorder in ("<", ">", "=", "|")
    code, out, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", tmp_path / "in.tif",
                             "--output", tmp_path / "o.tif")
    assert code == 0, err
    result = tifffile.imread(tmp_path / "o.tif")
    assert result.shape == (64, 64) and result.dtype == np.float32 and np.isfinite(result).all()


def test_generated_stacks_carry_their_axes(runs, tmp_path, capsys):
    assert run_cli(capsys, "generate", "--model", runs["sg"], "--n", "3", "--output", tmp_path / "g.tif")[0] == 0
    stack = read_image(tmp_path / "g.tif")
    assert stack.axes == "ZYX" and stack.shape == (3, 16, 16)
    assert run_cli(capsys, "generate", "--model", runs["sg"], "--interpolate", "1", "2", "--frames", "4",
                   "--output", tmp_path / "i.tif")[0] == 0
    movie = read_image(tmp_path / "i.tif")
    assert movie.axes == "TYX" and movie.shape == (4, 16, 16)


# ------------------------------------------------------------------ the last line of defence
def test_an_unexpected_error_is_reported_as_a_bug_with_a_log(runs, tmp_path, capsys, monkeypatch):
    import napari_gan.cli as cli
    from napari_gan.core import io

    def boom(*args, **kwargs):
        raise RuntimeError("boom in a place nobody expected")

    monkeypatch.setenv("NAPARI_GAN_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(io, "expand_paths", boom)
    code, _, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", runs["in"], "--output", tmp_path / "o")
    assert_one_error(code, err, "unexpected RuntimeError", "boom in a place", "this is a bug", "full traceback is in")
    logs = list((tmp_path / "logs").iterdir())
    assert len(logs) == 1 and str(logs[0]) in err
    text = logs[0].read_text()
    assert "Traceback" in text and "boom in a place nobody expected" in text and "predict" in text

    # no folder takes the log: the traceback goes to stderr, still exit status 2
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(cli, "crash_log_dir", lambda: iter([tmp_path / "afile" / "logs"]))
    code, _, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", runs["in"], "--output", tmp_path / "o")
    assert code == 2 and err.startswith("error: an unexpected RuntimeError") and "Traceback" in err


def test_a_bug_during_training_still_releases_the_run_folder(runs, tmp_path, capsys, monkeypatch):
    from napari_gan.core.families.pix2pix import Pix2PixTrainer

    monkeypatch.setenv("NAPARI_GAN_LOG_DIR", str(tmp_path / "logs"))

    def broken(self, progress):
        raise RuntimeError("a bug in a training step")

    monkeypatch.setattr(Pix2PixTrainer, "train_step", broken)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", runs["in"], "--target", runs["gt"], "--out", out,
                           "--steps", "2", *TINY, "--quiet")
    assert_one_error(code, err, "unexpected RuntimeError", "this is a bug")
    assert not (out / runs_mod.LOCK_FILENAME).exists()
