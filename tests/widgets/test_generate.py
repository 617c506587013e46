"""The Generate Data widget: the model's family from its header, new layers, saving, cancelling."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_gan._widgets import _common

from .conftest import smooth_image, wait_idle


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


@pytest.mark.parametrize("renderer", ["nvidia geforce rtx", "llvmpipe (llvm 15.0.6, 256 bits)"])
def test_cancel_a_long_prediction(qtbot, viewer, gen_widget, pix2pix_models, notes, monkeypatch, renderer):
    monkeypatch.setitem(_common._renderer, "name", renderer)
    viewer.add_image(smooth_image((4, 256, 256)), name="big")
    gen_widget.model_path.value = pix2pix_models["denoise"]
    gen_widget.input_layer.value = viewer.layers["big"]
    gen_widget.field("tile").value = 32          # many small tiles
    gen_widget.field("overlap").value = 8
    n_layers = len(viewer.layers)
    gen_widget.run_button.native.click()
    assert gen_widget.running and gen_widget.cancel_button.enabled
    from napari.utils.progress import progress

    bars = [p for p in progress._all_instances if str(p.desc).startswith("napari-gan: generating")]
    if renderer.startswith("llvmpipe"):   # drawn in software: no animated activity entry to take CPU
        assert bars == [] and gen_widget.progress_bar.maximum() == 4
    else:
        assert len(bars) == 1 and bars[0].total == 4     # one step per plane, in the activity dock
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
    assert gen_widget.field("n").label == "Number of images"
    assert gen_widget.show_advanced.native.isHidden()        # generating has no advanced settings
    gen_widget.field("n").value = 20          # more than one batch of 16
    gen_widget.field("seed").value = 3
    gen_widget.field("truncation").value = 0.7
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


# ------------------------------------------------------------------ apply settings from the declarations
def test_apply_fields_of_every_family_show_the_declared_defaults(gen_widget):
    """Generate Data's fields are built from each family's apply_settings (like the Train
    widget's from config_class): every default is the declared one, written once."""
    from napari_gan.core import families, settings

    problems = []
    for family in families.all_families():
        fields = gen_widget.fields_for(family)
        shown = fields.values()
        for d in settings.declared(family.apply_settings):
            where = f"{family.name} {d.name}"
            if not d.spec.widget:
                if d.name in shown:
                    problems.append(f"{where}: shown although declared widget=False")
                continue
            if shown.get(d.name, "missing") != d.default:
                problems.append(f"{where}: widget {shown.get(d.name, 'missing')!r} != {d.default!r}")
            widget = fields.widget(d.name)
            if d.spec.help not in widget.tooltip:
                problems.append(f"{where}: tooltip {widget.tooltip!r} lacks the declared help")
            section = fields.advanced if d.spec.advanced else fields.basic
            if widget not in list(section):
                problems.append(f"{where}: not in the {'advanced' if d.spec.advanced else 'basic'} section")
    assert not problems, "\n".join(problems)


def test_predict_fields_before_a_model_is_chosen(gen_widget):
    from napari_gan.core.inference import PredictSettings

    assert gen_widget.settings is gen_widget.fields_for(families_get("pix2pix"))
    tile, overlap = gen_widget.field("tile"), gen_widget.field("overlap")
    assert tile.label == "Tile size" and overlap.label == "Tile overlap"
    assert tile.native.text() == "auto" and overlap.native.text() == "auto"
    assert "auto: the whole image when it fits in memory" in tile.tooltip
    assert "half the network's receptive field" in overlap.tooltip
    assert gen_widget.values() == {"tile": None, "overlap": None, "amp": True}
    assert gen_widget.field("amp") in list(gen_widget.settings.advanced)
    assert gen_widget.advanced.native.isHidden() and not gen_widget.show_advanced.native.isHidden()
    gen_widget.show_advanced.value = True
    assert not gen_widget.advanced.native.isHidden() and not gen_widget.field("amp").native.isHidden()
    assert gen_widget.fields_for(families_get("pix2pix")) is gen_widget.fields_for(families_get("pix2pix"))
    assert families_get("pix2pix").apply_settings is PredictSettings


def families_get(name):
    from napari_gan.core import families

    return families.get(name)


def test_bad_apply_settings_are_one_notification(viewer, gen_widget, pix2pix_models, notes):
    viewer.add_image(smooth_image((40, 40)), name="raw")
    gen_widget.model_path.value = pix2pix_models["denoise"]
    gen_widget.input_layer.value = viewer.layers["raw"]
    n_layers = len(viewer.layers)
    for tile, overlap, expected in ((16, None, "Tile size (--tile) must be at least 32"),
                                    (64, 40, "larger than twice the overlap")):
        seen = len(notes.errors())
        gen_widget.field("tile").value = tile
        gen_widget.field("overlap").value = overlap if overlap is not None else -1
        assert not gen_widget.run()
        errors = notes.errors()[seen:]
        assert len(errors) == 1 and expected in errors[0], errors
    assert len(viewer.layers) == n_layers and not gen_widget.running


@pytest.fixture(scope="module")
def cyclegan_model(tmp_path_factory):
    """A tiny CycleGAN model (one step on two 32x32 images), made through the core; skips
    while CycleGAN is not registered."""
    from napari_gan.core import families
    from napari_gan.core.device import resolve_device
    from napari_gan.core.errors import NapariGanError
    from napari_gan.core.families import Images
    from napari_gan.core.training.base import Budget

    try:
        family = families.get("cyclegan")
    except NapariGanError:
        pytest.skip("the CycleGAN family is not registered yet")
    out = tmp_path_factory.mktemp("cyclegan") / "cg-run"
    a = smooth_image((32, 32))
    device = resolve_device("cpu")
    cfg = family.make_config(dict(generator="unet", width=4, depth=2, disc_width=4, disc_layers=1, patch=16,
                                  batch=1, pool_size=0, amp=False), device)
    images = {"a": Images([a[None]], ["a"]), "b": Images([2 * a[::-1, :][None]], ["b"])}
    trainer = family.make_trainer(cfg, images, out, Budget(steps=1), device, 0, None)
    for _ in trainer.run():
        pass
    return out / "model.safetensors"


def test_cyclegan_shows_its_direction_and_predicts_with_it(qtbot, viewer, gen_widget, cyclegan_model,
                                                           pix2pix_models, notes):
    from napari_gan.core import checkpoint, families

    family = families.get("cyclegan")
    gen_widget.model_path.value = pix2pix_models["denoise"]
    assert "direction" not in gen_widget.settings
    gen_widget.field("tile").value = 64                         # the user's tile size ...
    gen_widget.model_path.value = cyclegan_model
    assert gen_widget.family is family and gen_widget.settings is gen_widget.fields_for(family)
    direction = gen_widget.field("direction")
    assert direction.label == "Direction" and not direction.native.isHidden()
    assert direction.value == "a2b" and set(direction.choices) == {"a2b", "b2a"}
    assert gen_widget.field("tile").value == 64                 # ... stays for the next model
    assert gen_widget.channel_axis.native.isHidden()            # a one-channel model
    image = smooth_image((40, 48))
    viewer.add_image(image, name="raw")
    gen_widget.input_layer.value = viewer.layers["raw"]
    direction.value = "b2a"
    gen_widget.field("tile").value = 0                          # auto
    gen_widget.field("amp").value = False
    gen_widget.run_button.native.click()
    wait_idle(qtbot, gen_widget)
    assert not notes.errors()
    out = gen_widget.last_layer
    assert out.name == "raw cyclegan b2a" and out.metadata["napari_gan_settings"]["direction"] == "b2a"
    header = checkpoint.read_header(cyclegan_model)
    expected = family.load_applier(header, "cpu", amp=False, direction="b2a").predict(image)
    np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-5)


def test_saving_never_replaces_the_model_the_input_file_or_a_foreign_file(qtbot, viewer, gen_widget,
                                                                          pix2pix_models, tmp_path, notes):
    """The command line's output rules, as notifications: the user's files stay byte-identical."""
    source = tmp_path / "raw.tif"
    tifffile.imwrite(source, smooth_image((40, 40)))
    foreign = tmp_path / "notes.tif"
    foreign.write_bytes(b"someone else's file")
    model = pix2pix_models["denoise"]
    layer = viewer.open(str(source))[0]
    before = {p: p.read_bytes() for p in (source, foreign, model)}
    gen_widget.model_path.value = model
    gen_widget.input_layer.value = layer
    gen_widget.save.value = True
    for target, message in ((source, "would replace the file of the layer"),
                            (foreign, "was not written by napari-gan")):
        gen_widget.save_path.value = target
        gen_widget.run_button.native.click()
        wait_idle(qtbot, gen_widget)
        assert any(message in m for m in notes.errors()), notes.errors()
    assert {p: p.read_bytes() for p in before} == before
