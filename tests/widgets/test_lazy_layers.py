"""Generate Data on lazy (dask, multiscale) layers: read tile by tile, written into an OME-Zarr
store, shown as a layer that appears at once and fills as the rows land, cancellable."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from .conftest import smooth_image, wait_idle

TILE, OVERLAP = 64, 8


class GuardedArray:
    """An array-like that records every read made off the GUI thread (the worker's) and, with
    a gate, holds those reads until the test opens it."""

    def __init__(self, data, gate: threading.Event | None = None):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.gate, self.worker_reads = gate, []

    def __getitem__(self, key):
        out = self.data[key]
        if threading.current_thread() is not threading.main_thread():
            if self.gate is not None:
                self.gate.wait(60)
            self.worker_reads.append(out.size)
        return out


def lazy_layer(viewer, image, gate=None, name="raw", **kwargs):
    import dask.array as da

    guarded = GuardedArray(image, gate)
    layer = viewer.add_image(da.from_array(guarded, chunks=32, asarray=False), name=name,
                             contrast_limits=(0, 255), **kwargs)
    return layer, guarded


@pytest.fixture(autouse=True)
def dask_reads_on_the_calling_thread():
    """Dask computes on the thread that asks (napari's reads on the GUI thread, the widget's in
    its worker), so the reads can be told apart."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture
def gen_widget(gen_widget, pix2pix_models):
    """The docked Generate Data widget with the denoising model and small tiles."""
    gen_widget.model_path.value = pix2pix_models["denoise"]
    gen_widget.field("tile").value = TILE
    gen_widget.field("overlap").value = OVERLAP
    return gen_widget


def predict(qtbot, widget, layer):
    widget.input_layer.value = layer
    assert widget.run()
    wait_idle(qtbot, widget)
    return widget.last_layer


def test_a_dask_layer_is_read_tile_by_tile_and_equals_the_numpy_result(qtbot, viewer, gen_widget, notes):
    image = smooth_image((160, 200))
    layer, guarded = lazy_layer(viewer, image, scale=(0.5, 0.25), translate=(10, 20))
    out = predict(qtbot, gen_widget, layer)
    assert not notes.errors(), notes.errors()
    assert guarded.worker_reads and max(guarded.worker_reads) <= 32 * 32      # one dask chunk at a time
    assert sum(guarded.worker_reads) < 12 * image.size                        # tiles overlap; never whole
    assert not isinstance(out.data, np.ndarray) and out.name == "raw denoised"
    assert tuple(out.scale) == (0.5, 0.25) and tuple(out.translate) == (10, 20)
    lazy = np.asarray(out.data)
    reference = predict(qtbot, gen_widget, viewer.add_image(image, name="in memory"))
    np.testing.assert_allclose(lazy, reference.data, rtol=1e-5, atol=1e-4)
    lo, hi = out.contrast_limits
    assert lazy.min() <= lo < hi <= lazy.max()


def test_the_result_layer_appears_before_prediction_ends_and_fills(qtbot, viewer, gen_widget, monkeypatch):
    from napari_gan._widgets import _lazy

    monkeypatch.setattr(_lazy, "REFRESH_S", 0.0)
    gate = threading.Event()
    layer, _ = lazy_layer(viewer, smooth_image((96, 96)), gate)
    gen_widget.input_layer.value = layer
    gen_widget.run_button.native.click()
    try:
        qtbot.waitUntil(lambda: "raw denoised" in viewer.layers, timeout=60_000)
        assert gen_widget.running                              # shown while the input is still unread
        shown = viewer.layers["raw denoised"]
        assert not np.asarray(shown.data).any()                # empty store so far
        refreshed = []
        shown.events.set_data.connect(lambda _e: refreshed.append(1))
    finally:
        gate.set()
    wait_idle(qtbot, gen_widget)
    assert refreshed                                           # refreshed as the rows landed
    assert np.asarray(shown.data).std() > 0 and gen_widget.last_layer is shown


def test_cancel_removes_the_partial_layer_and_its_store(qtbot, viewer, gen_widget, notes):
    from pathlib import Path

    gate = threading.Event()
    layer, _ = lazy_layer(viewer, smooth_image((96, 96)), gate)
    gen_widget.input_layer.value = layer
    gen_widget.run_button.native.click()
    try:
        qtbot.waitUntil(lambda: "raw denoised" in viewer.layers, timeout=60_000)
        store = Path(viewer.layers["raw denoised"].metadata["napari_gan_store"])
        assert store.exists()
        gen_widget.cancel_button.native.click()
    finally:
        gate.set()
    wait_idle(qtbot, gen_widget)
    assert "raw denoised" not in viewer.layers and not store.exists()
    assert any("cancelled" in m for m in notes.infos()) and not notes.errors()
    assert viewer.layers["raw"].data is layer.data                     # the input is untouched


def test_multiscale_layer_saved_as_ome_zarr_with_a_pyramid(qtbot, viewer, gen_widget, pix2pix_models, tmp_path,
                                                           notes):
    from napari_gan.core.zarr_io import read_ome_zarr

    image = smooth_image((40, 300))
    layer = viewer.add_image([image, image[::2, ::2]], name="slide", multiscale=True, scale=(2.0, 2.0),
                             contrast_limits=(0, 255))
    gen_widget.model_path.value = pix2pix_models["sr2"]
    gen_widget.save.value = True
    gen_widget.save_path.value = tmp_path / "out.ome.zarr"
    out = predict(qtbot, gen_widget, layer)
    assert not notes.errors(), notes.errors()
    assert out.multiscale and out.data[0].shape == (80, 600) and out.data[1].shape == (40, 300)
    assert tuple(out.scale) == (1.0, 1.0) and np.allclose(out.translate, (-0.5, -0.5))
    saved = read_ome_zarr(tmp_path / "out.ome.zarr")
    assert saved.axes == "YX" and saved.shape == (80, 600)
    np.testing.assert_array_equal(np.asarray(saved.data), np.asarray(out.data[0]))
    assert out.metadata["napari_gan_store"] == str(tmp_path / "out.ome.zarr")
    assert not list(tmp_path.glob(".*part"))


def test_removing_the_layer_deletes_its_temporary_store(qtbot, viewer, gen_widget):
    from pathlib import Path

    layer, _ = lazy_layer(viewer, smooth_image((64, 64)))
    out = predict(qtbot, gen_widget, layer)
    store = Path(out.metadata["napari_gan_store"])
    assert store.exists() and out.metadata["napari_gan_store_temporary"]
    viewer.layers.remove(out)
    assert not store.exists() and viewer.layers["raw"].data is layer.data


def test_a_lazy_layer_of_several_channels_gives_one_layer_like_the_numpy_result(qtbot, viewer, gen_widget,
                                                                               pix2pix_models, notes):
    """Channels stay one axis of one layer, placed on the input like the in-memory result."""
    gen_widget.model_path.value = pix2pix_models["two_channels"]
    image = smooth_image((3, 2, 96, 80))                            # Z, C, Y, X
    layer, _ = lazy_layer(viewer, image, scale=(2, 1, 0.5, 0.5), translate=(4, 0, 1, 2))
    gen_widget.input_layer.value = layer
    gen_widget.channel_axis.value = 1
    out = predict(qtbot, gen_widget, layer)
    assert not notes.errors(), notes.errors()
    assert not isinstance(out.data, np.ndarray) and out.data.shape == image.shape
    assert tuple(out.scale) == (2, 1, 0.5, 0.5) and tuple(out.translate) == (4, 0, 1, 2)
    gen_widget.input_layer.value = viewer.add_image(image, name="in memory")
    gen_widget.channel_axis.value = 1
    reference = predict(qtbot, gen_widget, viewer.layers["in memory"])
    np.testing.assert_allclose(np.asarray(out.data), reference.data, rtol=1e-5, atol=1e-4)
