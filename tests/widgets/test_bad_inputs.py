"""Bad input in the GUI: each case gives one clear napari notification (at once for what
the widget checks itself, from the worker for what the core checks), nothing freezes, and
the user's layers are left exactly as they were."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import smooth_image, tiny_training, wait_idle


@pytest.fixture
def train_widget(viewer, tmp_path):
    from napari_gan._widgets import TrainWidget

    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    tiny_training(widget, tmp_path / "run")
    return widget


def snapshot(viewer):
    return [(layer.name, layer.data, np.array(layer.data, copy=True)) for layer in viewer.layers]


def assert_unchanged(viewer, before):
    assert [layer.name for layer in viewer.layers] == [name for name, _, _ in before]
    for layer, (_, data, copy) in zip(viewer.layers, before):
        assert layer.data is data
        np.testing.assert_array_equal(np.asarray(layer.data), copy)


IMG = smooth_image((64, 64))


def _pair(viewer, inp, tgt):
    a = viewer.add_image(inp, name="input")
    b = viewer.add_image(tgt, name="target")
    return a, b


TRAIN_CASES = {
    "no layer": (lambda v: None, "No input layer chosen"),
    "no target": (lambda v: v.add_image(IMG, name="input"), "No target layer chosen"),
    "shapes differ": (lambda v: _pair(v, IMG, IMG[:48, :48]), "both must have the same size"),
    "stack lengths differ": (lambda v: _pair(v, np.stack([IMG] * 3), np.stack([IMG] * 2)), "3 input plane(s) but 2"),
    "rgb": (lambda v: _pair(v, np.stack([IMG] * 3, -1).astype(np.uint8), IMG), "RGB"),
    "labels": (lambda v: (v.add_labels((IMG > 100).astype(np.uint8), name="input"),
                          v.add_image(IMG, name="target")), "labels layer"),
    "constant": (lambda v: _pair(v, IMG, np.full((64, 64), 7.0, np.float32)), "constant"),
    "blank": (lambda v: _pair(v, np.zeros((64, 64), np.float32), IMG), "constant"),
    "too small": (lambda v: _pair(v, IMG[:6, :6], IMG[:6, :6]), "at least 8x8"),
    "nan": (lambda v: _pair(v, np.where(IMG > 150, np.nan, IMG).astype(np.float32), IMG), "NaN"),
}


def test_train_bad_inputs_are_notifications(qtbot, viewer, train_widget, notes):
    """One viewer for every case (each case starts from an empty layer list)."""
    problems = []
    for case, (make, expected) in TRAIN_CASES.items():
        viewer.layers.clear()
        seen = len(notes.errors())
        make(viewer)
        if case == "labels":
            train_widget.picker("input").value = viewer.layers["input"]
            train_widget.picker("target").value = viewer.layers["target"]
        before = snapshot(viewer)
        train_widget.train_button.native.click()
        wait_idle(qtbot, train_widget)
        errors = notes.errors()[seen:]
        if len(errors) != 1 or expected not in errors[0] or "Traceback" in errors[0]:
            problems.append(f"{case}: running={train_widget.running}, errors={errors}")
        if not train_widget.train_button.enabled:
            problems.append(f"{case}: Train button left disabled")
        assert_unchanged(viewer, before)
    assert not problems, "\n".join(problems)


def test_train_same_layer_twice(viewer, train_widget, notes):
    layer = viewer.add_image(IMG, name="image")
    viewer.add_image(IMG, name="other")
    train_widget.picker("input").value = layer
    train_widget.picker("target").value = layer
    train_widget.train_button.native.click()
    assert not train_widget.running and "same layer" in notes.errors()[0]


def test_train_validation_layers_come_in_pairs(viewer, train_widget, notes, pair):
    _pair(viewer, *pair)
    train_widget.picker("val_input").value = viewer.add_image(pair[0], name="validation")
    train_widget.train_button.native.click()
    assert not train_widget.running and "or neither" in notes.errors()[0]


def test_train_needs_a_folder(viewer, train_widget, notes, pair):
    _pair(viewer, *pair)
    train_widget.out_dir.line_edit.value = ""      # the user cleared the field
    train_widget.train_button.native.click()
    assert not train_widget.running and "Save to" in notes.errors()[0]


def test_train_super_resolution_with_wrong_ratio(qtbot, viewer, train_widget, notes):
    _pair(viewer, IMG[:32, :32], IMG)           # x2 ratio but x4 model chosen
    train_widget.field("task").value = "sr"
    train_widget.field("scale").value = 4
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    assert "for 4x super-resolution the target must be 128x128" in notes.errors()[0]


def test_denoising_with_a_scale_is_refused(qtbot, viewer, train_widget, notes, pair):
    _pair(viewer, *pair)
    train_widget.field("scale").value = 2
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    assert len(notes.errors()) == 1 and "Denoising keeps the image size" in notes.errors()[0]


def test_resume_without_a_saved_run(qtbot, viewer, train_widget, notes, pair):
    _pair(viewer, *pair)
    train_widget.resume_button.native.click()
    wait_idle(qtbot, train_widget)
    assert "Nothing to resume" in notes.errors()[0]


def test_stylegan2_with_too_few_images(qtbot, viewer, train_widget, notes):
    viewer.add_image(IMG[:20, :20], name="tiny")
    train_widget.model.value = "stylegan2"
    train_widget.field("resolution").value = 16
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    assert "Too few images" in notes.errors()[0]


def test_out_of_memory_during_training(qtbot, monkeypatch, viewer, train_widget, notes, pair):
    import torch

    from napari_gan.core.families.pix2pix import Pix2PixTrainer

    def oom(self, fraction):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Pix2PixTrainer, "train_step", oom)
    _pair(viewer, *pair)
    before = snapshot(viewer)
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    errors = notes.errors()
    assert len(errors) == 1 and "ran out of memory" in errors[0] and "batch" in errors[0]
    assert train_widget.train_button.enabled and not train_widget.stop_button.enabled
    assert_unchanged(viewer, before)


# ------------------------------------------------------------------------ Generate Data
def test_generate_without_a_model(viewer, gen_widget, notes):
    viewer.add_image(IMG, name="raw")
    gen_widget.run_button.native.click()
    assert "No model chosen" in notes.errors()[0]


def test_generate_with_a_missing_or_foreign_model(viewer, gen_widget, notes, tmp_path, pix2pix_models):
    import torch
    from safetensors.torch import save_file

    viewer.add_image(IMG, name="raw")
    before = snapshot(viewer)
    cases = {"missing": "does not exist", "text": "not a readable napari-gan model file",
             "foreign safetensors": "not a napari-gan model", "training state": "not a model"}
    problems = []
    for kind, expected in cases.items():
        path = tmp_path / kind.replace(" ", "_") / "model.safetensors"
        path.parent.mkdir()
        if kind == "text":
            path.write_text("hello")
        elif kind == "foreign safetensors":
            save_file({"w": torch.zeros(3)}, str(path))
        elif kind == "training state":
            path = pix2pix_models["denoise"].parent / "training_state.safetensors"
        seen = len(notes.errors())
        gen_widget.model_path.value = path
        if kind != "training state" and gen_widget.family is not None:
            problems.append(f"{kind}: detected as {gen_widget.family.name}")
        gen_widget.run_button.native.click()
        errors = notes.errors()[seen:]
        if gen_widget.running or len(errors) != 1 or expected not in errors[0]:
            problems.append(f"{kind}: running={gen_widget.running}, errors={errors}")
    assert not problems, "\n".join(problems)
    assert_unchanged(viewer, before)


GENERATE_CASES = {
    "no layer": (lambda v: None, "No input layer chosen"),
    "labels": (lambda v: v.add_labels((IMG > 100).astype(np.uint8), name="raw"), "labels layer"),
    "rgb": (lambda v: v.add_image(np.stack([IMG] * 3, -1).astype(np.uint8), name="raw"), "RGB"),
    "nan": (lambda v: v.add_image(np.where(IMG > 150, np.nan, IMG).astype(np.float32), name="raw"), "NaN"),
}


def test_generate_bad_inputs_are_notifications(qtbot, viewer, gen_widget, notes, pix2pix_models):
    gen_widget.model_path.value = pix2pix_models["denoise"]
    problems = []
    for case, (make, expected) in GENERATE_CASES.items():
        viewer.layers.clear()
        seen = len(notes.errors())
        make(viewer)
        if len(viewer.layers):
            gen_widget.input_layer.value = viewer.layers["raw"]
        before = snapshot(viewer)
        gen_widget.run_button.native.click()
        wait_idle(qtbot, gen_widget)
        errors = notes.errors()[seen:]
        if len(errors) != 1 or expected not in errors[0]:
            problems.append(f"{case}: errors={errors}")
        assert_unchanged(viewer, before)
    assert not problems, "\n".join(problems)


def test_generate_image_too_small(qtbot, viewer, gen_widget, notes, pix2pix_models):
    viewer.add_image(IMG[:3, :3], name="raw")
    gen_widget.model_path.value = pix2pix_models["denoise"]
    gen_widget.input_layer.value = viewer.layers["raw"]
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    assert "too small" in notes.errors()[0]
    assert len(viewer.layers) == 1


def test_generate_constant_image_warns_but_works(qtbot, viewer, gen_widget, notes, pix2pix_models):
    viewer.add_image(np.full((40, 40), 5.0, np.float32), name="raw")
    gen_widget.model_path.value = pix2pix_models["denoise"]
    gen_widget.input_layer.value = viewer.layers["raw"]
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    assert any("constant" in m for m in notes.warnings())
    assert viewer.layers[-1].name == "raw denoised"


def test_generate_save_path_must_be_tiff(viewer, gen_widget, notes, pix2pix_models, tmp_path):
    viewer.add_image(IMG, name="raw")
    gen_widget.model_path.value = pix2pix_models["denoise"]
    gen_widget.input_layer.value = viewer.layers["raw"]
    gen_widget.save.value = True
    gen_widget.save_path.value = tmp_path / "out.png"
    gen_widget.run_button.native.click()
    assert "not a TIFF name" in notes.errors()[0]


def test_generate_out_of_memory(qtbot, monkeypatch, viewer, gen_widget, notes, pix2pix_models):
    import torch

    from napari_gan.core.inference import Predictor

    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    monkeypatch.setattr(Predictor, "predict", oom)
    viewer.add_image(IMG, name="raw")
    gen_widget.model_path.value = pix2pix_models["denoise"]
    gen_widget.input_layer.value = viewer.layers["raw"]
    before = snapshot(viewer)
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    errors = notes.errors()
    assert len(errors) == 1 and "ran out of memory" in errors[0] and "tile size" in errors[0]
    assert gen_widget.run_button.enabled
    assert_unchanged(viewer, before)
