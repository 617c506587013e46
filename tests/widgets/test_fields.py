"""Widgets built from setting declarations (_widgets/_fields.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from napari_gan.core.settings import declared, setting


@dataclass
class Example:
    lr: float = setting(2e-4, "learning rate", min=0, min_exclusive=True, max=1)
    steps: int | None = setting(None, "steps", min=1, max=10**12, auto="until the time is up")
    weight: float | None = setting(None, "a weight; 0 turns it off", min=0, max=100, auto="from the data")
    mode: str = setting("b", "a choice", choices=(("first", "a"), ("second", "b")))
    size: int = setting(64, "a size", choices=(32, 64, 128))
    flag: bool = setting(True, "a switch", label="Use the switch")
    hidden: int = setting(3, "not in widgets", widget=False)
    extra: int = setting(5, "rarely changed", min=1, max=9, advanced=True)
    pick: int | None = setting(None, "a choice or automatic", choices=(1, 2), auto="from the data")
    name: str = setting("x", "free text")
    plain: int = 7


@pytest.fixture
def fields(qapp):
    from napari_gan._widgets._fields import SettingFields

    return SettingFields(Example)


def test_every_shown_setting_has_its_widget(fields):
    from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox

    assert list(fields.fields) == ["lr", "steps", "weight", "mode", "size", "flag", "extra", "pick", "name"]
    assert [w.name for w in fields.basic] == ["lr", "steps", "weight", "mode", "size", "flag", "pick", "name"]
    assert [w.name for w in fields.advanced] == ["extra"]
    assert isinstance(fields.widget("mode"), ComboBox) and isinstance(fields.widget("flag"), CheckBox)
    assert fields.widget("mode").native.currentText() == "second"       # (label, value) pairs
    assert fields.widget("pick").native.currentText() == "auto (from the data)"
    assert fields.widget("flag").text == "Use the switch"
    lr = fields.widget("lr")
    assert isinstance(lr, FloatSpinBox) and lr.native.decimals() == 6 and lr.value == 2e-4
    assert lr.min == pytest.approx(1e-6) and lr.max == 1 and lr.tooltip == "learning rate"
    assert fields.widget("steps").max == 2**31 - 1                      # what a Qt spin box holds


def test_automatic_settings_read_none_and_show_auto(fields):
    steps, weight = fields.widget("steps"), fields.widget("weight")
    assert steps.native.lineEdit().text() == "auto" and "until the time is up" in steps.tooltip
    assert fields.values() == {"lr": 2e-4, "steps": None, "weight": None, "mode": "b", "size": 64,
                               "flag": True, "extra": 5, "pick": None, "name": "x"}
    fields.set_values({"steps": 300, "weight": 0.0, "mode": "a", "pick": 2, "name": "y", "unknown": 1})
    values = fields.values()
    assert values["steps"] == 300 and isinstance(values["steps"], int)
    assert values["weight"] == 0.0 and values["mode"] == "a"            # 0 is a value here, not auto
    assert values["pick"] == 2 and values["name"] == "y"
    assert weight.min < 0
    fields.set_values({"steps": None, "weight": None})
    assert fields.values()["steps"] is None and fields.values()["weight"] is None


def test_the_declarations_of_every_family_make_widgets(qapp):
    from napari_gan._widgets._fields import SettingFields
    from napari_gan.core import families
    from napari_gan.core.training.base import RunSettings

    for cls in (RunSettings, *(f.config_class for f in families.all_families())):
        shown = SettingFields(cls).values()
        assert shown == {d.name: d.default for d in declared(cls) if d.spec.widget}
