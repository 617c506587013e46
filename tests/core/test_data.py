import numpy as np
import pytest

from napari_gan.core.data import (
    Normalizer, PairedPatchSampler, PairedSet, blur_downsample, from_planes, poisson_gaussian_noise,
    to_planes,
)
from napari_gan.core.errors import NapariGanError


def test_to_planes_layouts():
    assert to_planes(np.zeros((10, 12)))[0].shape == (1, 1, 10, 12)
    planes, lead = to_planes(np.zeros((4, 5, 10, 12)))
    assert planes.shape == (20, 1, 10, 12) and lead == (4, 5)
    assert from_planes(planes, lead).shape == (4, 5, 10, 12)
    planes, lead = to_planes(np.zeros((7, 2, 10, 12)), channels=2)
    assert planes.shape == (7, 2, 10, 12)


def test_rgb_to_one_channel_model_is_refused():
    with pytest.raises(NapariGanError, match="RGB"):
        to_planes(np.zeros((32, 32, 3), np.uint8), channels=1)


def test_wrong_channel_count_and_bad_dtype():
    with pytest.raises(NapariGanError, match="expects 3 channels"):
        to_planes(np.zeros((2, 16, 16)), channels=3)
    with pytest.raises(NapariGanError, match="data type"):
        to_planes(np.zeros((16, 16), dtype=complex))
    with pytest.raises(NapariGanError, match="empty"):
        to_planes(np.zeros((0, 16)))


def test_normalizer_round_trip_and_serialisation():
    x = np.random.default_rng(0).integers(0, 65535, (1, 40, 40)).astype(np.uint16)
    norm = Normalizer.fit([x])
    y = norm.normalize(x)
    assert y.dtype == np.float32 and -0.1 < np.median(y) < 1.1
    np.testing.assert_allclose(norm.denormalize(y), x, rtol=1e-5, atol=0.05)
    assert Normalizer.from_dict(norm.to_dict()) == norm


def test_constant_and_nan_images_are_refused():
    with pytest.raises(NapariGanError, match="constant"):
        Normalizer.fit([np.full((1, 16, 16), 7.0)])
    bad = np.ones((1, 16, 16), np.float32)
    bad[0, 3, 3] = np.nan
    with pytest.raises(NapariGanError, match="NaN"):
        PairedSet.build([bad], [np.random.rand(1, 16, 16)])


def test_pair_size_checks_for_denoise_and_sr():
    x = np.random.rand(1, 20, 20)
    with pytest.raises(NapariGanError, match="same size"):
        PairedSet.build([x], [np.random.rand(1, 20, 22)])
    with pytest.raises(NapariGanError, match="must be 40x40"):
        PairedSet.build([x], [np.random.rand(1, 60, 60)], scale=2)
    assert PairedSet.build([x], [np.random.rand(1, 80, 80)], scale=4).scale == 4
    with pytest.raises(NapariGanError, match="one to one"):
        PairedSet.build([x, x], [np.random.rand(1, 20, 20)])


def test_too_small_image_is_refused():
    with pytest.raises(NapariGanError, match="at least"):
        PairedSet.build([np.random.rand(1, 5, 40)], [np.random.rand(1, 5, 40)])


def test_region_split_and_patch_sampling_keep_pairs_aligned():
    x = np.arange(100 * 80, dtype=np.float32).reshape(1, 100, 80)
    data = PairedSet.build([x], [np.kron(x, np.ones((2, 2), np.float32))], scale=2)
    train, val = data.split_by_region(0.2, patch=32)
    assert train.inputs[0].shape == (1, 80, 80) and val.inputs[0].shape == (1, 20, 80)
    assert val.targets[0].shape == (1, 40, 160)
    sampler = PairedPatchSampler(train, 16, np.random.default_rng(0))
    xs, ys = sampler.sample(6)
    assert xs.shape == (6, 1, 16, 16) and ys.shape == (6, 1, 32, 32)
    # the target is the input upsampled by pixel repetition: augmentation must keep that
    xr = train.input_norm.denormalize(xs[:, 0])
    yr = train.target_norm.denormalize(ys[:, 0])
    np.testing.assert_allclose(yr[:, ::2, ::2], xr, rtol=1e-4, atol=0.5)


def test_sampling_is_deterministic_for_a_seed():
    data = PairedSet.build([np.random.rand(1, 50, 50)], [np.random.rand(1, 50, 50)])
    a = PairedPatchSampler(data, 16, np.random.default_rng(3)).sample(4)
    b = PairedPatchSampler(data, 16, np.random.default_rng(3)).sample(4)
    np.testing.assert_array_equal(a[0], b[0])


def test_degradations():
    clean = np.linspace(0, 100, 64 * 64, dtype=np.float32).reshape(64, 64)
    noisy = poisson_gaussian_noise(clean, photons=20, rng=np.random.default_rng(0))
    assert noisy.shape == clean.shape and 1 < np.std(noisy - clean) < 30
    low = blur_downsample(clean, 4)
    assert low.shape == (16, 16)
    assert abs(low.mean() - clean.mean()) < 1


def test_dihedral_gives_the_same_result_for_numpy_and_torch():
    import torch

    from napari_gan.core.data import dihedral

    a = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)   # non-square last two axes
    results = []
    for k in range(8):
        n, t = dihedral(a, k), dihedral(torch.from_numpy(a), k)
        assert isinstance(t, torch.Tensor)
        np.testing.assert_array_equal(n, t.numpy())
        results.append(n.tobytes() + bytes(n.shape))
    assert len(set(results)) == 8                       # eight different transforms
    np.testing.assert_array_equal(dihedral(a, 1), np.rot90(a, 1, axes=(-2, -1)))
    np.testing.assert_array_equal(dihedral(a, 4), a[..., ::-1])
    with pytest.raises(ValueError):
        dihedral(a, 8)
