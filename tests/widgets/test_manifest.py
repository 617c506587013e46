"""The plugin as napari sees it: manifest, widgets and sample data load, fast import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_manifest_is_valid_and_shipped_in_the_package():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(ROOT / "napari.yaml")
    assert manifest.name == "napari-gan"
    assert all(c.id.startswith("napari-gan.") for c in manifest.contributions.commands)
    assert {w.display_name for w in manifest.contributions.widgets} == {
        "Train", "Generate Data", "Project Image", "Synthetic Data Set"}
    assert {s.key for s in manifest.contributions.sample_data} == {"noisy_clean", "low_high", "nuclei"}
    shipped = ROOT / "src" / "napari_gan" / "napari.yaml"
    assert shipped.read_text() == (ROOT / "napari.yaml").read_text()
    # the installed entry point resolves to the same manifest
    assert PluginManifest.from_distribution("napari-gan").name == "napari-gan"


def test_npe2_validate_passes():
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(npe2), "validate", "napari-gan"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_what_napari_loads_does_not_import_torch():
    code = ("import sys, napari_gan, napari_gan._sample_data, napari_gan._widgets._train, "
            "napari_gan._widgets._generate, napari_gan._widgets._project, napari_gan._widgets._synthesize; assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_widgets_load_from_the_manifest(viewer):
    from napari_gan._widgets import GenerateWidget, ProjectWidget, SynthesizeWidget, TrainWidget

    _, train = viewer.window.add_plugin_dock_widget("napari-gan", "Train")
    _, generate = viewer.window.add_plugin_dock_widget("napari-gan", "Generate Data")
    _, project = viewer.window.add_plugin_dock_widget("napari-gan", "Project Image")
    _, synthesize = viewer.window.add_plugin_dock_widget("napari-gan", "Synthetic Data Set")
    assert isinstance(train, TrainWidget)
    assert isinstance(generate, GenerateWidget)
    assert isinstance(project, ProjectWidget)
    assert isinstance(synthesize, SynthesizeWidget)
    assert train.device.value == "auto" and "auto:" in train.device.native.currentText()


def test_sample_data_open_from_the_manifest(viewer):
    viewer.open_sample("napari-gan", "noisy_clean")
    viewer.open_sample("napari-gan", "low_high")
    viewer.open_sample("napari-gan", "nuclei")
    layers = {layer.name: layer for layer in viewer.layers}
    assert layers["noisy"].data.shape == layers["clean"].data.shape
    low, high = layers["low resolution (x2)"], layers["high resolution"]
    assert low.data.shape[0] * 2 == high.data.shape[0]
    assert tuple(low.scale) == (2, 2) and tuple(low.translate) == (0.5, 0.5)
    assert layers["nuclei"].data.ndim == 3


def test_built_wheel_ships_the_manifest_as_a_real_file(tmp_path):
    import zipfile

    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                             str(ROOT), "-w", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("napari_gan-*.whl")
    with zipfile.ZipFile(wheel) as z:
        assert z.read("napari_gan/napari.yaml") == (ROOT / "napari.yaml").read_bytes()
        entry_points = next(n for n in z.namelist() if n.endswith("entry_points.txt"))
        assert "napari-gan = napari_gan:napari.yaml" in z.read(entry_points).decode()
        metadata = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
    assert "Classifier: Framework :: napari" in metadata
    assert "License-Expression: BSD-3-Clause" in metadata or "License: BSD-3-Clause" in metadata
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not any(q in line.lower() for line in requires for q in ("pyqt", "pyside", "napari["))
