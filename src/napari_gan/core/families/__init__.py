"""Model families: one module each, listed in one registry.

A family declares what the command line and the widgets need to know, so neither face
has to name a family:

* ``config_class``: a dataclass of settings declared once (:mod:`napari_gan.core.settings`);
* ``inputs``: the image sets it trains on (``--input``/``--target``, ``--images``, ...);
* ``apply_mode``: ``"image"`` (restores or translates an input image: ``predict``) or
  ``"noise"`` (generates images from Gaussian noise: ``generate``);
* ``plot``: the losses and metrics its live plot shows;
* ``make_config``, ``make_trainer``, ``load_applier``, ``describe``: the calls behind them;
* ``bioimageio_exporter``: how its models become bioimage.io packages (``napari-gan export``).

A new family is one module that defines a :class:`Family` subclass and calls
:func:`register`; :func:`all_families` is what the faces iterate.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import NapariGanError

if TYPE_CHECKING:
    import torch

    from ..export import Exporter
    from ..training.base import Budget, Trainer

BUILTIN = ("pix2pix", "stylegan2", "cyclegan")

_registry: dict[str, "Family"] = {}
_loaded = False


@dataclass(frozen=True)
class DataInput:
    """One set of training images a family needs: ``--NAME PATH`` on the command line, a
    layer picker in the Train widget."""

    name: str
    help: str
    label: str | None = None
    optional: bool = False
    paired_with: str | None = None   # files matched by name with this input's files

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Plot:
    """What the live plot and status line show for a family."""

    losses: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()      # validation metrics (the first one is the score)
    status: tuple[str, ...] = ()       # other values of the progress events shown as text


class Family:
    """Base of every family; subclasses set the class attributes and implement the calls."""

    name: str = ""
    title: str = ""
    summary: str = ""
    config_class: type = object
    inputs: tuple[DataInput, ...] = ()
    apply_mode: str = "image"          # "image" (predict) or "noise" (generate)
    plot: Plot = Plot()
    networks: tuple[str, ...] = ("generator",)   # networks stored in model files

    @property
    def apply_settings(self) -> type:
        """The settings of applying a model of this family (predict or generate)."""
        if self.apply_mode == "noise":
            from ..generation import GenerateSettings

            return GenerateSettings
        from ..inference import PredictSettings

        return PredictSettings

    # ------------------------------------------------------------------ settings
    def make_config(self, values: dict[str, Any], device: "torch.device"):
        """A checked configuration from setting values (missing ones take their defaults)."""
        from .. import settings

        known = {d.name for d in settings.declared(self.config_class)}
        cfg = self.config_class(**{k: v for k, v in values.items() if k in known})
        settings.check(cfg)
        return cfg

    architecture_fields: tuple[str, ...] = ()   # config fields stored as the file's architecture

    def config_from_header(self, header):
        """The configuration stored in a model file or training state, checked against the
        declarations (architecture plus the training record)."""
        from .. import settings

        return settings.from_dict(self.config_class, stored_config(header), f"'{header.path}'")

    def split_config(self, cfg) -> tuple[dict, dict]:
        """(architecture, training record) of a configuration, as stored in model files."""
        values = dataclasses.asdict(cfg)
        arch = {k: v for k, v in values.items() if k in self.architecture_fields}
        return arch, {k: v for k, v in values.items() if k not in arch}

    # ------------------------------------------------------------------ training
    def make_trainer(self, cfg, images: dict[str, list], out_dir, budget: "Budget",
                     device: "torch.device", seed: int, normalization: dict | None,
                     **run) -> "Trainer":
        """A trainer on ``images`` (input name -> list of (C, H, W) planes with names);
        ``normalization`` is the stored one when resuming."""
        raise NotImplementedError

    def read_input(self, inp: DataInput, path, read) -> "Images | None":
        """The images of an unpaired input read by the family itself, or None for the usual
        reading (:func:`images_from_files`); ``read(file)`` gives a file's (C, H, W) planes.
        StyleGAN2 reads one sub-folder per class this way."""
        return None

    # ------------------------------------------------------------------ applying
    def load_applier(self, header, device: str = "auto", amp: bool = True):
        """A ready predictor (apply_mode "image") or generator (apply_mode "noise")."""
        raise NotImplementedError

    def describe(self, header) -> str:
        """One line about a model file of this family, from its header."""
        return f"{self.title} model"

    def output_scale(self, cfg) -> int:
        """How many output pixels per input pixel along Y and X (super-resolution)."""
        return 1

    # ------------------------------------------------------------------ exporting
    def bioimageio_exporter(self) -> "Exporter | None":
        """How models of this family become bioimage.io packages (an
        :class:`~napari_gan.core.export.Exporter`), or None where they cannot. Families import
        their exporter inside this method, so importing a family imports neither the export
        code nor bioimage.io."""
        return None


def stored_config(header) -> dict:
    """Every configuration value a file holds: its training record, then its architecture."""
    training = header.raw.get("training") if isinstance(header.raw, dict) else None
    return {**(training if isinstance(training, dict) else {}), **header.architecture}


def register(family: Family) -> Family:
    _load_builtin()
    if not family.name or family.name in _registry:
        raise ValueError(f"family name {family.name!r} is empty or already registered")
    if family.apply_mode not in ("image", "noise"):
        raise ValueError(f"apply_mode must be 'image' or 'noise', not {family.apply_mode!r}")
    _registry[family.name] = family
    return family


def unregister(name: str) -> None:
    _registry.pop(name, None)


def _load_builtin() -> None:
    global _loaded
    if not _loaded:   # set first: the built-in modules call register() as they load
        _loaded = True
        for name in BUILTIN:
            importlib.import_module(f"{__name__}.{name}")


def all_families() -> list[Family]:
    """The registered families: the built-in ones in BUILTIN order, then the others."""
    _load_builtin()
    rank = {name: i for i, name in enumerate(BUILTIN)}
    ordered = sorted(enumerate(_registry.values()), key=lambda item: (rank.get(item[1].name, len(rank)), item[0]))
    return [family for _, family in ordered]


def get(name: str) -> Family:
    _load_builtin()
    if name not in _registry:
        raise NapariGanError(f"Unknown model family '{name}'; this napari-gan knows "
                             f"{', '.join(_registry)}.")
    return _registry[name]


def for_header(header) -> Family:
    """The family of a model file (a clear error for one this version does not know)."""
    _load_builtin()
    if header.family not in _registry:
        raise NapariGanError(f"'{header.path}' holds a '{header.family}' model, which this version of "
                             f"napari-gan cannot use (it knows {', '.join(_registry)}).")
    return _registry[header.family]


@dataclass
class Images:
    """Training images of one input: (C, H, W) planes (possibly memory-mapped), names, and for
    class-conditional training the class name of each plane (empty: no classes)."""

    planes: list = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


def images_from_files(family: Family, paths: dict, channels: int = 1, axes: str | None = None,
                      series: int | None = None, level: int = 0) -> dict[str, Images]:
    """Read every given input of ``family`` from TIFF files, OME-Zarr folders (``.zarr``) or
    folders of them (TIFFs memory-mapped where possible; OME-Zarr lazily, level ``level``:
    planes are views read patch by patch), channels taken from each file's axes (``axes``
    overrides the files' metadata; ``series`` picks the image of files that hold several).
    Inputs paired with another are matched to it by file name, plane by plane."""
    from .. import axes as axes_mod
    from ..io import expand_paths, match_pairs

    def planes_of(path):
        image = axes_mod.read_image(path, axes=axes, series=series, level=level)
        image.name = f"'{path.name}'"
        stack, _ = axes_mod.to_planes(image, channels)
        return [stack[i] for i in range(len(stack))]

    def label(path, i, n):
        return f"'{path.name}'" if n == 1 else f"'{path.name}' plane {i + 1}"

    out: dict[str, Images] = {}
    for inp in family.inputs:
        if paths.get(inp.name) is None or inp.paired_with:
            continue
        partners = [p for p in family.inputs if p.paired_with == inp.name and paths.get(p.name) is not None]
        if not partners:
            own = family.read_input(inp, paths[inp.name], planes_of)
            if own is not None:
                out[inp.name] = own
                continue
            files = expand_paths(paths[inp.name])
            images = out.setdefault(inp.name, Images())
            for f in files:
                planes = planes_of(f)
                images.planes += planes
                images.names += [label(f, i, len(planes)) for i in range(len(planes))]
            continue
        for partner in partners:
            first, second = out.setdefault(inp.name, Images()), out.setdefault(partner.name, Images())
            for a, b in match_pairs(paths[inp.name], paths[partner.name]):
                pa, pb = planes_of(a), planes_of(b)
                if len(pa) != len(pb):
                    raise NapariGanError(f"'{a.name}': the {inp.title.lower()} has {len(pa)} plane(s) but the "
                                         f"{partner.title.lower()} has {len(pb)}.")
                first.planes += pa
                second.planes += pb
                first.names += [label(a, i, len(pa)) for i in range(len(pa))]
                second.names += [label(b, i, len(pb)) for i in range(len(pb))]
    missing = [p for p in family.inputs if p.paired_with and paths.get(p.name) is not None
               and paths.get(p.paired_with) is None]
    if missing:
        partner = "--" + missing[0].paired_with.replace("_", "-")
        raise NapariGanError(f"{missing[0].flag} needs {partner} too.")
    return out


MODE_COMMANDS = {"image": "predict", "noise": "generate"}


def open_model(path, mode: str | None = None, device: str = "auto", amp: bool = True,
               options: dict | None = None):
    """``(family, header, applier)`` for a model file or run folder, reading the file once;
    ``mode`` ("image" or "noise") refuses a model of the other kind with a clear message.
    ``options``: apply-setting values (e.g. every predict option); those the family's
    ``apply_settings`` adds to the shared ones (CycleGAN's ``direction``) are checked and passed
    to its ``load_applier``."""
    from .. import checkpoint

    header = checkpoint.read_header(checkpoint.resolve_model_path(path), expect_role="model")
    family = for_header(header)
    if mode is not None and family.apply_mode != mode:
        does = "generates images from noise" if family.apply_mode == "noise" else "needs an input image"
        raise NapariGanError(f"'{header.path}' is a {family.title} model, which {does}; use "
                             f"'napari-gan {MODE_COMMANDS[family.apply_mode]}' (or Generate Data in napari).")
    extra = applier_options(family, options or {}, f"'{header.path}'")
    return family, header, family.load_applier(header, device, amp=amp, **extra)


def own_apply_settings(family: Family) -> list:
    """The apply settings ``family`` declares beyond those every family of its apply mode
    shares (e.g. CycleGAN's direction): the extra arguments of its ``load_applier``, which
    also choose what an export packages."""
    from .. import settings

    shared = {d.name for d in settings.declared(Family.apply_settings.fget(family))}
    return [d for d in settings.declared(family.apply_settings) if d.name not in shared]


def applier_options(family: Family, options: dict, model: str = "this model") -> dict:
    """The values in ``options`` of the apply settings that ``family`` adds to the shared ones
    (PredictSettings or GenerateSettings), checked against their declarations. A value other
    than the default for a setting only other families declare is refused (e.g. a direction
    for a Pix2Pix model)."""
    from .. import settings

    if not options:
        return {}
    own = {d.name for d in settings.declared(family.apply_settings)}
    shared = {d.name for d in settings.declared(Family.apply_settings.fget(family))}
    for other in all_families():   # of either apply mode: export takes every family's options
        for d in settings.declared(other.apply_settings):
            if d.name not in own and d.name in options and options[d.name] != d.default:
                raise NapariGanError(f"{d.flag} applies to {other.title} models; {model} is a {family.title} "
                                     "model.")
    names = [n for n in own - shared if n in options]
    if not names:
        return {}
    checked = family.apply_settings(**{n: options[n] for n in own if n in options})
    return {n: getattr(checked, n) for n in names}
