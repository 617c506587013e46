"""Input normalisation over the data set or per image, and the automatic choice."""

import numpy as np
import pytest
import torch

from napari_gan.core.data import (Normalizer, PairedPatchSampler, PairedSet, per_image_is_better,
                                  poisson_gaussian_noise)
from napari_gan.core.inference import Predictor
from napari_gan.core.models.unet import UNetGenerator
from tests.core.conftest import smooth_image


def _autoscaled_8bit(image: np.ndarray) -> np.ndarray:
    """What many exports do: each image stretched to 0..255 on its own minimum and maximum."""
    return np.round(255 * (image - image.min()) / (image.max() - image.min())).astype(np.uint8)


def _pairs(autoscale: bool, n: int = 6):
    rng = np.random.default_rng(0)
    inputs, targets = [], []
    for i in range(n):
        clean = smooth_image((96, 96), seed=i) * (0.3 + 0.4 * i)       # brightness differs
        noisy = poisson_gaussian_noise(clean, 20, 0.02, rng)
        noisy[0, 0] = noisy.max() * (1.5 + rng.random())                # a hot pixel sets the max
        if autoscale:
            noisy, clean = _autoscaled_8bit(noisy), _autoscaled_8bit(clean)
        inputs.append(noisy[None])
        targets.append(clean[None])
    return inputs, targets


def test_auto_picks_per_image_only_for_pairs_scaled_one_by_one():
    assert per_image_is_better(*_pairs(autoscale=True))
    assert not per_image_is_better(*_pairs(autoscale=False))
    assert not per_image_is_better(*[x[:2] for x in _pairs(autoscale=True)])   # too few to tell


def test_build_records_the_choice_and_each_plane_gets_its_own_range():
    inputs, targets = _pairs(autoscale=True)
    auto = PairedSet.build(inputs, targets)
    assert auto.input_norm.per_image and len(auto.plane_input_norms) == len(inputs)
    assert not PairedSet.build(inputs, targets, normalization="dataset").input_norm.per_image
    # a plane and the same plane 3x brighter give the same normalised patches
    brighter = [inputs[0], (inputs[0].astype(np.float32) * 3 + 7)]
    data = PairedSet.build(brighter, [targets[0]] * 2, normalization="image")
    draws = [(0, 10, 20, 0), (1, 10, 20, 0)]
    x, _ = PairedPatchSampler(data, 32, np.random.default_rng(0)).cut(draws)
    np.testing.assert_allclose(x[0], x[1], atol=1e-4)
    # the validation part keeps the range of its whole image, not of its strip
    train, val = data.split_by_region(0.25, 32)
    assert val.input_norm_for(1) is data.input_norm_for(1) and train.input_norm_for(1) is data.input_norm_for(1)


def test_per_image_range_ignores_single_hot_pixels():
    plane = smooth_image((256, 256))[None]
    hot = plane.copy()
    hot[0, [5, 100, 200], [5, 150, 30]] = 1e5
    norm = Normalizer([0.0], [1.0], per_image=True)
    a, b = norm.for_plane(plane), norm.for_plane(hot)
    assert abs(b.high[0] - a.high[0]) < 0.05 * a.high[0]     # one hot block is 1e5 / 16 = 6250


def test_normaliser_round_trip_and_old_files():
    n = Normalizer([1.0], [9.0], (1.0, 99.0), per_image=True)
    assert Normalizer.from_dict(n.to_dict()) == n
    assert not Normalizer.from_dict({"low": [0], "high": [1], "percentiles": [1, 99]}).per_image


def test_per_image_prediction_uses_one_range_for_all_tiles():
    torch.manual_seed(0)
    g = UNetGenerator(1, 1, depth=2, width=4)
    cfg = {"scale": 1, "depth": 2, "in_channels": 1, "out_channels": 1}
    p = Predictor(g, cfg, Normalizer([0.0], [200.0], per_image=True), Normalizer([0.0], [200.0]),
                  torch.device("cpu"))
    image = smooth_image((150, 170), seed=3)
    whole = p.predict(image, tile=1024)
    np.testing.assert_allclose(p.predict(image, tile=64, overlap=24), whole, atol=0.02 * whole.std())
    # output in target units does not depend on how the input was scaled
    np.testing.assert_allclose(p.predict(image * 4 + 10, tile=64, overlap=24), whole, atol=0.02 * whole.std())


def test_cli_per_image_normalisation_is_stored_and_used(tmp_path, capsys):
    import tifffile

    from napari_gan.cli import main
    from napari_gan.core.checkpoint import read_header
    from tests.core.test_cli import TINY

    inputs, targets = _pairs(autoscale=True, n=3)
    for name in ("in", "gt"):
        (tmp_path / name).mkdir()
    for i, (x, y) in enumerate(zip(inputs, targets)):
        tifffile.imwrite(tmp_path / "in" / f"f{i}.tif", x[0])
        tifffile.imwrite(tmp_path / "gt" / f"f{i}.tif", y[0])
    args = ["train", "pix2pix", "--input", tmp_path / "in", "--target", tmp_path / "gt", *TINY]
    assert main([str(a) for a in args + ["--out", tmp_path / "run"]]) == 0
    assert "inputs normalised per image" in capsys.readouterr().out          # auto decided
    assert read_header(tmp_path / "run" / "model.safetensors").normalization["input"]["per_image"]
    assert main([str(a) for a in args + ["--out", tmp_path / "run2", "--normalize", "dataset"]]) == 0
    assert "over the data set" in capsys.readouterr().out
    assert main(["predict", "--model", str(tmp_path / "run"), "--input", str(tmp_path / "in" / "f0.tif"),
                 "--output", str(tmp_path / "p.tif")]) == 0
    assert np.isfinite(tifffile.imread(tmp_path / "p.tif")).all()


def test_normaliser_is_stored_whole_and_old_records_get_the_defaults():
    from napari_gan.core.normalization import BLOCK

    n = Normalizer([1.0, 2.0], [9.0, 4.0], (1.0, 99.0), per_image=True, block=8)
    d = n.to_dict()
    assert d["method"] == "percentile" and d["block"] == 8 and Normalizer.from_dict(d) == n
    old = Normalizer.from_dict({"low": [0], "high": [1], "percentiles": [0.5, 99.8], "per_image": False})
    assert old.method == "percentile" and old.block == BLOCK
    import napari_gan.core.data as data
    assert data.Normalizer is Normalizer and data.BLOCK == BLOCK   # still importable from data


@pytest.mark.parametrize("change", [
    {"low": "0"}, {"low": [True]}, {"low": []}, {"high": [float("inf")]}, {"low": [float("nan")]},
    {"low": [0.0, 1.0]}, {"high": [0.0]}, {"high": [-1.0]}, {"percentiles": [99, 1]},
    {"percentiles": [1]}, {"per_image": "yes"}, {"method": "zscore"}, {"block": 0}, {"block": 2.5},
])
def test_damaged_normalisation_records_are_refused(change):
    from napari_gan.core.errors import NapariGanError

    d = {"low": [0.0], "high": [1.0], "percentiles": [0.5, 99.8], "per_image": False, **change}
    with pytest.raises(NapariGanError, match="stored normalisation is damaged"):
        Normalizer.from_dict(d)
    with pytest.raises(NapariGanError, match="'high' is missing"):
        Normalizer.from_dict({"low": [0.0], "percentiles": [1, 99]})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int32])
def test_tensor_and_numpy_forms_of_the_affine_agree(dtype):
    n = Normalizer([10.0, -3.0], [250.0, 5.0])
    raw = np.random.default_rng(0).integers(-5, 300, (4, 2, 6, 7)).astype(np.float32)
    t = torch.from_numpy(raw).to(dtype)
    expected = np.moveaxis(n.normalize(np.moveaxis(t.float().numpy(), 1, 0)), 0, 1)
    got = n.normalize_tensor(t)                    # channels at dim -3
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(n.denormalize_tensor(got).double().numpy(), t.double().numpy(), rtol=1e-5, atol=1e-4)
    # channels elsewhere: numpy's channel_axis and torch's channel_dim
    moved = np.moveaxis(t.float().numpy(), 1, -1)
    np.testing.assert_allclose(n.normalize(moved, channel_axis=-1),
                               n.normalize_tensor(torch.from_numpy(moved), channel_dim=-1).numpy(), rtol=1e-6)
    offset, scale = n.tensor_offset_scale(ndim=4, channel_dim=1)
    assert offset.shape == scale.shape == (1, 2, 1, 1)
    np.testing.assert_allclose(scale.flatten().numpy(), [240.0, 8.0])


def test_predictor_amp_opt_out_predicts_in_float32():
    torch.manual_seed(0)
    g = UNetGenerator(1, 1, depth=2, width=4)
    cfg = {"scale": 1, "depth": 2, "in_channels": 1, "out_channels": 1}
    norm_in, norm_out = Normalizer([0.0], [200.0]), Normalizer([5.0], [105.0])
    p = Predictor(g, cfg, norm_in, norm_out, torch.device("cpu"), amp=False)
    assert not p.amp and Predictor(g, cfg, norm_in, norm_out, torch.device("cpu")).amp
    image = smooth_image((64, 48), seed=1)
    out = p.predict(image, tile=1024, overlap=0)      # one tile == the whole image
    with torch.no_grad():
        ref = g.float()(torch.from_numpy(norm_in.normalize(image[None]))[None])[0].numpy()
    np.testing.assert_allclose(out, norm_out.denormalize(ref)[0], rtol=1e-5, atol=1e-4)
