"""The one tiler (core.tiling) over 2 and 3 spatial axes, with the sums in the output array
(host) or in a band of rows on the device."""

import numpy as np
import pytest
import torch

from napari_gan.core.normalization import Normalizer
from napari_gan.core.tiling import TileGrid, predict_tiled, read_padded, tile_starts

ACCUMULATORS = [None, "cpu"]   # None: sums in `out` itself; "cpu": a band of rows on that device


def _run(source, fn, tile, overlap, scale=1, cout=None, **kw):
    cout = cout or source.shape[0]
    out = np.full((cout,) + tuple(d * scale for d in source.shape[1:]), np.nan, np.float32)
    return predict_tiled(source, fn, out, tile, overlap, scale=scale, **kw)


@pytest.mark.parametrize("accumulate_on", ACCUMULATORS)
@pytest.mark.parametrize("shape,tile,overlap", [
    ((2, 19, 37, 30), (8, 16, 12), 3),     # Z, Y, X with a different tile per axis
    ((1, 5, 40, 33), 16, 4),
    ((1, 1, 20, 20), 8, 2),                # one slice deep: edge-padded along Z
])
def test_3d_identity_gives_back_the_input(shape, tile, overlap, accumulate_on):
    x = np.random.default_rng(0).random(shape).astype(np.float32) * 50 + 3
    norm = Normalizer([3.0] * shape[0], [53.0] * shape[0])
    out = _run(x, lambda t: t, tile, overlap, input_norm=norm, output_norm=norm, batch=3,
               accumulate_on=accumulate_on)
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("accumulate_on", ACCUMULATORS)
def test_3d_upsampling_by_two(accumulate_on):
    x = np.random.default_rng(1).random((1, 9, 21, 18)).astype(np.float32)
    up = lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2).repeat_interleave(2, -3)
    out = _run(x, up, 8, 2, scale=2, accumulate_on=accumulate_on)
    np.testing.assert_allclose(out, x.repeat(2, -1).repeat(2, -2).repeat(2, -3), atol=1e-6)


def test_3d_convolution_tiled_matches_untiled_and_accumulators_agree():
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(2, 3, 3, padding=1)
    x = np.random.default_rng(2).random((2, 20, 44, 38)).astype(np.float32)
    fn = lambda t: conv(t)
    with torch.no_grad():   # reference: the convolution of the mirrored image, cropped
        padded = np.pad(x, [(0, 0)] + [(1, 1)] * 3, mode="reflect")
        whole = torch.nn.functional.conv3d(torch.from_numpy(padded)[None], conv.weight, conv.bias)[0].numpy()
    host = _run(x, fn, (10, 16, 16), 6, cout=3, batch=2, accumulate_on=None)
    band = _run(x, fn, (10, 16, 16), 6, cout=3, batch=5, accumulate_on="cpu")
    np.testing.assert_allclose(band, host, rtol=1e-5, atol=1e-5)
    # Each tile's zero-padded rim has a small but nonzero blending weight: close, not equal.
    err = np.abs(host - whole)
    assert err.max() < 0.05 * np.abs(whole).max() and err.mean() < 0.005 * np.abs(whole).max()
    single = _run(x, fn, 64, 1, cout=3)     # one tile: the mirrored canvas reproduces `whole`
    np.testing.assert_allclose(single, whole, atol=1e-5)


def test_2d_tiling_of_each_slice_equals_3d_tiling_with_one_slice_deep_tiles():
    """Tiles one slice deep have a flat ramp along Z (and tiles in the Z padding are skipped),
    so 3-D tiling == 2-D tiling of every slice, blending ramps along Y and X included."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    x = np.random.default_rng(3).random((1, 4, 50, 41)).astype(np.float32)
    per_slice = np.stack([_run(x[:, z], conv, 16, 4)[0] for z in range(4)])[None]
    fn = lambda t: conv(t.movedim(2, 1).flatten(0, 1)).unflatten(0, (t.shape[0], t.shape[2])).movedim(1, 2)
    for accumulate_on in ACCUMULATORS:
        np.testing.assert_allclose(_run(x, fn, (1, 16, 16), 4, batch=4, accumulate_on=accumulate_on),
                                   per_slice, atol=1e-6)


def test_grid_covers_the_padded_canvas_and_skips_tiles_outside_the_image():
    g = TileGrid.make((100, 37), 32, 8, multiple=4)
    assert g.tile == (32, 32) and g.starts[0][0] == -8 and g.starts[0][-1] + 32 == 108
    assert len(g.boxes()) == len(g.starts[0]) * len(g.starts[1])
    g = TileGrid.make((10,), 8, 9)                # overlap larger than the tile
    assert all(max(a, 0) < min(a + 8, 10) for (a,) in g.boxes()) and len(g.boxes()) < len(g.starts[0])
    for size, tile, overlap in [(100, 32, 8), (10, 32, 8), (257, 64, 16)]:
        covered = np.zeros(size, bool)
        for s in tile_starts(size, tile, overlap):
            covered[s:s + tile] = True
        assert covered.all()


def test_read_padded_mirrors_along_each_axis():
    a = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    w = read_padded(a, (-2, 1, -1), (6, 3, 7))
    ref = np.pad(a, [(0, 0), (2, 1), (0, 0), (1, 1)], mode="reflect")[:, :, 1:4, :]
    np.testing.assert_array_equal(w, ref)
    one = read_padded(a[:, :1], (-1, 0, 0), (3, 4, 5))   # a single slice: repeated, not reflected
    np.testing.assert_array_equal(one, np.repeat(a[:, :1], 3, axis=1))


def test_progress_cancel_and_outputs_that_torch_cannot_share():
    x = np.random.default_rng(4).random((1, 60, 50)).astype(np.float32)
    calls = []
    ref = _run(x, lambda t: t * 2, 16, 4, batch=3, on_tile=lambda d, n: calls.append((d, n)))
    assert calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == sorted(d for d, _ in calls)
    flipped = np.zeros((1, 60, 50), np.float32)[:, ::-1]     # negative strides: written via a band
    predict_tiled(x, lambda t: t * 2, flipped, 16, 4)
    np.testing.assert_allclose(flipped, ref, atol=1e-6)
    with pytest.raises(InterruptedError):
        _run(x, lambda t: t, 16, 4, cancel=lambda: True)
