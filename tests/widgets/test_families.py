"""Both faces are built from the family registry and the setting declarations: a family
registered at run time shows up everywhere, and every default is written once."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from .conftest import smooth_image, wait_idle


def _help(capsys, argv: list[str]) -> str:
    from napari_gan.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    return capsys.readouterr().out


def test_a_registered_family_is_on_the_command_line(tiny_family, capsys):
    from napari_gan.cli import build_parser

    assert "tiny: a family only the tests know" in " ".join(build_parser().format_help().split())
    assert "tiny" in _help(capsys, ["train", "--help"])
    text = _help(capsys, ["train", "tiny", "--help"])
    assert "--pictures" in text and "--strength" in text and "--passes" in text


def test_a_registered_family_is_in_the_train_widget(viewer, tiny_family):
    from napari_gan._widgets import TrainWidget

    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    assert "tiny" in widget.model.choices
    viewer.add_image(smooth_image((64, 64)), name="raw")
    widget.model.value = "tiny"
    form = widget.forms["tiny"]
    assert not form.inputs.native.isHidden() and widget.forms["pix2pix"].inputs.native.isHidden()
    assert widget.picker("pictures").label == "Pictures"
    assert widget.picker("pictures").value is viewer.layers["raw"]
    assert "only the tests know" in widget.summary.value
    strength, passes = widget.field("strength"), widget.field("passes")
    assert strength.value == 0.5 and strength.tooltip == "how strongly to smooth"
    assert passes.label == "Number of passes" and passes in list(form.settings.advanced)
    assert strength in list(form.settings.basic)
    passes.value = 4
    values = widget.values()
    assert values["strength"] == 0.5 and values["passes"] == 4 and values["val_every"] == 200
    assert "patch" not in values                    # Pix2Pix's settings belong to Pix2Pix


def test_a_registered_family_is_in_the_generate_widget(qtbot, viewer, tiny_model, tiny_family, notes):
    from napari_gan._widgets import GenerateWidget

    widget = GenerateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Generate Data")
    widget.device.value = "cpu"
    image = smooth_image((40, 30))
    viewer.add_image(image, name="raw")
    widget.model_path.value = tiny_model.parent             # the run folder
    assert widget.family is tiny_family
    assert widget.model_info.value == "Tiny smoother, strength 0.25, trained 7 steps, score 0.5"
    assert not widget.image_box.native.isHidden() and widget.noise_box.native.isHidden()
    assert widget.run_button.text == "Predict" and not tiny_family.loaded_on   # only the header was read
    widget.input_layer.value = viewer.layers["raw"]
    widget.run_button.native.click()
    wait_idle(qtbot, widget)
    assert not notes.errors()
    out = viewer.layers["raw tiny"]
    np.testing.assert_allclose(out.data, 2 * image, rtol=1e-5)
    assert tiny_family.loaded_on and threading.main_thread() not in tiny_family.loaded_on   # weights: in the worker


def test_defaults_agree_between_command_line_widget_and_configuration(viewer):
    from napari_gan._widgets import TrainWidget
    from napari_gan.cli import build_parser
    from napari_gan.core import families, settings
    from napari_gan.core.training.base import RunSettings

    parser = build_parser()
    widget = TrainWidget(viewer)
    problems = []
    for family in families.all_families():
        required = [x for inp in family.inputs if not inp.optional for x in (inp.flag, "images.tif")]
        args = parser.parse_args(["train", family.name, *required, "--out", "run"])
        widget.model.value = family.name
        shown = widget.values()
        for cls in (RunSettings, family.config_class):
            made = cls()
            for d in settings.declared(cls):
                where = f"{family.name} {d.name}"
                if d.spec.cli and getattr(args, d.name) != d.default:
                    problems.append(f"{where}: command line {getattr(args, d.name)!r} != {d.default!r}")
                if d.spec.widget and shown.get(d.name, "missing") != d.default:
                    problems.append(f"{where}: widget {shown.get(d.name, 'missing')!r} != {d.default!r}")
                if not d.spec.widget and d.name in shown:
                    problems.append(f"{where}: shown although declared widget=False")
                # automatic settings are resolved when a configuration is made
                if not d.optional and d.default != "auto" and getattr(made, d.name) != d.default:
                    problems.append(f"{where}: configuration {getattr(made, d.name)!r} != {d.default!r}")
    assert not problems, "\n".join(problems)
