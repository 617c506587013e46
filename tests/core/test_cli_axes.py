"""Axes and pixel sizes travel from the input files to the outputs, through the real CLI."""

import numpy as np
import tifffile

from napari_gan.cli import main
from napari_gan.core.axes import read_image
from napari_gan.core.inference import load_predictor
from tests.core.conftest import smooth_image

TINY = ["--steps", "2", "--patch", "32", "--batch", "2", "--width", "4", "--depth", "2",
        "--disc-width", "4", "--val-every", "2", "--quiet"]


def hyperstack(t, z, c, h, w, seed=0):
    """A TZCYX stack whose every (t, z, c) plane differs in brightness, so swaps show."""
    base = smooth_image((h, w), seed=seed)
    level = np.arange(t * z * c, dtype=np.float32).reshape(t, z, c, 1, 1)
    return (base[None, None, None] + 40 * level).astype(np.float32)


def test_imagej_stack_with_as_many_slices_as_channels_keeps_its_axes(tmp_path, capsys):
    # Z == C == 3: guessing the channel axis from its length would take Z
    data = hyperstack(2, 3, 3, 48, 40)
    tifffile.imwrite(tmp_path / "in.tif", data, imagej=True, metadata={"axes": "TZCYX", "spacing": 0.5,
                                                                      "unit": "um"},
                     resolution=(1 / 0.1, 1 / 0.1))
    train = tmp_path / "train"
    train.mkdir()
    pair = data[0, 0]                                   # (C, Y, X) = one 3-channel image
    tifffile.imwrite(train / "a.tif", pair, imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "a_clean.tif", pair, imagej=True, metadata={"axes": "CYX"})
    assert main(["train", "pix2pix", "--input", str(train / "a.tif"), "--target", str(tmp_path / "a_clean.tif"),
                 "--channels", "3", "--out", str(tmp_path / "run"), *TINY]) == 0
    before = (tmp_path / "in.tif").read_bytes()
    assert main(["predict", "--model", str(tmp_path / "run"), "--input", str(tmp_path / "in.tif"),
                 "--output", str(tmp_path / "out.tif")]) == 0
    out = read_image(tmp_path / "out.tif")
    assert out.axes == "TZCYX" and out.shape == data.shape
    assert out.pixel_size["Z"] == 0.5 and abs(out.pixel_size["X"] - 0.1) < 1e-6 and out.unit == "micron"
    # every (t, z) plane is the prediction of that plane's three channels (a Z/C swap would
    # feed the model three slices of one channel instead)
    predictor = load_predictor(tmp_path / "run", "cpu")
    for t in range(2):
        for z in range(3):
            expected = predictor.predict(data[t, z], channel_axis=0)
            np.testing.assert_allclose(out.data[t, z], expected, rtol=1e-5, atol=1e-4)
    assert (tmp_path / "in.tif").read_bytes() == before          # the input is untouched


def test_super_resolution_output_pixel_size_is_halved(tmp_path, capsys):
    clean = smooth_image((64, 64))
    low = clean.reshape(32, 2, 32, 2).mean(axis=(1, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "low.tif", low)
    tifffile.imwrite(tmp_path / "high.tif", clean.astype(np.float32))
    assert main(["train", "pix2pix", "--input", str(tmp_path / "low.tif"), "--target", str(tmp_path / "high.tif"),
                 "--task", "sr", "--scale", "2", "--out", str(tmp_path / "run"), *TINY]) == 0
    stack = np.stack([low, low])
    tifffile.imwrite(tmp_path / "z.tif", stack, imagej=True, metadata={"axes": "ZYX", "spacing": 2.0,
                                                                      "unit": "um"},
                     resolution=(1 / 0.2, 1 / 0.2))
    assert main(["predict", "--model", str(tmp_path / "run"), "--input", str(tmp_path / "z.tif"),
                 "--output", str(tmp_path / "z_x2.tif")]) == 0
    out = read_image(tmp_path / "z_x2.tif")
    assert out.axes == "ZYX" and out.shape == (2, 64, 64)
    assert out.pixel_size["Z"] == 2.0 and abs(out.pixel_size["Y"] - 0.1) < 1e-6


def test_axes_option_overrides_the_files(tmp_path, capsys):
    data = hyperstack(1, 1, 2, 40, 40)[0, 0]            # (2, Y, X) without metadata
    tifffile.imwrite(tmp_path / "two.tif", data, photometric="minisblack")
    tifffile.imwrite(tmp_path / "clean.tif", data[0])
    tifffile.imwrite(tmp_path / "target.tif", data[0])   # the same file as input and target is refused
    assert main(["train", "pix2pix", "--input", str(tmp_path / "clean.tif"), "--target",
                 str(tmp_path / "target.tif"), "--out", str(tmp_path / "run"), *TINY]) == 0
    assert main(["predict", "--model", str(tmp_path / "run"), "--input", str(tmp_path / "two.tif"),
                 "--output", str(tmp_path / "o.tif")]) == 0          # two Z planes
    assert read_image(tmp_path / "o.tif").shape == (2, 40, 40)
    code = main(["predict", "--model", str(tmp_path / "run"), "--input", str(tmp_path / "two.tif"),
                 "--output", str(tmp_path / "o2.tif"), "--axes", "CYX"])
    err = capsys.readouterr().err
    assert code == 2 and "2 channels" in err and "expects 1" in err
    code = main(["predict", "--model", str(tmp_path / "run"), "--input", str(tmp_path / "two.tif"),
                 "--output", str(tmp_path / "o3.tif"), "--axes", "ZY"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:")
