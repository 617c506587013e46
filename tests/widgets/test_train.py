"""Training through the Train widget's own buttons, in a real viewer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import QCoreApplication, QEvent, QTimer

from napari_gan._widgets import _common

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
    assert train_widget.picker("input").value.name == "noisy"
    assert train_widget.picker("target").value.name == "clean"
    assert train_widget.picker("val_input").value is None          # optional inputs are not guessed
    # a choice made by the user is kept when layers come and go
    mine = viewer.add_image(noisy, name="my input")
    train_widget.picker("input").value = mine
    viewer.add_image(noisy, name="noisy 2")
    assert train_widget.picker("input").value is mine
    assert train_widget.picker("target").value.name == "clean"
    # StyleGAN2's single input is guessed too
    train_widget.model.value = "stylegan2"
    assert train_widget.picker("images").value.name == "noisy"


def test_training_runs_to_the_end_and_yields_model_and_preview(qtbot, viewer, train_widget, pair, tmp_path, notes):
    noisy, clean = pair
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(clean, name="clean")
    tiny_training(train_widget, tmp_path / "run", steps=4, preview_every=2)
    train_widget.train_button.native.click()
    assert train_widget.running and train_widget.stop_button.enabled
    assert not train_widget.train_button.enabled and not train_widget.model.enabled
    assert "Preparing" in train_widget.status.value
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
    from napari_gan.core.checkpoint import read_header

    noisy, clean = pair
    viewer.add_image(noisy, name="noisy")
    viewer.add_image(clean, name="clean")
    assert train_widget.field("normalize").value == "auto"
    train_widget.field("normalize").value = "image"          # each image by its own range
    tiny_training(train_widget, tmp_path / "run", steps=2, preview_every=2)
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    header = read_header(tmp_path / "run" / "model.safetensors")
    assert header.normalization["input"]["per_image"]


def test_stop_mid_training_then_resume(qtbot, viewer, train_widget, pair, tmp_path, notes, monkeypatch):
    monkeypatch.setitem(_common._renderer, "name", "nvidia geforce rtx")   # as on a desktop with a GPU
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
    assert len(bars) == 1                                 # shown in napari's activity dock (a GPU draws)
    train_widget.stop_button.native.click()
    assert "Stopping" in train_widget.status.value
    wait_idle(qtbot, train_widget)
    event = train_widget.last_event
    assert event.kind == "done" and event.message == "stopped" and event.step < 100_000
    assert not [p for p in progress._all_instances if str(p.desc).startswith("napari-gan")]
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert any("stopped" in m and "model.safetensors" in m for m in notes.infos())
    stopped_at = event.step

    # Train again into the same folder is refused (by the job: folder rules are the core's); Resume continues it.
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    assert "already holds a training run" in notes.errors()[-1]
    assert "saved so far" not in notes.errors()[-1]          # nothing had started
    train_widget.field("steps").value = stopped_at + 2
    train_widget.model.value = "stylegan2"               # resuming needs the run's own family
    train_widget.out_dir.value = str(tmp_path / "run")
    train_widget.picker("images").value = viewer.layers["noisy"]
    train_widget.resume_button.native.click()
    wait_idle(qtbot, train_widget)
    assert "is a pix2pix run, not stylegan2" in notes.errors()[-1]
    train_widget.model.value = "pix2pix"
    train_widget.field("task").value = "sr"              # the run's own configuration is read back
    train_widget.field("scale").value = 2
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
    tiny_training(train_widget, tmp_path / "sr", steps=2, preview_every=2, task="sr", scale=2)
    train_widget.picker("input").value = viewer.layers["low"]
    train_widget.picker("target").value = viewer.layers["high"]
    train_widget.picker("val_input").value = v_low
    train_widget.picker("val_target").value = v_high
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    preview = viewer.layers["low preview"]
    assert preview.data.shape == (64, 64)             # validation crop at target resolution
    assert tuple(preview.scale) == (1, 1)
    assert np.allclose(preview.translate, (100, 0))   # lies on the validation target
    from napari_gan.core.checkpoint import read_header

    assert read_header(tmp_path / "sr").architecture["scale"] == 2


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


def test_run_folder_default_follows_the_family_but_a_chosen_folder_is_kept(train_widget, tmp_path):
    assert Path(train_widget.out_dir.value).name.startswith("pix2pix-")
    train_widget.model.value = "stylegan2"
    assert Path(train_widget.out_dir.value).name.startswith("stylegan2-")
    train_widget.out_dir.value = str(tmp_path / "mine")
    train_widget.model.value = "pix2pix"
    assert str(train_widget.out_dir.value) == str(tmp_path / "mine")


def test_device_choice_shows_the_device(train_widget):
    labels = [train_widget.device.native.itemText(i) for i in range(train_widget.device.native.count())]
    assert labels[0].startswith("auto: ") and "CPU" in labels


def test_stylegan2_from_a_stack(qtbot, viewer, train_widget, tmp_path, notes):
    from napari_gan.core.samples import synthetic_nuclei

    viewer.add_image(synthetic_nuclei(8, 32), name="nuclei", scale=(1, 0.2, 0.2))
    train_widget.model.value = "stylegan2"
    pix2pix, stylegan2 = train_widget.forms["pix2pix"], train_widget.forms["stylegan2"]
    assert pix2pix.inputs.native.isHidden() and pix2pix.settings.basic.native.isHidden()
    assert not stylegan2.inputs.native.isHidden() and not train_widget.field("resolution").native.isHidden()
    assert train_widget.picker("images").label == "Images"
    assert train_widget.field("batch").value == 0 and train_widget.field("batch").native.lineEdit().text() == "auto"
    train_widget.picker("images").value = viewer.layers["nuclei"]
    for name, value in dict(resolution=16, batch=2, steps=2, val_every=2, log_every=1).items():
        train_widget.field(name).value = value
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
    from napari_gan.core.checkpoint import read_header

    assert read_header(tmp_path / "sg2").family == "stylegan2"
    train_widget.field("steps").value = 3                 # Resume continues the same run
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
    qtbot.waitUntil(lambda: widget.trainer is not None and widget.trainer.step >= 2, timeout=60_000)
    trainer = widget.trainer
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
    qtbot.waitUntil(lambda: widget.trainer is not None and widget.trainer.step >= 2, timeout=60_000)
    trainer = widget.trainer
    widget.deleteLater()                # e.g. the viewer window is closed
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert trainer.stopped
    qtbot.waitUntil(lambda: (tmp_path / "run" / "training_state.safetensors").is_file(), timeout=60_000)
    qtbot.wait(300)
    viewer.add_image(pair[0], name="added later")     # the deleted widget no longer listens
    viewer.layers.remove(viewer.layers["noisy"])
    assert not notes.errors()


def test_stop_while_the_run_is_prepared_cancels_it(qtbot, monkeypatch, viewer, train_widget, pair, tmp_path, notes):
    import threading

    from napari_gan.core import runs

    release = threading.Event()
    start = runs.start

    def slow_start(*args, **kwargs):           # a preparation that takes until the test says so
        release.wait(30)
        return start(*args, **kwargs)

    monkeypatch.setattr(runs, "start", slow_start)
    viewer.add_image(pair[0], name="noisy")
    viewer.add_image(pair[1], name="clean")
    tiny_training(train_widget, tmp_path / "run", steps=100_000)
    train_widget.train_button.native.click()
    assert train_widget.running and train_widget.trainer is None
    train_widget.stop_button.native.click()
    assert "Stopping" in train_widget.status.value and not train_widget.stop_button.enabled
    release.set()
    wait_idle(qtbot, train_widget)
    assert "cancelled before it started" in train_widget.status.value
    assert any("cancelled" in m for m in notes.infos()) and not notes.errors()
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert train_widget.train_button.enabled


def test_lazy_and_multiscale_layers_are_read_in_the_worker(qtbot, viewer, train_widget, pair, tmp_path, notes):
    import threading

    import dask.array as da

    noisy, clean = pair
    read_on_gui_thread = []

    def note_thread(block):
        read_on_gui_thread.append(threading.current_thread() is threading.main_thread())
        return block

    lazy_clean = da.from_array(clean, chunks=32).map_blocks(note_thread, dtype=clean.dtype)
    viewer.add_image([noisy, noisy[::2, ::2]], name="noisy", multiscale=True)   # level 0 is trained on
    viewer.add_image(lazy_clean, name="clean", contrast_limits=(0, 255))
    qtbot.wait(100)
    read_on_gui_thread.clear()                 # napari itself reads what it displays
    tiny_training(train_widget, tmp_path / "run", steps=2, preview_every=2)
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    assert not notes.errors(), notes.errors()
    assert train_widget.last_event.kind == "done"
    assert read_on_gui_thread and not any(read_on_gui_thread)
    assert viewer.layers["noisy preview"].data.ndim == 2


def test_previews_are_rate_limited_but_the_last_is_always_shown(train_widget, monkeypatch):
    """Each preview redraws napari's canvas (seconds of CPU with software OpenGL): the first one
    shows at once, later ones at most every PREVIEW_INTERVAL_S, the final one always."""
    from napari_gan._widgets import _train

    clock = [100.0]
    monkeypatch.setattr(_train.time, "monotonic", lambda: clock[0])
    assert train_widget._preview_due(final=False)
    train_widget._preview_shown_at = clock[0]
    clock[0] += _train.PREVIEW_INTERVAL_S / 2
    assert not train_widget._preview_due(final=False)
    assert train_widget._preview_due(final=True)
    clock[0] += _train.PREVIEW_INTERVAL_S / 2
    assert train_widget._preview_due(final=False)
