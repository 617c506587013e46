"""Generate Data's Live toggle: the visible part of the layer is restored, placed over the
view, follows camera moves (debounced) and cancels stale work."""

from __future__ import annotations

import time

import numpy as np
import pytest

from .conftest import smooth_image

TILE, OVERLAP = 64, 8


@pytest.fixture
def gen_widget(viewer, pix2pix_models):
    from napari_gan._widgets import GenerateWidget

    widget = GenerateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Generate Data")
    widget.device.value = "cpu"
    widget.model_path.value = pix2pix_models["denoise"]
    widget.field("tile").value = TILE
    widget.field("overlap").value = OVERLAP
    return widget


def look_at(viewer, world_yx, visible_rows: float):
    """Centre the camera on ``world_yx`` with about ``visible_rows`` world units of height in view."""
    viewer.camera.center = tuple(world_yx)
    viewer.camera.zoom = viewer.canvas.size[0] / visible_rows


def wait_full_view(qtbot, live, timeout=60_000):
    qtbot.waitUntil(lambda: not live.running and not live.timer.isActive() and live.last_update is not None
                    and live.last_update.done == live.last_update.total, timeout=timeout)
    return live.last_update


def expected_region(viewer, layer):
    """The data pixels (rows, columns) whose centres are visible in the canvas."""
    half = np.array(viewer.canvas.size, float) / (2 * viewer.camera.zoom)
    centre = np.array(viewer.camera.center[-2:], float)
    lo = (centre - half - np.array(layer.translate)) / np.array(layer.scale)
    hi = (centre + half - np.array(layer.translate)) / np.array(layer.scale)
    return lo, hi


def test_live_preview_restores_the_visible_part_and_sits_over_it(qtbot, viewer, gen_widget, notes):
    image = smooth_image((200, 240))
    layer = viewer.add_image(image, name="raw", scale=(2.0, 2.0), translate=(10.0, 20.0))
    gen_widget.input_layer.value = layer
    assert not gen_widget.live.toggle.native.isHidden()
    look_at(viewer, (10 + 2 * 100, 20 + 2 * 130), visible_rows=2 * 70)
    gen_widget.live.toggle.value = True
    update = wait_full_view(qtbot, gen_widget.live)
    region = update.request.region
    lo, hi = expected_region(viewer, layer)
    assert region.y0 <= max(0, lo[0]) + 1 and region.y1 >= min(200, hi[0]) - 1       # covers the view ...
    assert region.x0 <= max(0, lo[1]) + 1 and region.x1 >= min(240, hi[1]) - 1
    assert region.shape[0] < 200 or region.shape[1] < 240                             # ... and not the rest
    preview = viewer.layers["raw live preview"]
    assert preview.metadata["napari_gan_preview"] and preview not in gen_widget.input_layer.choices
    assert tuple(preview.scale) == (2.0, 2.0)
    assert np.allclose(preview.translate, (10 + 2 * region.y0, 20 + 2 * region.x0))
    predictor = gen_widget.live._model[1]
    whole = predictor.predict_plane(image[None], TILE, OVERLAP)[0]
    np.testing.assert_allclose(preview.data, whole[region.y0:region.y1, region.x0:region.x1],
                               rtol=1e-5, atol=1e-4)
    assert not notes.errors()
    gen_widget.live.toggle.value = False
    assert "raw live preview" in viewer.layers and viewer.layers["raw"].data is image   # nothing removed


def test_a_camera_move_cancels_stale_work_and_is_followed(qtbot, viewer, gen_widget, monkeypatch):
    from napari_gan.core import regions

    step = regions.RegionPrediction.step

    def slow_step(self):
        time.sleep(0.05)
        return step(self)

    monkeypatch.setattr(regions.RegionPrediction, "step", slow_step)
    seen = []
    image = smooth_image((400, 400))
    layer = viewer.add_image(image, name="raw")
    gen_widget.input_layer.value = layer
    look_at(viewer, (100, 100), visible_rows=120)
    live = gen_widget.live
    show = live._show
    monkeypatch.setattr(live, "_show", lambda update: (seen.append(update), show(update)))
    live.toggle.value = True
    qtbot.waitUntil(lambda: bool(seen), timeout=60_000)
    first = seen[0].request
    assert seen[0].done < seen[0].total                       # a partial result: the centre first
    started = live.started
    for k in range(5):                                        # a drag: many events, one prediction
        viewer.camera.center = (300, 280 + k)
    update = wait_full_view(qtbot, live)
    assert live.started == started + 1
    new = update.request.region
    assert new != first.region and new.y0 <= 300 < new.y1 and new.x0 <= 284 < new.x1
    assert not any(u.request is first and u.done == u.total for u in seen)   # the stale view was cancelled
    preview = viewer.layers["raw live preview"]
    assert np.allclose(preview.translate, (update.request.region.y0, update.request.region.x0))


def test_live_stops_with_another_layer_and_is_only_for_image_models(qtbot, viewer, gen_widget, stylegan2_model,
                                                                    pix2pix_models):
    a = viewer.add_image(smooth_image((128, 128)), name="a")
    b = viewer.add_image(smooth_image((128, 128)), name="b")
    gen_widget.input_layer.value = a
    gen_widget.live.toggle.value = True
    wait_full_view(qtbot, gen_widget.live)
    gen_widget.input_layer.value = b
    assert not gen_widget.live.toggle.value and not gen_widget.live.running
    assert {"a", "b", "a live preview"} <= {layer.name for layer in viewer.layers}
    gen_widget.model_path.value = stylegan2_model
    assert gen_widget.live.toggle.native.isHidden()
    gen_widget.model_path.value = pix2pix_models["sr2"]
    assert not gen_widget.live.toggle.native.isHidden()


def test_multiscale_layers_are_previewed_at_the_displayed_level(qtbot, viewer, gen_widget):
    image = smooth_image((1024, 1024))
    layer = viewer.add_image([image, image[::2, ::2], image[::4, ::4]], name="slide", multiscale=True)
    gen_widget.input_layer.value = layer
    look_at(viewer, (512, 512), visible_rows=4096)                # the whole slide, small
    viewer.window._qt_viewer.canvas.on_draw(None)                 # what a shown window does by itself
    assert layer.data_level > 0
    level = layer.data_level
    f = 2 ** level
    gen_widget.live.toggle.value = True
    update = wait_full_view(qtbot, gen_widget.live)
    assert update.request.level == level
    region = update.request.region
    assert region.shape == (1024 // f, 1024 // f)                # the whole level, nothing more
    preview = viewer.layers["slide live preview"]
    assert tuple(preview.scale) == (f, f) and np.allclose(preview.translate, (0, 0))
