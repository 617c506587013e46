"""The Generate Data widget: the model's family from its header, new layers, saving, cancelling."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from .conftest import smooth_image, wait_idle


@pytest.fixture
def gen_widget(viewer):
    from napari_gan._widgets import GenerateWidget

    widget = GenerateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Generate Data")
    widget.device.value = "cpu"
    return widget


def test_pix2pix_denoise_gives_a_layer_on_top_of_the_input(qtbot, viewer, gen_widget, pix2pix_models, notes):
    image = smooth_image((70, 50))
    layer = viewer.add_image(image, name="raw", scale=(0.5, 0.25), translate=(10, 20))
    gen_widget.model_path.value = pix2pix_models["denoise"].parent      # a run folder works
    assert gen_widget.family.name == "pix2pix"
    assert "Pix2Pix denoising" in gen_widget.model_info.value and "trained 1 steps" in gen_widget.model_info.value
    assert not gen_widget.image_box.native.isHidden() and gen_widget.noise_box.native.isHidden()
    assert gen_widget.run_button.text == "Predict"
    gen_widget.input_layer.value = layer
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    out = viewer.layers["raw denoised"]
    assert out.data.shape == (70, 50) and out.data.dtype == np.float32
    assert tuple(out.scale) == (0.5, 0.25) and tuple(out.translate) == (10, 20)
    lo, hi = out.contrast_limits
    assert out.data.min() <= lo < hi <= out.data.max()
    assert not notes.errors()
    assert viewer.layers["raw"].data is image


def test_pix2pix_sr_on_a_stack_scales_and_shifts_the_result(qtbot, viewer, gen_widget, pix2pix_models, tmp_path):
    stack = smooth_image((3, 24, 32))
    viewer.add_image(stack, name="low", scale=(3, 2, 2), translate=(0, 0.5, 0.5))
    gen_widget.model_path.value = pix2pix_models["sr2"]
    assert "super-resolution x2" in gen_widget.model_info.value
    gen_widget.input_layer.value = viewer.layers["low"]
    gen_widget.save.value = True
    gen_widget.save_path.value = tmp_path / "results"                  # a folder
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    out = viewer.layers["low x2"]
    assert out.data.shape == (3, 48, 64)
    assert tuple(out.scale) == (3, 1, 1)
    assert np.allclose(out.translate, (0, 0, 0))    # pixel centres subdivide the input pixels
    saved = tmp_path / "results" / "low x2.tif"
    assert gen_widget.last_saved == saved
    np.testing.assert_array_equal(tifffile.imread(saved), out.data)


def test_cancel_a_long_prediction(qtbot, viewer, gen_widget, pix2pix_models, notes):
    viewer.add_image(smooth_image((4, 256, 256)), name="big")
    gen_widget.model_path.value = pix2pix_models["denoise"]
    gen_widget.input_layer.value = viewer.layers["big"]
    gen_widget.tile.value = 32                   # many small tiles
    gen_widget.overlap.value = 8
    n_layers = len(viewer.layers)
    gen_widget.run_button.native.click()
    assert gen_widget.running and gen_widget.cancel_button.enabled
    from napari.utils.progress import progress

    bars = [p for p in progress._all_instances if str(p.desc).startswith("napari-gan: generating")]
    assert len(bars) == 1 and bars[0].total == 4         # one step per plane, in the activity dock
    gen_widget.cancel_button.native.click()
    wait_idle(qtbot, gen_widget)
    assert len(viewer.layers) == n_layers
    assert any("cancelled" in m for m in notes.infos())
    assert gen_widget.run_button.enabled


def test_synchronous_mode_for_scripts(monkeypatch, viewer, gen_widget, pix2pix_models, tmp_path):
    monkeypatch.setenv("NAPARI_GAN_SYNC_WORKERS", "1")
    viewer.add_image(smooth_image((40, 40)), name="raw")
    gen_widget.model_path.value = pix2pix_models["denoise"]
    gen_widget.input_layer.value = viewer.layers["raw"]
    gen_widget.save.value = True
    gen_widget.save_path.value = tmp_path / "out.tif"
    assert gen_widget.run()
    assert not gen_widget.running                      # finished before run() returned
    assert viewer.layers[-1].name == "raw denoised"
    assert tifffile.imread(tmp_path / "out.tif").shape == (40, 40)


def test_stylegan2_generates_a_stack(qtbot, viewer, gen_widget, stylegan2_model, tmp_path, notes):
    from napari_gan.core import checkpoint, families

    gen_widget.model_path.value = stylegan2_model
    assert gen_widget.family.name == "stylegan2"
    assert "StyleGAN2" in gen_widget.model_info.value and "16x16" in gen_widget.model_info.value
    assert gen_widget.image_box.native.isHidden() and not gen_widget.noise_box.native.isHidden()
    assert gen_widget.run_button.text == "Generate"
    gen_widget.n_images.value = 20          # more than one batch of 16
    gen_widget.seed.value = 3
    gen_widget.truncation.value = 0.7
    gen_widget.save.value = True
    gen_widget.save_path.value = tmp_path / "generated.tif"
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    assert not notes.errors()
    layer = gen_widget.last_layer
    assert layer.name == "nuclei-run generated (seed 3)"
    assert layer.data.shape == (20, 16, 16)
    header = checkpoint.read_header(stylegan2_model)
    expected = families.for_header(header).load_applier(header, "cpu").generate(20, seed=3, truncation=0.7)
    np.testing.assert_allclose(layer.data, expected, rtol=1e-5, atol=1e-3)   # same as the CLI/core
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "generated.tif"), layer.data)


def test_pix2pix_with_several_channels(qtbot, viewer, gen_widget, pix2pix_models, notes):
    data = smooth_image((5, 2, 32, 40))                  # Z, C, Y, X
    viewer.add_image(data, name="two", scale=(2, 1, 0.5, 0.5))
    gen_widget.model_path.value = pix2pix_models["two_channels"]
    assert "2 channel(s)" in gen_widget.model_info.value
    assert not gen_widget.channel_axis.native.isHidden()
    gen_widget.input_layer.value = viewer.layers["two"]
    gen_widget.channel_axis.value = 1
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    assert not notes.errors()
    out = viewer.layers["two denoised"]
    assert out.data.shape == (5, 2, 32, 40) and tuple(out.scale) == (2, 1, 0.5, 0.5)
