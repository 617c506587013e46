"""Conditional generation in napari: Pix2Pix from Labels layers (training and Generate Data),
the class picker of class-conditional StyleGAN2 models, Project Image and Synthetic Data Set.

The models are tiny (a few feature maps, one training step) and made once per module."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from .conftest import tiny_training, wait_idle

CPU = torch.device("cpu")
LABELS_TINY = dict(depth=2, width=4, disc_width=4, disc_layers=2, patch=16, batch=1, val_fraction=0.0)
STYLEGAN2_TINY = dict(resolution=16, channel_base=128, channel_max=16, z_dim=16, w_dim=16, batch=4,
                      eval_images=8, size="small")


def cells(shift: int = 0, size: int = 48) -> np.ndarray:
    """Instance labels: three rectangles, two of them touching."""
    lab = np.zeros((size, size), np.uint16)
    lab[5:15, 5:15] = 11
    lab[5:15, 15:22] = 4
    lab[28:40, 25:40] = 9
    return np.roll(lab, shift, axis=1)


def image_of(mask: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (100 + 500 * (mask > 0) + rng.normal(0, 10, mask.shape)).astype(np.float32)


def _train(family_name: str, values: dict, images: dict, out):
    from napari_gan.core import families
    from napari_gan.core.training.base import Budget

    family = families.get(family_name)
    trainer = family.make_trainer(family.make_config(values, CPU), images, out, Budget(steps=1), CPU, 0, None)
    for _ in trainer.run():
        pass
    return out / "model.safetensors"


@pytest.fixture(scope="module")
def labels_model(tmp_path_factory):
    """A Pix2Pix model of images from instance label images."""
    from napari_gan.core.families import Images

    masks = [cells(5 * i) for i in range(2)]
    names = [f"'m{i}'" for i in range(2)]
    images = {"input": Images([m[None] for m in masks], names),
              "target": Images([image_of(m, i)[None] for i, m in enumerate(masks)], names)}
    return _train("pix2pix", dict(task="labels", **LABELS_TINY), images, tmp_path_factory.mktemp("labels") / "run")


@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    """A class-conditional StyleGAN2 model of two classes, 'bright' and 'dim'."""
    from napari_gan.core.families.stylegan2 import ClassedImages
    from napari_gan.core.samples import synthetic_nuclei

    stack = synthetic_nuclei(8, 16).astype(np.float32)
    planes = [p[None] for p in stack[:4]] + [p[None] / 4 for p in stack[4:]]
    images = ClassedImages(planes, [f"'{i}'" for i in range(8)], classes=["bright"] * 4 + ["dim"] * 4)
    return _train("stylegan2", dict(classes=True, **STYLEGAN2_TINY), {"images": images},
                  tmp_path_factory.mktemp("classes") / "run")


def _widget(viewer, name):
    import napari_gan._widgets as widgets

    widget = getattr(widgets, name)(viewer)
    viewer.window.add_dock_widget(widget, name=name)
    if hasattr(widget, "device"):
        widget.device.value = "cpu"
    return widget


@pytest.fixture
def train_widget(viewer):
    return _widget(viewer, "TrainWidget")


@pytest.fixture
def gen_widget(viewer):
    return _widget(viewer, "GenerateWidget")


def _one_error(qtbot, widget, notes, expected: str) -> None:
    """Press the widget's button: exactly one error notification saying ``expected``, the
    widget idle again, napari alive."""
    seen = len(notes.errors())
    button = widget.train_button if hasattr(widget, "train_button") else widget.run_button
    button.native.click()
    wait_idle(qtbot, widget)
    errors = notes.errors()[seen:]
    assert len(errors) == 1 and expected in errors[0], errors
    assert button.enabled


# ------------------------------------------------------------------------ training
def test_training_from_a_labels_layer(qtbot, viewer, train_widget, tmp_path, notes):
    from napari_gan.core import checkpoint

    mask = cells()
    image = viewer.add_image(image_of(mask), name="cells")
    labels = viewer.add_labels(mask, name="segmentation")
    train_widget.field("task").value = "labels"
    picker = train_widget.picker("input")
    assert picker.choices[1] is labels                       # Labels layers first for a labels input (after None)
    assert picker.value is labels and train_widget.picker("target").value is image
    tiny_training(train_widget, tmp_path / "run", steps=2, preview_every=2)
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    assert not notes.errors()
    header = checkpoint.read_header(tmp_path / "run" / "model.safetensors")
    assert header.architecture["task"] == "labels" and header.architecture["in_channels"] == 4
    assert viewer.layers["segmentation preview"].data.ndim == 2
    assert labels.data is mask                               # the user's layer is untouched


def test_training_refuses_bad_label_inputs(qtbot, viewer, train_widget, tmp_path, notes):
    mask = cells()
    target = viewer.add_image(image_of(mask), name="cells")
    train_widget.field("task").value = "labels"
    tiny_training(train_widget, tmp_path / "run", steps=1)
    cases = [(viewer.add_image(mask.astype(np.float32), name="float mask"), "float32 image"),
             (viewer.add_labels(mask[:40], name="short mask"), "40x48 pixels but its image is 48x48"),
             (viewer.add_labels(np.zeros_like(mask), name="empty mask"), "has no objects")]
    for layer, expected in cases:
        train_widget.picker("input").value = layer
        train_widget.picker("target").value = target
        _one_error(qtbot, train_widget, notes, expected)
    assert not (tmp_path / "run" / "model.safetensors").exists()
    # an integer image layer is a label image too
    train_widget.picker("input").value = viewer.add_image(mask.astype(np.int32), name="int mask")
    train_widget.field("steps").value = 1
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_class_conditional_stylegan2_from_one_layer_per_class(qtbot, viewer, train_widget, tmp_path, notes):
    from napari_gan.core.checkpoint import read_header
    from napari_gan.core.samples import synthetic_nuclei

    stack = synthetic_nuclei(8, 16).astype(np.float32)
    bright = viewer.add_image(stack[:4], name="bright")
    dim = viewer.add_image(stack[4:] / 4, name="dim")
    train_widget.model.value = "stylegan2"
    classes = train_widget.current.class_layers
    assert set(classes.choices) == {bright, dim}
    tiny = dict(resolution=16, batch=2, steps=1, val_every=1, log_every=1, channel_base=128, channel_max=16,
                z_dim=16, eval_images=8)
    for name, value in tiny.items():
        train_widget.field(name).value = value
    train_widget.device.value = "cpu"
    train_widget.out_dir.value = str(tmp_path / "classes")
    classes.value = [bright]
    _one_error(qtbot, train_widget, notes, "needs at least 2 layers")
    classes.value = [bright, dim]
    train_widget.train_button.native.click()
    wait_idle(qtbot, train_widget)
    assert len(notes.errors()) == 1                          # the one above
    header = read_header(tmp_path / "classes")
    assert header.architecture["class_names"] == ["bright", "dim"] and header.architecture["c_dim"] == 2


# ------------------------------------------------------------------------ Generate Data
def test_generate_from_a_drawn_labels_layer(qtbot, viewer, gen_widget, labels_model, notes):
    viewer.add_image(np.zeros((40, 56), np.float32), name="background")
    drawn = viewer.add_labels(np.zeros((40, 56), np.uint8), name="drawn", scale=(2, 2), translate=(5, 7))
    drawn.data[10:20, 10:25] = 1            # as the brush leaves it
    drawn.data[25:35, 30:45] = 2
    gen_widget.model_path.value = labels_model
    assert "label images" in gen_widget.model_info.value
    assert gen_widget.input_layer.choices[1] is drawn            # Labels layers first (after None)
    gen_widget.input_layer.value = drawn
    assert gen_widget.channel_axis.native.isHidden()
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    assert not notes.errors()
    out = viewer.layers["drawn image"]
    assert out.data.shape == (40, 56) and out.data.dtype == np.float32 and np.isfinite(out.data).all()
    assert tuple(out.scale) == (2, 2) and tuple(out.translate) == (5, 7)
    assert out.colormap.name == "gray"


def test_generate_input_lists_labels_layers_first_for_a_labels_model(viewer, gen_widget, labels_model,
                                                                     pix2pix_models):
    def names():
        return [layer.name for layer in gen_widget.input_layer.choices[1:]]     # after None

    gen_widget.model_path.value = pix2pix_models["denoise"]
    viewer.add_image(image_of(cells()), name="cells")
    viewer.add_labels(cells(), name="mask")
    chosen = viewer.add_image(image_of(cells(3)), name="later")                 # an image added last
    gen_widget.input_layer.value = chosen
    assert names() == ["cells", "mask", "later"]                                # an image model: the viewer's order
    gen_widget.model_path.value = labels_model
    assert names() == ["mask", "cells", "later"] and gen_widget.input_layer.value is chosen
    viewer.add_labels(cells(9), name="more")                                    # layers added after the model
    assert names() == ["mask", "more", "cells", "later"]
    gen_widget.model_path.value = pix2pix_models["denoise"]
    assert names() == ["cells", "mask", "later", "more"] and gen_widget.input_layer.value is chosen


def test_generate_refuses_bad_masks(qtbot, viewer, gen_widget, labels_model, notes):
    gen_widget.model_path.value = labels_model
    cases = [(viewer.add_labels(np.zeros((40, 40), np.uint8), name="empty"), "'empty' has no objects"),
             (viewer.add_image(cells().astype(np.float32), name="float"), "float32 image"),
             (viewer.add_labels(cells()[:3, :3] + 1, name="tiny"), "too small")]
    for layer, expected in cases:
        gen_widget.input_layer.value = layer
        _one_error(qtbot, gen_widget, notes, expected)
    assert len(viewer.layers) == 3


# ------------------------------------------------------------------------ classes
def test_class_picker_lists_the_classes_and_generation_per_class_is_deterministic(
        qtbot, viewer, gen_widget, class_model, stylegan2_model, pix2pix_models, notes):
    from napari_gan.core.generation import load_generator

    gen_widget.model_path.value = class_model
    assert not gen_widget.class_box.native.isHidden()
    assert gen_widget.class_name.choices == (None, "bright", "dim")
    gen_widget.field("n").value = 3
    gen_widget.field("seed").value = 4
    results, names = [], []
    for name in ("dim", "dim", "bright", None):
        gen_widget.class_name.value = name
        gen_widget.run_button.native.click()
        wait_idle(qtbot, gen_widget)
        results.append(np.asarray(gen_widget.last_layer.data))
        names.append(gen_widget.last_layer.name)
    assert not notes.errors()
    assert names[0].startswith("run generated dim (seed 4)") and "bright" in names[2]
    assert np.array_equal(results[0], results[1]) and not np.allclose(results[0], results[2])
    expected = load_generator(class_model, "cpu").generate(3, seed=4, class_name="dim")
    np.testing.assert_allclose(results[0], expected, rtol=1e-4, atol=1e-3)
    mixed = load_generator(class_model, "cpu").generate(3, seed=4)     # image i of class i mod 2
    np.testing.assert_allclose(results[3], mixed, rtol=1e-4, atol=1e-3)
    # another model: its own classes (none here), refreshed
    gen_widget.model_path.value = stylegan2_model
    assert gen_widget.class_box.native.isHidden() and "class_name" not in gen_widget.values()
    gen_widget.model_path.value = pix2pix_models["denoise"]
    assert gen_widget.class_box.native.isHidden()


# ------------------------------------------------------------------------ Project Image
def test_project_a_stack_saves_latents_and_morphs(qtbot, viewer, class_model, tmp_path, notes):
    from napari_gan.core.generation import load_generator

    widget = _widget(viewer, "ProjectWidget")
    real = load_generator(class_model, "cpu").generate(2, seed=7, class_name="bright")
    layer = viewer.add_image(real, name="cells", scale=(1, 0.5, 0.5))
    widget.model_path.value = class_model
    assert not widget.class_name.native.isHidden() and widget.class_name.choices == (None, "bright", "dim")
    widget.class_name.value = "bright"
    widget.image_layer.value = layer
    widget.field("steps").value = 5
    widget.morph.value = True
    widget.frames.value = 3
    widget.latents_path.value = tmp_path / "cells.npy"
    widget.run_button.native.click()
    wait_idle(qtbot, widget)
    assert not notes.errors()
    out = viewer.layers["cells projected"]
    assert out.data.shape == (2, 16, 16) and tuple(out.scale) == (1, 0.5, 0.5)
    assert viewer.layers["cells morph"].data.shape == (3, 16, 16)
    styles = np.load(tmp_path / "cells.npy")
    assert styles.ndim == 3 and styles.shape[0] == 2
    np.testing.assert_allclose(load_generator(class_model, "cpu").generate_from_latents(styles), out.data,
                               rtol=1e-4, atol=1e-3)


def test_project_refuses_bad_input(qtbot, viewer, stylegan2_model, labels_model, tmp_path, notes):
    widget = _widget(viewer, "ProjectWidget")
    widget.model_path.value = stylegan2_model
    widget.image_layer.value = viewer.add_image(np.zeros((20, 20), np.float32), name="big")
    _one_error(qtbot, widget, notes, "'big' is 20x20 pixels but the model makes 16x16 images")
    widget.image_layer.value = viewer.add_image(np.ones((16, 16), np.float32), name="one")
    widget.morph.value = True
    _one_error(qtbot, widget, notes, "a morph needs a stack")
    widget.model_path.value = labels_model
    _one_error(qtbot, widget, notes, "projection needs a StyleGAN2 model")
    foreign = tmp_path / "foreign.npy"
    foreign.write_bytes(b"not mine")
    widget.model_path.value = stylegan2_model
    widget.morph.value = False
    widget.latents_path.value = foreign
    _one_error(qtbot, widget, notes, "already exists")
    assert foreign.read_bytes() == b"not mine" and len(viewer.layers) == 2


# ------------------------------------------------------------------------ Synthetic Data Set
def test_synthetic_data_set_matches_the_command_line_masks(qtbot, viewer, labels_model, tmp_path, notes):
    from napari_gan.core.labels import synthetic_masks

    widget = _widget(viewer, "SynthesizeWidget")
    masks = np.stack([cells(), cells(7)])
    viewer.add_image(image_of(masks[0]), name="cells")
    layer = viewer.add_labels(masks, name="training masks")
    widget.model_path.value = labels_model
    assert widget.masks_layer.value is layer
    widget.n.value = 3
    widget.seed.value = 2
    widget.folder.value = tmp_path / "synthetic"
    widget.run_button.native.click()
    wait_idle(qtbot, widget)
    assert not notes.errors()
    expected = synthetic_masks(list(masks), 3, None, np.random.default_rng(2))
    for i in range(3):
        name = f"synthetic_{i + 1:04d}.tif"
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "synthetic" / "masks" / name), expected[i])
        assert tifffile.imread(tmp_path / "synthetic" / "images" / name).shape == (48, 48)
    assert viewer.layers["synthetic masks (training masks)"].data.shape == (3, 48, 48)
    assert viewer.layers["synthetic images (training masks)"].data.shape == (3, 48, 48)
    # again into the same folder: napari-gan's own files are replaced, the same data set
    widget.run_button.native.click()
    wait_idle(qtbot, widget)
    assert not notes.errors()


def test_synthetic_data_set_of_a_chosen_size(qtbot, viewer, labels_model, tmp_path, notes):
    from napari_gan.core.labels import synthetic_masks

    widget = _widget(viewer, "SynthesizeWidget")
    masks = np.stack([cells(), cells(7)])
    viewer.add_labels(masks, name="training masks")
    widget.model_path.value = labels_model
    assert widget.same_size.value and widget.size_box.native.isHidden()
    widget.same_size.value = False
    assert not widget.size_box.native.isHidden()
    widget.height.value, widget.width.value = 40, 72
    widget.n.value = 2
    widget.folder.value = tmp_path / "synthetic"
    widget.run_button.native.click()
    wait_idle(qtbot, widget)
    assert not notes.errors()
    expected = synthetic_masks(list(masks), 2, (40, 72), np.random.default_rng(0))   # as --shape 40 72
    for i in range(2):
        name = f"synthetic_{i + 1:04d}.tif"
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "synthetic" / "masks" / name), expected[i])
        assert tifffile.imread(tmp_path / "synthetic" / "images" / name).shape == (40, 72)
    assert viewer.layers["synthetic images (training masks)"].data.shape == (2, 40, 72)


def test_synthetic_data_set_refuses_bad_input(qtbot, viewer, labels_model, stylegan2_model, tmp_path, notes):
    widget = _widget(viewer, "SynthesizeWidget")
    widget.folder.value = tmp_path / "out"
    widget.masks_layer.value = viewer.add_labels(np.zeros((32, 32), np.uint8), name="empty")
    widget.model_path.value = stylegan2_model
    _one_error(qtbot, widget, notes, "needs a Pix2Pix model trained with the task 'labels'")
    widget.model_path.value = labels_model
    _one_error(qtbot, widget, notes, "'empty' has no objects")
    widget.masks_layer.value = viewer.add_labels(cells(), name="cells")
    widget.same_size.value = False
    widget.height.value = 4
    _one_error(qtbot, widget, notes, "must be from 8 to 65536 pixels per side, not 4 x 256")
    assert not (tmp_path / "out").exists()
