"""Settings declared once: the command line is built from the declarations, and both the
command line and stored headers are checked against them."""

from dataclasses import dataclass

import pytest

from napari_gan.cli import build_parser
from napari_gan.core import families, settings
from napari_gan.core.errors import NapariGanError
from napari_gan.core.families.pix2pix import Pix2PixConfig
from napari_gan.core.families.stylegan2 import StyleGAN2Config
from napari_gan.core.settings import setting
from napari_gan.core.training.base import DEFAULT_STEPS, RunSettings


def required_args(family):
    return [a for inp in family.inputs if not inp.optional for a in (inp.flag, "x.tif")]


@pytest.mark.parametrize("name", ["pix2pix", "stylegan2"])
def test_cli_defaults_are_the_declared_ones(name):
    family = families.get(name)
    args = build_parser().parse_args(["train", name, *required_args(family), "--out", "run"])
    for cls in (RunSettings, family.config_class):
        for d in settings.declared(cls):
            if d.spec.cli:
                assert getattr(args, d.name) == d.default, d.name
    # and the defaults make a valid configuration
    family.config_class(**settings.defaults(family.config_class))


def test_options_are_checked_against_their_ranges(capsys):
    with pytest.raises(NapariGanError, match=r"Learning rate \(--lr\) must be above 0"):
        Pix2PixConfig(lr=0.0)
    with pytest.raises(NapariGanError, match="finite"):
        Pix2PixConfig(lr=float("nan"))
    with pytest.raises(NapariGanError, match=r"Patch size \(--patch\) must be at least 8"):
        Pix2PixConfig(patch=4)
    with pytest.raises(NapariGanError, match=r"\(--resolution\) must be one of"):
        StyleGAN2Config(resolution=100)
    with pytest.raises(NapariGanError, match="too small for a discriminator"):
        Pix2PixConfig(patch=16, depth=2)
    with pytest.raises(NapariGanError, match="needs a scale of 2 or 4"):
        Pix2PixConfig(task="sr")
    with pytest.raises(NapariGanError, match=r"Steps \(--steps\) must be at least 1"):
        RunSettings(steps=0)
    assert RunSettings().budget().steps == DEFAULT_STEPS
    assert RunSettings(minutes=5).budget().steps is None


def test_stored_values_of_the_wrong_type_are_refused():
    with pytest.raises(NapariGanError, match="'width' must be a number"):
        settings.from_dict(Pix2PixConfig, {"width": "wide"}, "model.safetensors")
    with pytest.raises(NapariGanError, match="'width' must be at most"):
        settings.from_dict(Pix2PixConfig, {"width": 10_000_000}, "model.safetensors")
    with pytest.raises(NapariGanError, match="whole number"):
        settings.from_dict(Pix2PixConfig, {"depth": 2.5})
    cfg = settings.from_dict(Pix2PixConfig, {"width": 16, "unknown_key": 1, "in_channels": 2})
    assert cfg.width == 16 and cfg.in_channels == 2


def test_a_registered_family_gets_its_own_train_command():
    @dataclass
    class TinyConfig:
        strength: float = setting(0.5, "how strongly to do it", min=0, max=1)
        size: int = setting(8, "patch size", min=4)

    class Tiny(families.Family):
        name, title, summary = "tinyfam", "Tiny", "a test family that does very little"
        config_class = TinyConfig
        inputs = (families.DataInput("pictures", "the pictures"),)

    families.register(Tiny())
    try:
        help_text = " ".join(build_parser().format_help().split())
        assert "tinyfam" in help_text and "a test family that does very little" in help_text
        args = build_parser().parse_args(["train", "tinyfam", "--pictures", "p.tif", "--out", "r",
                                          "--strength", "0.25"])
        assert args.strength == 0.25 and args.size == 8 and str(args.pictures) == "p.tif"
        with pytest.raises(NapariGanError, match="at most 1"):
            Tiny().make_config({"strength": 2.0}, None)
    finally:
        families.unregister("tinyfam")
    assert "tinyfam" not in build_parser().format_help()


def test_apply_options_are_declared_once():
    from napari_gan.core.generation import GenerateSettings
    from napari_gan.core.inference import PredictSettings

    args = build_parser().parse_args(["predict", "--model", "m", "--input", "i.tif", "--output", "o.tif"])
    assert {d.name: getattr(args, d.name) for d in settings.declared(PredictSettings)} == settings.defaults(PredictSettings)
    args = build_parser().parse_args(["generate", "--model", "m", "--output", "o.tif"])
    assert {d.name: getattr(args, d.name) for d in settings.declared(GenerateSettings)} == settings.defaults(GenerateSettings)
    assert families.get("pix2pix").apply_settings is PredictSettings
    assert families.get("stylegan2").apply_settings is GenerateSettings
    with pytest.raises(NapariGanError, match="larger than twice the overlap"):
        PredictSettings(tile=64, overlap=32)
    with pytest.raises(NapariGanError, match=r"\(--overlap\) must be at least 0"):
        PredictSettings(overlap=-1)
