"""magicgui widgets built from setting declarations (:mod:`napari_gan.core.settings`).

Each declared setting becomes one widget: int -> SpinBox, float -> FloatSpinBox, bool ->
CheckBox, choices -> ComboBox, other text -> LineEdit. A setting typed ``X | None`` ("automatic" when None) is a
spin box whose lowest value reads *auto*; its tooltip says what automatic means. Labels,
tooltips and ranges come from the declaration, so the widgets never repeat a default or a
help text that the command line also shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit, SpinBox, Widget

from ..core.settings import Declared, declared

INT_LIMIT = 2**31 - 1          # Qt spin boxes hold 32-bit ints
FLOAT_LIMIT = 1e12
AUTO_TEXT = "auto"


@dataclass
class Field:
    """One setting and its widget; ``auto`` is the spin-box value that stands for None."""

    declared: Declared
    widget: Widget
    auto: float | None = None

    @property
    def name(self) -> str:
        return self.declared.name

    def get(self) -> Any:
        value = self.widget.value
        if self.auto is not None and (value < self.auto or math.isclose(value, self.auto, abs_tol=1e-12)):
            return None
        if self.declared.type in (int, float) and not self.declared.spec.choices:
            return self.declared.type(value)
        return value

    def set(self, value: Any) -> None:
        self.widget.value = self.auto if value is None and self.auto is not None else value


# ------------------------------------------------------------------------ one widget
def make_field(d: Declared) -> Field | None:
    """The widget of one declared setting; None for settings not shown in widgets."""
    if not d.spec.widget:
        return None
    if d.spec.choices:
        choices = [c if isinstance(c, tuple) else (str(c), c) for c in d.spec.choices]
        if d.optional:
            choices.insert(0, (f"{AUTO_TEXT} ({d.spec.auto})" if d.spec.auto else AUTO_TEXT, None))
        field = Field(d, ComboBox(name=d.name, label=d.label, choices=choices, tooltip=d.spec.help))
    elif d.type is str:
        field = Field(d, LineEdit(name=d.name, label=d.label, tooltip=d.spec.help))
    elif d.type is bool:
        field = Field(d, CheckBox(name=d.name, text=d.label, tooltip=d.spec.help))
    elif d.type is int and d.optional:
        # magicgui's SpinBox (superqt's large-int box) cannot show "auto"; a float box with
        # no decimals can (the value is read back as an int)
        field = _spin_box(d, FloatSpinBox, *_int_range(d), step=_int_step(d.default), decimals=0)
    elif d.type is int:
        field = _spin_box(d, SpinBox, *_int_range(d), step=_int_step(d.default))
    elif d.type is float:
        decimals = _decimals(d)
        field = _spin_box(d, FloatSpinBox, *_float_range(d, decimals), step=_float_step(d, decimals),
                          decimals=decimals)
    else:
        raise TypeError(f"no widget for setting '{d.name}' of type {d.type.__name__}")
    field.set(d.default)
    return field


def _spin_box(d: Declared, cls, lo: float, hi: float, step: float, decimals: int | None = None) -> Field:
    tooltip = d.spec.help
    auto = None
    if d.optional:
        auto = _auto_value(d, lo, step)
        lo = auto
        tooltip += f" ({AUTO_TEXT}: {d.spec.auto or 'chosen automatically'})"
    widget = cls(name=d.name, label=d.label, tooltip=tooltip, step=step)
    if decimals is not None:
        widget.native.setDecimals(decimals)   # before the range and value, which Qt rounds to it
    widget.max, widget.min = hi, lo
    if auto is not None:
        widget.native.setSpecialValueText(AUTO_TEXT)   # Qt shows it at the minimum
    return Field(d, widget, auto)


def _auto_value(d: Declared, lo: float, step: float) -> float:
    """0 when 0 is not an allowed value, else one step below the allowed range (so that,
    e.g., a weight whose 0 means "off" can still be set to 0)."""
    zero_allowed = lo <= 0 and not (d.spec.min == 0 and d.spec.min_exclusive)
    if not zero_allowed:
        return 0
    return lo - step


def _int_range(d: Declared) -> tuple[int, int]:
    lo = -INT_LIMIT + 1 if d.spec.min is None else max(-INT_LIMIT + 1, math.ceil(d.spec.min))
    if d.spec.min_exclusive and lo == d.spec.min:
        lo += 1
    hi = INT_LIMIT if d.spec.max is None else min(INT_LIMIT, math.floor(d.spec.max))
    return lo, hi


def _int_step(default: int | None) -> int:
    """1, or a round tenth of the default's magnitude for large defaults (200 -> 10)."""
    if not default or abs(default) < 100:
        return 1
    return 10 ** (int(math.log10(abs(default))) - 1)


def _decimals(d: Declared) -> int:
    """Enough decimals to show the default and the range's ends exactly, and two more
    significant digits of the default (2e-4 -> 6); automatic rates (positive, at most 1:
    learning rates) get 6, other automatic settings 3."""
    if d.default is None:
        decimals = 6 if _is_rate(d) else 3
    elif d.default == 0:
        decimals = 3
    else:
        decimals = max(2, 2 - math.floor(math.log10(abs(d.default))), _places(d.default))
    return max([decimals] + [_places(x) for x in (d.spec.min, d.spec.max) if x is not None])


def _places(x: float, most: int = 8) -> int:
    """Decimal places of ``x`` as written (0.9999 -> 4), at most ``most``."""
    for places in range(most + 1):
        if round(x, places) == x:
            return places
    return most


def _is_rate(d: Declared) -> bool:
    return d.spec.min == 0 and d.spec.min_exclusive and d.spec.max is not None and d.spec.max <= 1


def _float_range(d: Declared, decimals: int) -> tuple[float, float]:
    """The declared range, rounded inwards to what the box can show."""
    unit = 10.0 ** -decimals
    lo = -FLOAT_LIMIT if d.spec.min is None else math.ceil(round(d.spec.min / unit, 6)) * unit
    if d.spec.min_exclusive and lo <= d.spec.min:
        lo += unit                     # the smallest value the box can show above the limit
    hi = FLOAT_LIMIT if d.spec.max is None else math.floor(round(d.spec.max / unit, 6)) * unit
    return round(lo, decimals), round(hi, decimals)


def _float_step(d: Declared, decimals: int) -> float:
    if d.default:
        return 10.0 ** (math.floor(math.log10(abs(d.default))) - 1)
    if _is_rate(d):
        return 1e-4
    return 0.01 if d.spec.max is not None and d.spec.max <= 1 else 0.1


# ------------------------------------------------------------------------ a whole form
class SettingFields:
    """The widgets of every declared setting of some configuration classes, split into a
    ``basic`` and an ``advanced`` container; read back with :meth:`values`."""

    def __init__(self, *config_classes: type):
        self.fields: dict[str, Field] = {}
        for cls in config_classes:
            for d in declared(cls):
                field = make_field(d)
                if field is not None:
                    self.fields[d.name] = field
        self.basic = Container(widgets=[f.widget for f in self.fields.values() if not f.declared.spec.advanced])
        self.advanced = Container(widgets=[f.widget for f in self.fields.values() if f.declared.spec.advanced])

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def widget(self, name: str) -> Widget:
        return self.fields[name].widget

    def values(self) -> dict[str, Any]:
        """{setting name: value}; automatic settings are None."""
        return {name: f.get() for name, f in self.fields.items()}

    def set_values(self, values: dict[str, Any]) -> None:
        """Show these values (names without a widget are ignored)."""
        for name, value in values.items():
            if name in self.fields:
                self.fields[name].set(value)


def align_labels(*containers: Container) -> None:
    """Give the labels of several stacked containers one width, so their fields line up."""
    from magicgui.application import use_app

    measure = use_app().get_obj("get_text_width")
    labelled = [w for c in containers for w in c if not isinstance(w, (CheckBox, Container))]
    if not labelled:
        return
    width = max(measure(w.label) for w in labelled)
    for w in labelled:
        wrapper = getattr(w, "_labeled_widget", lambda: None)()
        if wrapper is not None:
            wrapper.label_width = width
