"""Training through the Train widget's own buttons, in a real viewer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import QCoreApplication, QEvent, QTimer

from .conftest import smooth_image, tiny_training, wait_idle


@pytest.fixture
def train_widget(viewer):
    from napari_gan._widgets import TrainWidget

    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    return widget


def test_layers_are_guessed_from_names(viewer, train_widget, pair):
    noisy, clean = pair
    viewer.add_image(clean, name="clean")
    viewer.add_image(noisy, name="noisy")
    assert train_widget.input_layer.value.name == "noisy"
    assert train_widget.target_layer.value.name == "clean"
    # a choice made by the user is kept when layers come and go
    mine = viewer.add_image(noisy, name="my input")
    train_widget.input_layer.value = mine
    viewer.add_image(noisy, name="noisy 2")
    assert train_widget.input_layer.value is mine
    assert train_widget.target_layer.value.name == "clean"


def test_training_runs_to_the_end_and_yields_model_and_preview(qtbot, viewer, train_widget, pair, tmp_path, notes):
    noisy, clean = pair
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(clean, name="clean")
    tiny_training(train_widget, tmp_path / "run", steps=4, preview_every=2)
    train_widget.train_button.native.click()
    assert train_widget.running and train_widget.stop_button.enabled
    assert not train_widget.train_button.enabled
    wait_idle(qtbot, train_widget)
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "training_state.safetensors").is_file()
    event = train_widget.last_event
    assert event.kind == "done" and event.step == 4
    preview = viewer.layers["noisy preview"]
    assert preview.data.ndim == 2 and preview.metadata["napari_gan_preview"]
    assert tuple(preview.translate) == (64 - round(64 * 0.2), 0)   # on the validation rows
    assert set(train_widget.plot.losses) >= {"l1"}
    assert len(train_widget.plot.metrics["val_psnr"][0]) >= 2
    assert train_widget.progress_bar.value() == train_widget.progress_bar.maximum()
    assert any(str(tmp_path / "run" / "model.safetensors") in m for m in notes.infos())
    assert "finished" in train_widget.status.value
    assert train_widget.train_button.enabled and not train_widget.stop_button.enabled
    # the user's layers are untouched
    assert viewer.layers["noisy"].data is noisy and viewer.layers["clean"].data is clean


def test_input_normalisation_choice_reaches_the_model(qtbot, viewer, train_widget, pair, tmp_path):
    from napari_gan.core.checkpoint import load

    noisy, clean = pair
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(clean, name="clean")
    assert train_widget.normalization.value == "auto"
    train_widget.normalization.value = "image"          # each image by its own range
    tiny_training(train_widget, tmp_path / "run", steps=2, preview_every=2)
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    header = load(tmp_path / "run" / "model.safetensors")
    assert header.normalization["input"]["per_image"]


def test_stop_mid_training_then_resume(qtbot, viewer, train_widget, pair, tmp_path, notes):
    noisy, clean = pair
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(clean, name="clean")
    tiny_training(train_widget, tmp_path / "run", steps=100_000, preview_every=50)
    train_widget.train_button.native.click()
    qtbot.waitUntil(lambda: train_widget.last_event is not None and train_widget.last_event.step >= 2,
                    timeout=60_000)
    from napari.utils.progress import progress

    qtbot.waitUntil(lambda: "ETA" in train_widget.status.value, timeout=30_000)   # refreshed 4x a second
    assert "images/s" in train_widget.status.value and "step" in train_widget.status.value
    bars = [p for p in progress._all_instances if str(p.desc).startswith("napari-gan: training")]
    assert len(bars) == 1                                 # shown in napari's activity dock
    train_widget.stop_button.native.click()
    assert "Stopping" in train_widget.status.value
    wait_idle(qtbot, train_widget)
    event = train_widget.last_event
    assert event.kind == "done" and event.message == "stopped" and event.step < 100_000
    assert not [p for p in progress._all_instances if str(p.desc).startswith("napari-gan")]
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert any("stopped" in m and "model.safetensors" in m for m in notes.infos())
    stopped_at = event.step

    # Train again into the same folder is refused; Resume continues it.
    train_widget.train_button.native.click()
    assert not train_widget.running
    assert any("already holds a training run" in m for m in notes.errors())
    train_widget.steps.value = stopped_at + 2
    train_widget.model_kind.value = "pix2pix-sr2"        # resuming needs the run's own kind
    train_widget.out_dir.value = str(tmp_path / "run")
    train_widget.resume_button.native.click()
    assert not train_widget.running and "choose that model kind" in notes.errors()[-1]
    train_widget.model_kind.value = "pix2pix-denoise"
    train_widget.resume_button.native.click()
    assert train_widget.running
    wait_idle(qtbot, train_widget)
    assert train_widget.last_event.kind == "done" and train_widget.last_event.step == stopped_at + 2


def test_super_resolution_with_validation_layers(qtbot, viewer, train_widget, tmp_path):
    from napari_gan.core.data import blur_downsample

    high = smooth_image((96, 96), seed=2)
    low = blur_downsample(high, 2)
    val_high = smooth_image((64, 64), seed=3)
    val_low = blur_downsample(val_high, 2)
    viewer.add_image(low, name="low", scale=(2, 2), translate=(0.5, 0.5))
    viewer.add_image(high, name="high")
    v_low = viewer.add_image(val_low, name="val low", scale=(2, 2), translate=(100.5, 0.5))
    v_high = viewer.add_image(val_high, name="val high", translate=(100, 0))
    train_widget.model_kind.value = "pix2pix-sr2"
    tiny_training(train_widget, tmp_path / "sr", steps=2, preview_every=2)
    train_widget.input_layer.value = viewer.layers["low"]
    train_widget.target_layer.value = viewer.layers["high"]
    train_widget.val_input_layer.value = v_low
    train_widget.val_target_layer.value = v_high
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    preview = viewer.layers["low preview"]
    assert preview.data.shape == (64, 64)             # validation crop at target resolution
    assert tuple(preview.scale) == (1, 1)
    assert np.allclose(preview.translate, (100, 0))   # lies on the validation target
    from napari_gan.core.checkpoint import load

    assert load(tmp_path / "sr").config["scale"] == 2


def test_viewer_stays_responsive_while_training(qtbot, viewer, train_widget, pair, tmp_path):
    noisy, clean = pair
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(clean, name="clean")
    tiny_training(train_widget, tmp_path / "run", steps=100_000, preview_every=1000)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    train_widget.train_button.native.click()
    try:
        qtbot.waitUntil(lambda: train_widget.last_event is not None and train_widget.last_event.step >= 3,
                        timeout=60_000)
        viewer.camera.zoom = 3.0              # zoom and pan while it trains
        viewer.camera.center = (10.0, 20.0)
        qtbot.wait(300)
        assert train_widget.running
        assert viewer.camera.zoom == pytest.approx(3.0)
        assert tuple(viewer.camera.center)[-2:] == pytest.approx((10.0, 20.0))
    finally:
        train_widget.stop_button.native.click()
        wait_idle(qtbot, train_widget)
        timer.stop()
    gaps = np.diff(ticks)
    assert len(ticks) > 10 and gaps.max() < 2.0   # the GUI thread never blocked for long


def test_run_folder_default_follows_the_kind_but_a_chosen_folder_is_kept(train_widget, tmp_path):
    assert "pix2pix-denoise-" in str(train_widget.out_dir.value)
    train_widget.model_kind.value = "stylegan2"
    assert "stylegan2-" in str(train_widget.out_dir.value)
    train_widget.out_dir.value = str(tmp_path / "mine")
    train_widget.model_kind.value = "pix2pix-sr2"
    assert str(train_widget.out_dir.value) == str(tmp_path / "mine")


def test_device_choice_shows_the_device(train_widget):
    labels = [train_widget.device.native.itemText(i) for i in range(train_widget.device.native.count())]
    assert labels[0].startswith("auto: ") and "CPU" in labels


def test_stylegan2_from_a_stack(qtbot, viewer, train_widget, tmp_path, notes):
    from napari_gan.core.samples import synthetic_nuclei

    viewer.add_image(synthetic_nuclei(8, 32), name="nuclei", scale=(1, 0.2, 0.2))
    train_widget.model_kind.value = "stylegan2"
    assert train_widget.target_layer.native.isHidden() and not train_widget.resolution.native.isHidden()
    assert train_widget.input_layer.label == "Images"
    train_widget.input_layer.value = viewer.layers["nuclei"]
    train_widget.resolution.value = 16
    train_widget.sg_batch.value = 2
    train_widget.steps.value = 2
    train_widget.preview_every.value = 2
    train_widget.log_every.value = 1
    train_widget.device.value = "cpu"
    train_widget.out_dir.value = str(tmp_path / "sg2")
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    assert not notes.errors()
    event = train_widget.last_event
    assert event.kind == "done" and event.step == 2 and "swd" in event.metrics
    grid = viewer.layers["nuclei samples preview"]
    assert grid.data.ndim == 2 and grid.data.shape[0] % 16 == 0     # a sample grid
    assert tuple(grid.scale) == (0.2, 0.2)
    assert list(train_widget.plot.metrics) == ["swd"]
    assert set(train_widget.plot.losses) <= {"g", "d", "r1", "pl"} and "g" in train_widget.plot.losses
    assert "kimg" in train_widget.status.value
    from napari_gan.core.checkpoint import load

    assert load(tmp_path / "sg2").kind == "stylegan2"
    train_widget.steps.value = 3                          # Resume continues the same run
    train_widget.resume_button.native.click()
    wait_idle(qtbot, train_widget)
    assert not notes.errors()
    assert train_widget.last_event.kind == "done" and train_widget.last_event.step == 3


def test_closing_the_widget_while_training_stops_and_saves(qtbot, viewer, pair, tmp_path, notes):
    from napari_gan._widgets import TrainWidget

    widget = TrainWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="Train")
    viewer.add_image(pair[0], name="noisy")
    viewer.add_image(pair[1], name="clean")
    tiny_training(widget, tmp_path / "run", steps=100_000, preview_every=1000)
    widget.train_button.native.click()
    trainer = widget._trainer
    qtbot.waitUntil(lambda: trainer.step >= 2, timeout=60_000)
    dock.destroyOnClose()               # what the dock's close button does
    assert trainer.stopped
    wait_idle(qtbot, widget)
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "training_state.safetensors").is_file()
    assert any("stopped" in m and "model.safetensors" in m for m in notes.infos())
    assert not notes.errors()
    assert [layer.name for layer in viewer.layers][:2] == ["noisy", "clean"]


def test_deleting_the_widget_while_training_stops_the_trainer(qtbot, viewer, pair, tmp_path, notes):
    from napari_gan._widgets import TrainWidget

    widget = TrainWidget(viewer)
    viewer.add_image(pair[0], name="noisy")
    viewer.add_image(pair[1], name="clean")
    tiny_training(widget, tmp_path / "run", steps=100_000, preview_every=1000)
    widget.train_button.native.click()
    trainer = widget._trainer
    qtbot.waitUntil(lambda: trainer.step >= 2, timeout=60_000)
    widget.deleteLater()                # e.g. the viewer window is closed
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert trainer.stopped
    qtbot.waitUntil(lambda: (tmp_path / "run" / "training_state.safetensors").is_file(), timeout=60_000)
    qtbot.wait(300)
    viewer.add_image(pair[0], name="added later")     # the deleted widget no longer listens
    viewer.layers.remove(viewer.layers["noisy"])
    assert not notes.errors()
