"""Export to the BioImage Model Zoo from Generate Data: the same fields as the command line,
run in a worker, a notification with the package's path."""

from __future__ import annotations

import zipfile

import pytest

from .conftest import wait_idle

pytest.importorskip("bioimageio.spec")


@pytest.fixture
def gen_widget(viewer):
    from napari_gan._widgets import GenerateWidget

    widget = GenerateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Generate Data")
    return widget


def wait_export(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.running, timeout=120_000)


def test_export_writes_a_package_and_says_where(qtbot, gen_widget, pix2pix_models, tmp_path, notes):
    model = pix2pix_models["denoise"]
    gen_widget.model_path.value = model
    panel = gen_widget.export_panel
    panel.toggle.value = True
    assert "Pix2Pix denoising" in panel.package_name.value and panel.package_description.value   # from the header
    panel.output.value = tmp_path / "denoiser.zip"
    panel.authors.value = "Ada Lovelace; Alan Turing"
    panel.cite.value = "10.1109/CVPR.2017.632"
    before = model.read_bytes()
    panel.button.native.click()
    wait_export(qtbot, panel)
    assert not notes.errors(), notes.errors()
    assert panel.last_package == tmp_path / "denoiser.zip"
    assert any(str(tmp_path / "denoiser.zip") in m for m in notes.infos())
    with zipfile.ZipFile(tmp_path / "denoiser.zip") as z:
        assert "rdf.yaml" in z.namelist()
    assert model.read_bytes() == before


def test_export_refusals_are_notifications(qtbot, gen_widget, pix2pix_models, tmp_path, notes):
    model = pix2pix_models["denoise"]
    gen_widget.model_path.value = model
    panel = gen_widget.export_panel
    panel.toggle.value = True
    panel.authors.value = "Ada Lovelace"
    panel.button.native.click()                                  # no package name given
    assert any("'Package'" in m for m in notes.errors())
    panel.output.value = model.with_suffix(".zip")
    panel.authors.value = ""
    panel.button.native.click()
    wait_export(qtbot, panel)
    assert any("author" in m.lower() for m in notes.errors()), notes.errors()
    assert not model.with_suffix(".zip").exists()


def tiny_cyclegan(path):
    """A CycleGAN model file (ResNet generators with random weights, per-image normalisation)."""
    import torch

    from napari_gan.core import checkpoint
    from napari_gan.core.families.cyclegan import ARCHITECTURE, CycleGANConfig, build_generator

    cfg = CycleGANConfig(width=4, blocks=1, patch=16, disc_layers=1)
    torch.manual_seed(0)
    # far above 0: random weights give outputs of either sign, and bioimage.io needs a positive maximum
    norm = {key: {"low": [1000.0], "high": [1100.0], "percentiles": [0.5, 99.8], "per_image": True} for key in "ab"}
    return checkpoint.save_model(path, "cyclegan", {k: getattr(cfg, k) for k in ARCHITECTURE},
                                 {"generator_a2b": build_generator(cfg), "generator_b2a": build_generator(cfg)},
                                 norm, step=0, training={})


def test_export_of_a_cyclegan_direction(qtbot, gen_widget, pix2pix_models, tmp_path, notes):
    model = tiny_cyclegan(tmp_path / "cg.safetensors")
    gen_widget.model_path.value = model
    panel = gen_widget.export_panel
    panel.toggle.value = True
    assert panel.option_values() == {"direction": "a2b"}                       # declared once, in the family
    assert panel.package_name.value == "napari-gan CycleGAN A to B"
    panel.option_fields["cyclegan"][0].widget.value = "b2a"
    assert panel.package_name.value == "napari-gan CycleGAN B to A"             # defaults follow the direction
    panel.output.value = tmp_path / "b2a.zip"
    panel.authors.value = "Ada Lovelace"
    before = model.read_bytes()
    panel.button.native.click()
    wait_export(qtbot, panel)
    assert not notes.errors(), notes.errors()
    with zipfile.ZipFile(tmp_path / "b2a.zip") as z:
        assert "napari_gan_resnet.py" in z.namelist()
        assert "direction: b2a" in z.read("rdf.yaml").decode()
    assert model.read_bytes() == before

    gen_widget.model_path.value = pix2pix_models["denoise"]                   # no direction for Pix2Pix
    assert panel.option_values() == {}
