"""Generate Data on napari layers with several axes: the channels are read from the right
axis (never guessed between axes of the same length), the result keeps the layer's axes
order, and every axis keeps the layer's scale and translate (Y and X finer by the
super-resolution factor), also in the saved TIFF."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import smooth_image, wait_idle

T, Z, C, Y, X = 2, 3, 3, 16, 20           # Z == C: the case that must not be guessed


def _train(root, name, inputs, targets, **cfg):
    from napari_gan.core.data import PairedSet
    from napari_gan.core.device import resolve_device
    from napari_gan.core.families.pix2pix import Pix2PixConfig, Pix2PixTrainer
    from napari_gan.core.training.base import Budget

    cfg = Pix2PixConfig(depth=2, width=4, disc_width=4, disc_layers=2, patch=16, batch=1, val_fraction=0.0, **cfg)
    data = PairedSet.build(inputs, targets, cfg.scale)
    trainer = Pix2PixTrainer(cfg, data, root / name, Budget(steps=1), resolve_device("cpu"))
    for _ in trainer.run():
        pass
    return root / name / "model.safetensors"


@pytest.fixture(scope="module")
def rgb_like_models(tmp_path_factory):
    """Tiny three-channel Pix2Pix models made through the core: x2 super-resolution (3 -> 3
    channels) and a denoiser from 3 channels to 1."""
    from napari_gan.core.data import blur_downsample

    root = tmp_path_factory.mktemp("three")
    clean = np.stack([smooth_image((32, 32)), smooth_image((32, 32))[::-1], smooth_image((32, 32))[:, ::-1]])
    low = np.stack([blur_downsample(c, 2) for c in clean])
    return {"sr2": _train(root, "sr2", [low], [clean], task="sr", scale=2),
            "to_one": _train(root, "to_one", [clean + 5], [clean[:1]])}


def _stack() -> np.ndarray:
    """(T, Z, C, Y, X) with every plane different, so reading Z as C changes the result."""
    base = smooth_image((Y, X))
    t, z, c = np.meshgrid(np.arange(T), np.arange(Z), np.arange(C), indexing="ij")
    gains = (1 + 0.3 * t + 0.7 * z + 2.0 * c)[..., None, None]
    shifts = np.stack([[[np.roll(base, 3 * ci + zi, axis=ci % 2) for ci in range(C)] for zi in range(Z)]
                       for _ in range(T)])
    return (gains * shifts).astype(np.float32)


def _choice_texts(combo) -> list[str]:
    return [combo.native.itemText(i) for i in range(combo.native.count())]


def _core_prediction(model, data, axes, **load):
    """What the core (and `napari-gan predict`) gives for ``data`` read with ``axes``."""
    from napari_gan.core import checkpoint, families
    from napari_gan.core.axes import AxesImage

    header = checkpoint.read_header(model)
    predictor = families.for_header(header).load_applier(header, "cpu", amp=False, **load)
    return predictor.predict_image(AxesImage(data, axes))


def test_tzcyx_stack_with_z_as_long_as_c(qtbot, viewer, gen_widget, rgb_like_models, notes, tmp_path):
    from napari_gan.core.axes import read_image

    data = _stack()
    layer = viewer.add_image(data, name="hyper", scale=(1, 2.0, 1, 0.5, 0.5), translate=(0, 10, 0, 4, 6))
    gen_widget.model_path.value = rgb_like_models["sr2"]
    assert not gen_widget.channel_axis.native.isHidden()
    gen_widget.input_layer.value = layer
    assert gen_widget.channel_axis.value == -1                      # auto ...
    assert list(gen_widget.channel_axis.choices) == [-1, 0, 1, 2]
    assert _choice_texts(gen_widget.channel_axis)[1:] == ["axis 0 (length 2)", "axis 1 (length 3)",
                                                          "axis 2 (length 3)"]
    gen_widget.field("amp").value = False
    n_layers = len(viewer.layers)
    assert not gen_widget.run()                                     # ... refuses to guess between Z and C
    assert "2 axes of length 3 (axes 1 and 2)" in notes.errors()[-1] and "Channel axis" in notes.errors()[-1]
    assert len(viewer.layers) == n_layers

    gen_widget.channel_axis.value = 2
    gen_widget.save.value = True
    gen_widget.save_path.value = tmp_path / "hyper x2.tif"
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    assert not notes.errors()[1:]
    out = viewer.layers["hyper x2"]
    assert out.data.shape == (T, Z, C, 2 * Y, 2 * X)               # the same axes order
    np.testing.assert_allclose(out.scale, (1, 2.0, 1, 0.25, 0.25))  # Z untouched, Y/X halved
    np.testing.assert_allclose(out.translate, (0, 10, 0, 4 - 0.125, 6 - 0.125))

    expected = _core_prediction(rgb_like_models["sr2"], data, "TZCYX")
    assert expected.axes == "TZCYX"
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-5, atol=1e-4)
    swapped = _core_prediction(rgb_like_models["sr2"], data, "TCZYX").data   # Z read as channels
    assert not np.allclose(np.swapaxes(swapped, 1, 2), expected.data, rtol=1e-3, atol=1e-3)

    saved = read_image(tmp_path / "hyper x2.tif")                   # an ImageJ hyperstack
    assert saved.axes == "TZCYX" and saved.shape == out.data.shape
    np.testing.assert_array_equal(np.asarray(saved.data), out.data)


def test_a_channel_axis_labelled_c_is_taken_and_labels_units_carry_over(qtbot, viewer, gen_widget,
                                                                          rgb_like_models, notes, tmp_path):
    from napari_gan.core.axes import read_image

    data = _stack()[0]                                              # (Z, C, Y, X), Z == C
    layer = viewer.add_image(data, name="zc", scale=(2.0, 1, 0.5, 0.5), axis_labels=("z", "c", "y", "x"),
                             units=("um", "um", "um", "um"))
    gen_widget.model_path.value = rgb_like_models["sr2"]
    gen_widget.input_layer.value = layer
    assert gen_widget.channel_axis.value == 1                       # the labelled axis
    assert "axis 1: c (length 3)" in _choice_texts(gen_widget.channel_axis)
    gen_widget.field("amp").value = False
    gen_widget.save.value = True
    gen_widget.save_path.value = tmp_path
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    assert not notes.errors()
    out = viewer.layers["zc x2"]
    assert out.data.shape == (Z, C, 2 * Y, 2 * X)
    assert tuple(out.axis_labels) == ("z", "c", "y", "x")
    assert [str(u) for u in out.units] == ["micrometer"] * 4
    np.testing.assert_allclose(out.scale, (2.0, 1, 0.25, 0.25))
    np.testing.assert_allclose(out.data, _core_prediction(rgb_like_models["sr2"], data, "ZCYX").data,
                               rtol=1e-5, atol=1e-4)
    saved = read_image(tmp_path / "zc x2.tif")
    assert saved.axes == "ZCYX" and saved.unit == "micron"
    assert saved.pixel_size == pytest.approx({"Z": 2.0, "Y": 0.25, "X": 0.25})


def test_one_output_channel_drops_the_channel_axis_and_keeps_the_others(qtbot, viewer, gen_widget,
                                                                        rgb_like_models, notes):
    data = _stack()[0]                                              # (Z, C, Y, X)
    layer = viewer.add_image(data, name="zc", scale=(2.0, 1, 0.5, 0.5), translate=(5, 0, 1, 1))
    gen_widget.model_path.value = rgb_like_models["to_one"]
    gen_widget.input_layer.value = layer
    gen_widget.channel_axis.value = 1
    gen_widget.field("amp").value = False
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    assert not notes.errors()
    out = gen_widget.last_layer
    assert out.data.shape == (Z, Y, X)
    assert tuple(out.scale) == (2.0, 0.5, 0.5) and tuple(out.translate) == (5, 1, 1)   # Z's, not C's
    expected = _core_prediction(rgb_like_models["to_one"], data, "ZCYX")
    assert expected.axes == "ZCYX" and expected.shape == (Z, 1, Y, X)   # the core keeps a C axis of 1
    np.testing.assert_allclose(out.data, expected.data[:, 0], rtol=1e-5, atol=1e-4)


def test_channels_split_into_layers_get_a_clear_message(viewer, gen_widget, rgb_like_models, notes):
    viewer.add_image(_stack()[0, :2], name="split", channel_axis=1)  # napari: one (2, Y, X) layer per channel
    gen_widget.model_path.value = rgb_like_models["sr2"]
    gen_widget.input_layer.value = viewer.layers[0]
    assert not gen_widget.run()
    assert "Merge to Stack" in notes.errors()[-1]


def test_one_channel_sr_on_a_zyx_stack(qtbot, viewer, gen_widget, pix2pix_models, notes):
    stack = smooth_image((3, 24, 32))
    layer = viewer.add_image(stack, name="low", scale=(2, 0.5, 0.5))
    gen_widget.model_path.value = pix2pix_models["sr2"]
    assert gen_widget.channel_axis.native.isHidden()
    gen_widget.input_layer.value = layer
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    assert not notes.errors()
    out = viewer.layers["low x2"]
    assert out.data.shape == (3, 48, 64)
    np.testing.assert_allclose(out.scale, (2, 0.25, 0.25))
    np.testing.assert_allclose(out.translate, (0, -0.125, -0.125))
    # the 2x2 output pixels that subdivide an input pixel are centred on it, in every slice
    for z, i, j in ((0, 0, 0), (2, 5, 7), (1, 23, 31)):
        centre = np.mean([out.data_to_world((z, 2 * i + di, 2 * j + dj)) for di in (0, 1) for dj in (0, 1)], axis=0)
        np.testing.assert_allclose(centre, layer.data_to_world((z, i, j)))
    # and the result covers exactly the input's extent (outer pixel corners)
    for lo in (True, False):
        corner_in = np.array([-0.5 if lo else n - 0.5 for n in stack.shape])
        corner_out = np.array([-0.5 if lo else n - 0.5 for n in out.data.shape])
        np.testing.assert_allclose(out.data_to_world(corner_out)[1:], layer.data_to_world(corner_in)[1:])
