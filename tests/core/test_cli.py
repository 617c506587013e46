"""The command line end to end on tiny data, and its one-line errors for bad input."""

import os

import numpy as np
import tifffile

from napari_gan.cli import main
from tests.core.conftest import smooth_image

TINY = ["--steps", "4", "--patch", "32", "--batch", "2", "--width", "4", "--depth", "2",
        "--disc-width", "4", "--val-every", "2", "--quiet"]


def write_pairs(folder, n=2, shape=(64, 64), scale=1):
    (folder / "in").mkdir(parents=True)
    (folder / "gt").mkdir()
    for i in range(n):
        clean = smooth_image((shape[0] * scale, shape[1] * scale), seed=i)
        low = clean[::scale, ::scale] if scale > 1 else clean
        noisy = np.clip(low + np.random.default_rng(i).normal(0, 10, low.shape), 0, 255)
        tifffile.imwrite(folder / "in" / f"f{i}.tif", noisy.astype(np.uint16))
        tifffile.imwrite(folder / "gt" / f"f{i}.tif", clean.astype(np.uint8))
    return folder / "in", folder / "gt"


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code, err, pattern):
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert pattern.lower() in err.lower(), err


def test_train_predict_resume_end_to_end(tmp_path, capsys):
    inp, gt = write_pairs(tmp_path)
    code, out, err = run_cli(capsys, "train", "pix2pix", "--input", inp, "--target", gt,
                             "--task", "denoise", "--out", tmp_path / "run", *TINY)
    assert code == 0, err
    assert "model saved to" in out and (tmp_path / "run" / "model.safetensors").is_file()

    code, out, err = run_cli(capsys, "train", "pix2pix", "--input", inp, "--target", gt,
                             "--out", tmp_path / "run", *TINY)
    assert_clean_error(code, err, "--resume")
    code, out, err = run_cli(capsys, "train", "pix2pix", "--input", inp, "--target", gt,
                             "--out", tmp_path / "run", "--resume", "--steps", "6", "--quiet")
    assert code == 0 and "after 6 steps" in out

    # a folder in, a folder out; 16-bit and float TIFFs; a Z stack
    code, out, err = run_cli(capsys, "predict", "--model", tmp_path / "run", "--input", inp,
                             "--output", tmp_path / "pred")
    assert code == 0, err
    pred = tifffile.imread(tmp_path / "pred" / "f0.tif")
    assert pred.shape == (64, 64) and pred.dtype == np.float32
    stack = np.stack([smooth_image((40, 50), seed=s) for s in range(3)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    code, out, err = run_cli(capsys, "predict", "--model", tmp_path / "run" / "last.safetensors",
                             "--input", tmp_path / "stack.tif", "--output", tmp_path / "stack_out.tif")
    assert code == 0, err
    assert tifffile.imread(tmp_path / "stack_out.tif").shape == (3, 40, 50)


def test_super_resolution_end_to_end(tmp_path, capsys):
    inp, gt = write_pairs(tmp_path, n=1, shape=(48, 48), scale=2)
    code, out, err = run_cli(capsys, "train", "pix2pix", "--input", inp / "f0.tif", "--target", gt / "f0.tif",
                             "--task", "sr", "--scale", "2", "--out", tmp_path / "sr", *TINY[:-7],
                             "--patch", "16", "--disc-width", "4", "--quiet")
    assert code == 0, err
    code, out, err = run_cli(capsys, "predict", "--model", tmp_path / "sr", "--input", inp / "f0.tif",
                             "--output", tmp_path / "up.tif")
    assert code == 0, err
    assert tifffile.imread(tmp_path / "up.tif").shape == (96, 96)


def test_wrong_scale_and_mismatched_sizes(tmp_path, capsys):
    inp, gt = write_pairs(tmp_path, n=1, shape=(48, 48), scale=2)
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", inp, "--target", gt, "--task", "sr",
                           "--scale", "4", "--out", tmp_path / "r", *TINY)
    assert_clean_error(code, err, "must be 192x192")
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", inp, "--target", gt,
                           "--out", tmp_path / "r", *TINY)
    assert_clean_error(code, err, "same size")
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", inp, "--target", gt, "--task", "sr",
                           "--out", tmp_path / "r", *TINY)
    assert_clean_error(code, err, "--scale")


def test_missing_files_empty_folders_and_unmatched_names(tmp_path, capsys):
    inp, gt = write_pairs(tmp_path, n=2)
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", tmp_path / "nope", "--target", gt,
                           "--out", tmp_path / "r", *TINY)
    assert_clean_error(code, err, "does not exist")
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", tmp_path / "empty", "--target", gt,
                           "--out", tmp_path / "r", *TINY)
    assert_clean_error(code, err, "No TIFF files")
    os.rename(gt / "f1.tif", gt / "other.tif")
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", inp, "--target", gt,
                           "--out", tmp_path / "r", *TINY)
    assert_clean_error(code, err, "no partner")


def test_nan_rgb_and_too_small_images(tmp_path, capsys):
    nan = smooth_image((40, 40))
    nan[3, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan)
    tifffile.imwrite(tmp_path / "ok.tif", smooth_image((40, 40)))
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", tmp_path / "nan.tif", "--target",
                           tmp_path / "ok.tif", "--out", tmp_path / "r", *TINY)
    assert_clean_error(code, err, "NaN")
    tifffile.imwrite(tmp_path / "tiny.tif", np.ones((4, 4), np.uint8))
    tifffile.imwrite(tmp_path / "tiny_target.tif", np.ones((4, 4), np.uint8))
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", tmp_path / "tiny.tif", "--target",
                           tmp_path / "tiny_target.tif", "--out", tmp_path / "r", *TINY)
    assert_clean_error(code, err, "at least")

    inp, gt = write_pairs(tmp_path / "p", n=1)
    assert run_cli(capsys, "train", "pix2pix", "--input", inp, "--target", gt, "--out", tmp_path / "m", *TINY)[0] == 0
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((40, 40, 3), np.uint8), photometric="rgb")
    code, _, err = run_cli(capsys, "predict", "--model", tmp_path / "m", "--input", tmp_path / "rgb.tif",
                           "--output", tmp_path / "o.tif")
    assert_clean_error(code, err, "RGB")
    code, _, err = run_cli(capsys, "predict", "--model", tmp_path / "m", "--input", tmp_path / "nan.tif",
                           "--output", tmp_path / "o.tif")
    assert_clean_error(code, err, "NaN")


def test_unwritable_output_and_foreign_model(tmp_path, capsys):
    inp, gt = write_pairs(tmp_path, n=1)
    assert run_cli(capsys, "train", "pix2pix", "--input", inp, "--target", gt, "--out", tmp_path / "m", *TINY)[0] == 0
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(capsys, "predict", "--model", tmp_path / "m", "--input", inp / "f0.tif",
                           "--output", tmp_path / "afile" / "sub" / "o.tif")
    assert_clean_error(code, err, "Cannot create folder")
    (tmp_path / "foreign.safetensors").write_bytes(b"PK\x03\x04 not a model")
    code, _, err = run_cli(capsys, "predict", "--model", tmp_path / "foreign.safetensors", "--input",
                           inp / "f0.tif", "--output", tmp_path / "o.tif")
    assert_clean_error(code, err, "not a readable napari-gan model")
    import torch

    if not torch.cuda.is_available():
        code, _, err = run_cli(capsys, "predict", "--model", tmp_path / "m", "--input", inp / "f0.tif",
                               "--output", tmp_path / "o.tif", "--device", "cuda")
        assert_clean_error(code, err, "CUDA")


def test_demo_runs_and_reports_psnr(tmp_path, capsys):
    code, out, err = run_cli(capsys, "demo", "--out", tmp_path / "demo", "--steps", "3")
    assert code == 0, err
    assert "PSNR" in out and "napari-gan denoised" in out
    for name in ("noisy.tif", "clean.tif", "denoised.tif", "demo.png", "model/model.safetensors"):
        assert (tmp_path / "demo" / name).is_file()
