"""Predicting a region of a plane centre first (the live preview's compute path)."""

import numpy as np
import pytest

from napari_gan.core.errors import NapariGanError
from napari_gan.core.regions import Region, RegionPrediction, predict_region, region_within
from tests.core.conftest import smooth_image
from tests.core.test_inference import make_predictor


class CountingPlane:
    """A (C, H, W) plane that records the size of every read."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, []

    @property
    def ndim(self):
        return self.data.ndim

    def __getitem__(self, key):
        out = self.data[key]
        self.reads.append(out.size)
        return out


@pytest.mark.parametrize("scale,channels", [(1, 1), (2, 1), (1, 2)])
def test_a_region_equals_the_same_pixels_of_the_whole_plane(scale, channels):
    p = make_predictor(scale, channels=channels)
    plane = np.stack([smooth_image((150, 170), seed=3 + c) for c in range(channels)])
    whole = p.predict_plane(plane, tile=64, overlap=16)
    region = Region(37, 51, 101, 133)
    part = predict_region(p, plane, region, tile=64, overlap=16)
    s = scale
    expected = whole[:, region.y0 * s:region.y1 * s, region.x0 * s:region.x1 * s]
    assert part.shape == expected.shape == (channels, 64 * s, 82 * s)      # every output channel
    np.testing.assert_allclose(part, expected, rtol=1e-5, atol=1e-4 * np.abs(expected).max())


def test_tiles_run_centre_first_and_only_tile_windows_are_read():
    p = make_predictor()
    plane = CountingPlane(smooth_image((400, 400), seed=1)[None])
    job = RegionPrediction(p, plane, Region(100, 100, 300, 300), tile=64, overlap=16)
    plane.reads.clear()
    first = []
    job.run(on_batch=lambda done, total: first.append(job.partial()) if done == 1 else None)
    assert max(plane.reads) <= 64 * 64
    covered = ~np.isnan(first[0][0])
    ys, xs = np.nonzero(covered)
    assert 0 < covered.mean() < 0.25                       # one tile landed ...
    assert abs(ys.mean() - 100) < 20 and abs(xs.mean() - 100) < 20   # ... in the middle
    assert not np.isnan(job.partial()).any()


def test_cancel_between_tiles():
    p = make_predictor()
    plane = smooth_image((200, 200))[None]
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(InterruptedError):
        predict_region(p, plane, Region(0, 0, 200, 200), tile=64, overlap=16, cancel=cancel)
    assert len(calls) == 3


def test_region_within_clips_to_the_plane():
    assert region_within((-5.2, 10.4), (20.6, 300.0), (100, 200)) == Region(0, 10, 22, 200)
    assert region_within((10, 10), (20, 20), (100, 100), margin=3) == Region(7, 7, 24, 24)
    assert region_within((150, 0), (200, 50), (100, 100)) is None
    with pytest.raises(NapariGanError):
        RegionPrediction(make_predictor(), smooth_image((50, 50))[None], Region(0, 0, 60, 10))
