"""A lazy image predicted into an OME-Zarr store that fills band by band (Generate Data's lazy path)."""

import numpy as np
import pytest

from napari_gan.core import inference, zarr_io
from napari_gan.core.axes import AxesImage
from napari_gan.core.streaming import plan_stream, run_stream, store_views
from napari_gan.core.zarr_io import LazyArray, _halve, read_ome_zarr
from tests.core.conftest import smooth_image
from tests.core.test_inference import make_predictor


def spy_band_widths(monkeypatch) -> list[int]:
    """The widths of the band writers' buffers (the rows of output held in memory)."""
    widths, init = [], zarr_io.BandWriter.__init__

    def spied(self, *args, **kwargs):
        init(self, *args, **kwargs)
        widths.append(self.buf.shape[-1])

    monkeypatch.setattr(zarr_io.BandWriter, "__init__", spied)
    return widths


@pytest.mark.parametrize("scale,strips", [(1, False), (2, False), (1, True), (2, True)])
def test_a_dask_image_streams_into_a_store_equal_to_the_in_memory_prediction(tmp_path, monkeypatch, scale, strips):
    da = pytest.importorskip("dask.array")
    widths = spy_band_widths(monkeypatch)
    if strips:   # column strips of 64 output pixels (2 chunks) instead of 4096
        monkeypatch.setattr(inference, "STRIP_COLUMNS", 64)
        monkeypatch.setattr(inference, "STRIP_TILES", 0)
    p = make_predictor(scale)
    image = smooth_image((2, 90, 140), seed=2)
    reads = []

    def note(block):
        reads.append(block.size)
        return block

    lazy = da.from_array(image, chunks=(1, 32, 32)).map_blocks(note, dtype=image.dtype)
    plan = plan_stream(p, AxesImage(LazyArray(lazy), "ZYX", {"Y": 0.5, "X": 0.5}, "micron", "slide"),
                       tmp_path / "out.ome.zarr", tile=64, overlap=16, chunk=32)
    plan.store.create()
    seen = []
    run_stream(p, plan, progress=lambda done, total: seen.append((done, total)))
    expected = p.predict(image, tile=64, overlap=16)
    views = store_views(plan.store, plan.out_axes)
    np.testing.assert_allclose(np.asarray(views[0]), expected, rtol=1e-5, atol=1e-4)
    assert max(reads) <= 32 * 32 and sum(reads) < 20 * image.size     # tile windows only, never whole
    assert seen[-1][0] == seen[-1][1] and len(seen) > 2                  # progress row by row
    level1 = np.stack([_halve(plane, (-(-plane.shape[0] // 2), -(-plane.shape[1] // 2)), np.float32)
                       for plane in np.asarray(views[0])])
    np.testing.assert_allclose(np.asarray(views[1]), level1, rtol=1e-6)   # pyramid filled as rows came
    level2 = np.stack([_halve(plane, (-(-plane.shape[0] // 2), -(-plane.shape[1] // 2)), np.float32)
                       for plane in level1])
    np.testing.assert_allclose(np.asarray(views[2]), level2, rtol=1e-6)
    assert max(widths) == (64 if strips else 140 * scale)      # the band is a strip wide, not the image
    back = read_ome_zarr(tmp_path / "out.ome.zarr")
    assert back.axes == "ZYX" and back.pixel_size["Y"] == pytest.approx(0.5 / scale)


def test_cancel_leaves_the_store_incomplete(tmp_path):
    p = make_predictor()
    image = smooth_image((200, 200))
    plan = plan_stream(p, AxesImage(LazyArray(image), "YX"), tmp_path / "out.ome.zarr", tile=64, overlap=16,
                       chunk=32)
    plan.store.create()
    calls = []
    with pytest.raises(InterruptedError):
        run_stream(p, plan, cancel=lambda: calls.append(1) or len(calls) > 3)
    from napari_gan.core.zarr_io import MARK
    import zarr

    assert zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r").attrs[MARK]["complete"] is False
