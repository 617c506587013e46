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
