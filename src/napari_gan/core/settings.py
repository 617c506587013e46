"""Settings declared once: default, type, range or choices, help.

A family's configuration is a dataclass whose fields are made with :func:`setting`. That
declaration is the only place a default, a range or a help text is written: the command
line (:func:`add_arguments`) and the napari widgets (``_widgets/_fields.py``) are built from
it, model headers are checked against it (:func:`from_dict`), and :func:`check` enforces the
ranges whenever a configuration is made.

A field typed ``X | None`` means "automatic" when it is ``None`` (the widget shows 0 as
*auto*); ``auto`` in its declaration says what automatic means.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

from .errors import NapariGanError

KEY = "napari_gan_setting"


@dataclass(frozen=True)
class Spec:
    """How one setting is shown and checked."""

    help: str
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None     # allowed values, or (label, value) pairs
    label: str | None = None         # widget label; default: the name in words
    flag: str | None = None          # command-line flag; default: --name-with-dashes
    advanced: bool = False           # in the widget's "advanced" section
    auto: str | None = None          # what None means, for fields typed "X | None"
    cli: bool = True
    widget: bool = True
    min_exclusive: bool = False      # min itself is not allowed (learning rates: > 0)

    def values(self) -> tuple:
        if self.choices is None:
            return ()
        return tuple(c[1] if isinstance(c, tuple) else c for c in self.choices)


def setting(default: Any, help: str, **spec) -> Any:
    """A dataclass field with its declaration (see :class:`Spec`)."""
    return dataclasses.field(default=default, metadata={KEY: Spec(help=help, **spec)})


@dataclass(frozen=True)
class Declared:
    """A declared setting of a configuration class."""

    name: str
    type: type            # int, float, bool or str
    optional: bool        # None allowed (= automatic)
    default: Any
    spec: Spec

    @property
    def flag(self) -> str:
        return self.spec.flag or "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        return self.spec.label or self.name.replace("_", " ").capitalize()

    @property
    def title(self) -> str:
        """How messages name the setting, for both faces: its label and its option."""
        return f"{self.label} ({self.flag})" if self.spec.cli else self.label


def declared(cls) -> list[Declared]:
    """The declared settings of a configuration dataclass, in field order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec = f.metadata.get(KEY)
        if spec is None:
            continue
        base, optional = _base_type(hints[f.name])
        out.append(Declared(f.name, base, optional, f.default, spec))
    return out


def _base_type(hint) -> tuple[type, bool]:
    args = typing.get_args(hint)
    if args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], len(rest) < len(args)
    return hint, False


# ------------------------------------------------------------------------- checking
def check_value(d: Declared, value: Any, where: str = "") -> Any:
    """``value`` converted to the setting's type and checked against its range or choices."""
    name = where or d.title
    if value is None:
        if d.optional:
            return None
        raise NapariGanError(f"{name} needs a value.")
    if d.type is bool:
        if not isinstance(value, (bool, int)) or isinstance(value, float):
            raise NapariGanError(f"{name} must be true or false, not {value!r}.")
        return bool(value)
    if d.type in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise NapariGanError(f"{name} must be a number, not {value!r}.")
        if d.type is int and float(value) != int(value):
            raise NapariGanError(f"{name} must be a whole number, not {value!r}.")
        value = d.type(value)
        if not math.isfinite(value):
            raise NapariGanError(f"{name} must be a finite number, not {value}.")
        lo, hi = d.spec.min, d.spec.max
        if lo is not None and (value < lo or (d.spec.min_exclusive and value == lo)):
            word = "above" if d.spec.min_exclusive else "at least"
            raise NapariGanError(f"{name} must be {word} {lo:g}, not {value:g}.")
        if hi is not None and value > hi:
            raise NapariGanError(f"{name} must be at most {hi:g}, not {value:g}.")
    elif d.type is str and not isinstance(value, str):
        raise NapariGanError(f"{name} must be text, not {value!r}.")
    allowed = d.spec.values()
    if allowed and value not in allowed:
        raise NapariGanError(f"{name} must be one of {', '.join(map(str, allowed))}, not {value!r}.")
    return value


def check(config) -> None:
    """Check (and convert in place) every declared field of a configuration object."""
    for d in declared(type(config)):
        setattr(config, d.name, check_value(d, getattr(config, d.name), d.title))


def from_dict(cls, values: dict, source: str = ""):
    """A configuration from stored values (a model header): unknown keys are ignored, values
    of the wrong type or out of range give one clear error."""
    if not isinstance(values, dict):
        raise NapariGanError(f"{source}: the configuration is not a mapping.")
    kwargs = {}
    for d in declared(cls):
        if d.name in values:
            kwargs[d.name] = check_value(d, values[d.name], f"{source}: '{d.name}'" if source else d.name)
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs.update({k: v for k, v in values.items() if k in known and k not in kwargs})
    return cls(**kwargs)


def defaults(cls) -> dict:
    return {d.name: d.default for d in declared(cls)}


# ----------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser, cls, title: str | None = None,
                  only: tuple[str, ...] | None = None) -> None:
    """One option per declared setting (shown defaults are the declared ones)."""
    group = parser.add_argument_group(title) if title else parser
    for d in declared(cls):
        if not d.spec.cli or (only is not None and d.name not in only):
            continue
        help_text = d.spec.help.replace("%", "%%")   # argparse formats help with %
        if d.spec.min is not None or d.spec.max is not None:
            help_text += f" [{_range_text(d)}]"
        if d.optional:
            help_text += f" (default: {d.spec.auto or 'automatic'})"
        elif d.type is not bool:
            help_text += f" (default: {d.default})"
        if d.type is bool:
            if d.default:
                flag = d.spec.flag or "--no-" + d.name.replace("_", "-")
                group.add_argument(flag, dest=d.name, action="store_false", default=True,
                                   help="turn off: " + help_text)
            else:
                group.add_argument(d.flag, dest=d.name, action="store_true", default=False, help=help_text)
            continue
        # choices are checked with the configuration (one "error:" line, not argparse's usage)
        group.add_argument(d.flag, dest=d.name, type=d.type, default=d.default, metavar=_metavar(d),
                           help=help_text)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _range_text(d: Declared) -> str:
    lo, hi = d.spec.min, d.spec.max
    parts = []
    if lo is not None:
        parts.append(f"{'>' if d.spec.min_exclusive else '>='} {_number(lo)}")
    if hi is not None:
        parts.append(f"<= {_number(hi)}")
    return ", ".join(parts)


def _metavar(d: Declared) -> str | None:
    if d.spec.choices:
        return "{" + ",".join(map(str, d.spec.values())) + "}"
    return None


def from_args(cls, args: argparse.Namespace, **extra):
    """A configuration from parsed arguments (every declared field that the parser has)."""
    kwargs = {d.name: getattr(args, d.name) for d in declared(cls) if hasattr(args, d.name)}
    kwargs.update(extra)
    return cls(**kwargs)
