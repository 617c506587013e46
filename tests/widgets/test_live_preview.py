"""Generate Data's Live toggle: the visible part of the layer is restored, placed over the
view, follows camera moves (debounced) and cancels stale work."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_gan._widgets._live import PUSH_S, camera

from .conftest import smooth_image

TILE, OVERLAP = 64, 8


@pytest.fixture
def gen_widget(gen_widget, pix2pix_models):
    """The docked Generate Data widget with the denoising model and small tiles."""
    gen_widget.model_path.value = pix2pix_models["denoise"]
    gen_widget.field("tile").value = TILE
    gen_widget.field("overlap").value = OVERLAP
    return gen_widget


def look_at(viewer, world_yx, visible_rows: float):
    """Centre the camera on ``world_yx`` with about ``visible_rows`` world units of height in view."""
    camera(viewer).center = tuple(world_yx)
    camera(viewer).zoom = viewer.canvas.size[0] / visible_rows


def slow_tiles(monkeypatch, seconds=0.05):
    """Every batch of tiles takes ``seconds`` longer (so that partial results are shown)."""
    from napari_gan.core import regions

    step = regions.RegionPrediction.step

    def slow_step(self):
        time.sleep(seconds)
        return step(self)

    monkeypatch.setattr(regions.RegionPrediction, "step", slow_step)


def record_updates(monkeypatch, live) -> list:
    """The updates Live shows from now on, in order."""
    seen = []
    show = live._show
    monkeypatch.setattr(live, "_show", lambda update: (seen.append(update), show(update)))
    return seen


def wait_full_view(qtbot, live, timeout=60_000):
    qtbot.waitUntil(lambda: not live.running and not live.timer.isActive() and live.last_update is not None
                    and live.last_update.done == live.last_update.total, timeout=timeout)
    return live.last_update


def expected_region(viewer, layer):
    """The data pixels (rows, columns) whose centres are visible in the canvas."""
    half = np.array(viewer.canvas.size, float) / (2 * camera(viewer).zoom)
    centre = np.array(camera(viewer).center[-2:], float)
    lo = (centre - half - np.array(layer.translate)) / np.array(layer.scale)
    hi = (centre + half - np.array(layer.translate)) / np.array(layer.scale)
    return lo, hi


def test_live_preview_restores_the_visible_part_and_sits_over_it(qtbot, viewer, gen_widget, notes):
    image = smooth_image((200, 240))
    layer = viewer.add_image(image, name="raw", scale=(2.0, 2.0), translate=(10.0, 20.0), colormap="magma")
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
    assert tuple(preview.scale) == (2.0, 2.0) and preview.colormap.name == "magma"   # as the input's
    assert np.allclose(preview.translate, (10 + 2 * region.y0, 20 + 2 * region.x0))
    predictor = gen_widget.live._model[1]
    whole = predictor.predict_plane(image[None], TILE, OVERLAP)[0]
    np.testing.assert_allclose(preview.data, whole[region.y0:region.y1, region.x0:region.x1],
                               rtol=1e-5, atol=1e-4)
    assert not notes.errors()
    gen_widget.live.toggle.value = False
    assert "raw live preview" in viewer.layers and viewer.layers["raw"].data is image   # nothing removed


def test_a_camera_move_cancels_stale_work_and_is_followed(qtbot, viewer, gen_widget, monkeypatch):
    slow_tiles(monkeypatch)
    image = smooth_image((400, 400))
    layer = viewer.add_image(image, name="raw")
    gen_widget.input_layer.value = layer
    look_at(viewer, (100, 100), visible_rows=120)
    live = gen_widget.live
    seen = record_updates(monkeypatch, live)
    live.toggle.value = True
    qtbot.waitUntil(lambda: bool(seen), timeout=60_000)
    first = seen[0].request
    assert seen[0].done < seen[0].total                       # a partial result: the centre first
    started = live.started
    for k in range(5):                                        # a drag: many events, one prediction
        camera(viewer).center = (300, 280 + k)
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


def test_every_output_channel_gets_a_preview_layer(qtbot, viewer, gen_widget, pix2pix_models, notes,
                                                  monkeypatch):
    """A two-channel model: one preview layer per channel (napari's channel colormaps), as
    Generate Data shows a lazy result's channels; partial results and a moved view update the
    same layers."""
    slow_tiles(monkeypatch, PUSH_S)
    image = np.stack([smooth_image((160, 160), seed=1), smooth_image((160, 160), seed=2)])
    gen_widget.model_path.value = pix2pix_models["two_channels"]
    gen_widget.field("tile").value, gen_widget.field("overlap").value = TILE, OVERLAP
    gen_widget.input_layer.value = viewer.add_image(image, name="two")
    look_at(viewer, (60, 60), visible_rows=80)
    live = gen_widget.live
    seen = record_updates(monkeypatch, live)
    live.toggle.value = True
    update = wait_full_view(qtbot, live)
    assert update.data.shape[0] == 2 and len(seen) > 1            # partial results first
    previews = [layer for layer in viewer.layers if layer.metadata.get("napari_gan_preview")]
    assert [layer.name for layer in previews] == ["two live preview", "two live preview [1]"]
    assert [layer.colormap.name for layer in previews] == ["magenta", "green"]
    assert previews == live.layers and "2 channels" in gen_widget.status.value
    region = update.request.region
    whole = live._model[1].predict_plane(image, TILE, OVERLAP)
    for c, layer in enumerate(previews):
        np.testing.assert_allclose(layer.data, whole[c, region.y0:region.y1, region.x0:region.x1],
                                   rtol=1e-5, atol=1e-4)
    camera(viewer).center = (110, 110)
    moved = wait_full_view(qtbot, live)
    assert moved.request.region != region
    assert [layer for layer in viewer.layers if layer.metadata.get("napari_gan_preview")] == previews
    assert np.allclose(previews[1].translate, (moved.request.region.y0, moved.request.region.x0))
    assert not notes.errors()


def test_the_3d_view_pauses_live_and_the_2d_view_resumes_it(qtbot, viewer, gen_widget, monkeypatch):
    from napari_gan._widgets._live import PAUSED_3D

    slow_tiles(monkeypatch)
    stack = np.stack([smooth_image((160, 160), seed=k) for k in range(3)])
    gen_widget.input_layer.value = viewer.add_image(stack, name="stack")
    look_at(viewer, (80, 80), visible_rows=160)
    live = gen_widget.live
    seen = record_updates(monkeypatch, live)
    live.toggle.value = True
    qtbot.waitUntil(lambda: bool(seen), timeout=60_000)
    viewer.dims.ndisplay = 3                                    # while the view is being predicted
    qtbot.waitUntil(lambda: not live.running, timeout=60_000)
    preview = viewer.layers["stack live preview"]
    assert not preview.visible and gen_widget.status.value == PAUSED_3D
    assert not any(u.done == u.total for u in seen)             # the running prediction was cancelled
    started, shown = live.started, live.last_update
    camera(viewer).zoom *= 1.5                                   # moves in 3D start nothing
    camera(viewer).angles = (10, 20, 30)
    qtbot.wait(3 * live.timer.interval())
    assert live.started == started and live.last_update is shown and not live.running
    assert gen_widget.status.value == PAUSED_3D
    viewer.dims.ndisplay = 2                                    # back in 2D: shown and predicted again
    assert preview.visible
    update = wait_full_view(qtbot, live)
    assert live.started == started + 1 and update.request.lead_index == {"Z": viewer.dims.current_step[0]}
    assert viewer.layers["stack live preview"] is preview


def test_live_turned_on_in_3d_waits_and_off_shows_the_preview_again(qtbot, viewer, gen_widget):
    from napari_gan._widgets._live import PAUSED_3D

    gen_widget.input_layer.value = viewer.add_image(smooth_image((128, 128)), name="raw")
    live = gen_widget.live
    live.toggle.value = True
    wait_full_view(qtbot, live)
    live.toggle.value = False
    viewer.dims.ndisplay = 3
    started = live.started
    live.toggle.value = True
    qtbot.wait(3 * live.timer.interval())
    preview = viewer.layers["raw live preview"]
    assert live.started == started and not preview.visible and gen_widget.status.value == PAUSED_3D
    live.toggle.value = False                                  # off: the preview is the user's again
    assert preview.visible and not live.running
