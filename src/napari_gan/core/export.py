"""Exporting models to other formats: a bioimage.io (BioImage Model Zoo) model package.

:func:`export_bioimageio` writes a bioimage.io model package (spec 0.5, a zip) from a
napari-gan model file or run folder. Each family says how its models are exported: its
``bioimageio_exporter()`` returns an :class:`Exporter` (refusals, default texts, the
family's tensors, weights and README sections), so nothing here names a family:

* **Pix2Pix** (denoising, x2/x4 super-resolution, any number of channels): TorchScript
  weights and ``pytorch_state_dict`` weights whose architecture is
  :mod:`napari_gan.core.bioimageio_unet` (a standalone, torch-only file shipped in the
  package, with the uNet's settings from the model file as its kwargs); axes ``batch,
  channel, y, x``, input sizes ``min + n * 2**depth`` with ``min`` leaving room for the
  halo, output Y/X declared as ``scale`` times the input (their ``scale``, the pixel size,
  is ``1/scale``), a halo of half the uNet's receptive field (napari-gan's own tile
  overlap). A fixed (data-set) input normalisation is the zoo's ``scale_linear``
  pre-processing, the target's range its ``scale_linear`` post-processing; per-image
  input normalisation (percentiles of 4x4 block means, which no zoo operation computes) is
  done inside the network, and the package's documentation says so.
* **CycleGAN**: one direction (``a2b`` by default, ``b2a`` with ``options={"direction":
  "b2a"}``), exported like Pix2Pix's denoisers: the generator's standalone, torch-only file
  is :mod:`napari_gan.core.bioimageio_resnet` (the default ResNet) or
  :mod:`napari_gan.core.bioimageio_unet`; the source domain's normalisation is the
  pre-processing (per image, CycleGAN's default: inside the network), the target domain's
  range the post-processing.
* **StyleGAN2**: the zoo format (0.5) lets an input have no spatial axis, so a generator
  is exported too: input ``z`` with axes ``batch, index`` (z_dim), output ``batch, channel,
  y, x`` of the model's resolution; fixed noise, no truncation (``napari-gan generate``'s
  defaults); post-processing maps the network's [-1, 1] to the training images' intensities.

The test output is computed by napari-gan's own predictor or generator (float32), so the
package reproduces ``napari-gan predict`` / ``generate``; the test input is a given TIFF
(cropped to a valid size) or, because model files do not store their training data, a
deterministic synthetic image in the input's intensity range. The napari-gan model file
itself is an attachment of the package (:data:`PACKAGE_MODEL_FILE`), so ``napari-gan
predict --model NAME.zip`` works without the run folder (:func:`model_file_from_package`,
which needs only the standard library).

bioimage.io packages (``bioimageio.spec``/``bioimageio.core``, the optional extra
``napari-gan[bioimageio]``) are imported only inside :func:`export_bioimageio` and
:func:`check_package`; importing this module imports neither them nor torch.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import NapariGanError

FORMATS = ("bioimageio",)
#: the napari-gan model file inside the packages napari-gan exports
PACKAGE_MODEL_FILE = "napari_gan_model.safetensors"
#: key of napari-gan's own record in the package's ``config``
CONFIG_KEY = "napari_gan"
DEFAULT_LICENSE = "CC-BY-4.0"
#: side of the default (synthetic) test input, rounded up to a valid size
TEST_SIZE = 128
#: test inputs cut from a given image are at most this large (input pixels per side)
MAX_TEST_SIZE = 256
#: the zoo's reproducibility tolerance: relative, and absolute as a fraction of the output range
RELATIVE_TOLERANCE = 1e-3
ABSOLUTE_TOLERANCE = 1e-3
INSTALL_HINT = "pip install 'napari-gan[bioimageio]'"
COVER_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif")
_NAME_CHARS = re.compile(r"^[A-Za-z0-9_+\- ()]+$")
_DOI = re.compile(r"^10\.\d{4,9}/\S+$")
_DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "http://dx.doi.org/",
                 "doi:", "DOI:")


# ----------------------------------------------------------------- reading a package
_extracted: dict[tuple, Path] = {}
_extract_dir: Path | None = None


def _package_dir() -> Path:
    global _extract_dir
    if _extract_dir is None or not _extract_dir.is_dir():
        _extract_dir = Path(tempfile.mkdtemp(prefix="napari-gan-packages-"))
        atexit.register(shutil.rmtree, _extract_dir, True)
    return _extract_dir


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip file holding a napari-gan model file (a package napari-gan
    exported); never raises."""
    try:
        with zipfile.ZipFile(path) as zf:
            return PACKAGE_MODEL_FILE in zf.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def model_file_from_package(path: str | os.PathLike) -> Path:
    """The napari-gan model file inside a bioimage.io package that napari-gan exported,
    extracted to a temporary file (removed when the program ends; extracted once per
    package and version of it). Standard library only: using a package needs no bioimage.io
    software."""
    from .checkpoint import default_max_bytes

    path = Path(path)
    try:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if key in _extracted and _extracted[key].is_file():
            return _extracted[key]
        with zipfile.ZipFile(path) as zf:
            try:
                info = zf.getinfo(PACKAGE_MODEL_FILE)
            except KeyError:
                raise NapariGanError(
                    f"'{path}' is a zip file but not a model package exported by napari-gan (it holds no "
                    f"{PACKAGE_MODEL_FILE}); napari-gan can use the bioimage.io packages it exported.") from None
            limit = 2 * default_max_bytes()
            if info.file_size > limit:
                raise NapariGanError(f"'{path}': its model file claims {info.file_size:,} bytes, more than the "
                                     f"{limit:,} allowed here; the package is damaged.")
            folder = Path(tempfile.mkdtemp(prefix=f"{path.stem[:40]}-", dir=_package_dir()))
            dest = folder / PACKAGE_MODEL_FILE
            with zf.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)   # zipfile checks the size and CRC at the end
    except zipfile.BadZipFile as exc:
        raise NapariGanError(f"'{path}' is not a readable zip file ({exc}).") from exc
    except OSError as exc:
        raise NapariGanError(f"Could not read '{path}': {exc.strerror or exc}.") from exc
    _extracted[key] = dest
    return dest


# ------------------------------------------------------------------ checking inputs
@dataclass
class PackageInfo:
    """The descriptive fields of a package, checked."""

    name: str
    description: str
    authors: list[str]
    license: str
    cite: list[tuple[str, str | None, str | None]] = field(default_factory=list)   # (text, doi, url)


def split_authors(authors: str | Sequence[str] | None) -> list[str]:
    """Author names from "Name; Name2" strings (one or several)."""
    if authors is None:
        return []
    items = [authors] if isinstance(authors, str) else list(authors)
    return [part.strip() for item in items for part in str(item).split(";") if part.strip()]


def _check_info(name, description, authors, license, cite) -> PackageInfo:
    name = (name or "").strip()
    if not 5 <= len(name) <= 128 or not _NAME_CHARS.match(name):
        raise NapariGanError(
            f"The model name {name!r} must be 5 to 128 characters of letters, digits, spaces, "
            "'_', '-', '+' and parentheses (the bioimage.io rule).")
    description = (description or "").strip()
    if not description:
        raise NapariGanError("Give a short description of the model (what it does, on which images).")
    if len(description) > 1024:
        raise NapariGanError(f"The description is {len(description)} characters long; bioimage.io allows 1024.")
    names = split_authors(authors)
    if not names:
        raise NapariGanError("Give at least one author (names separated by ';').")
    for a in names:
        if "/" in a:
            raise NapariGanError(f"The author name {a!r} may not contain '/'.")
    license = (license or "").strip()
    if not license:
        raise NapariGanError(f"Give a licence as an SPDX identifier, e.g. {DEFAULT_LICENSE} or MIT.")
    cites = []
    for c in cite or ():
        c = str(c).strip()
        doi = c
        for prefix in _DOI_PREFIXES:
            if doi.startswith(prefix):
                doi = doi[len(prefix):]
        if _DOI.match(doi):
            cites.append((f"https://doi.org/{doi}", doi, None))
        elif re.match(r"^https?://\S+\.\S+$", c):
            cites.append((c, None, c))
        else:
            raise NapariGanError(f"The citation {c!r} is neither a DOI (10.xxxx/...) nor a web address (https://...).")
    return PackageInfo(name, description, names, license, cites)


def _check_paths(output: Path, model_arg: Path, model_file: Path, test_input: Path | None,
                 cover: Path | None) -> Path:
    from .io import check_output, same_file

    if test_input is not None:
        if not test_input.is_file():
            raise NapariGanError(f"The test input '{test_input}' does not exist.")
        if test_input.suffix.lower() not in (".tif", ".tiff"):
            raise NapariGanError(f"The test input '{test_input}' must be a TIFF file (.tif or .tiff).")
    if cover is not None:
        if not cover.is_file():
            raise NapariGanError(f"The cover image '{cover}' does not exist.")
        if cover.suffix.lower() not in COVER_SUFFIXES:
            raise NapariGanError(f"The cover image '{cover}' must be a {', '.join(COVER_SUFFIXES)} file.")
    protected = [(model_arg if model_arg.is_file() else None, "the model file"),
                 (model_file, "the model file"), (test_input, "the test input"), (cover, "the cover image")]
    for other, what in protected:   # before the suffix check: say what it would have replaced
        if other is not None and same_file(output, other):
            raise NapariGanError(f"The output '{output}' would replace {what} '{other}'; napari-gan never "
                                 "writes over its inputs or models. Choose another output.")
    return check_output(output, protected, suffixes=(".zip",), option="The output",
                        replace=is_package)


def _import_bioimageio():
    try:
        import bioimageio.core  # noqa: F401
        import bioimageio.spec  # noqa: F401
    except ImportError as exc:
        raise NapariGanError(
            f"Exporting to bioimage.io needs the bioimageio packages, which are not installed ({exc.name}): "
            f"{INSTALL_HINT}") from exc


def _progress(progress) -> Callable[[int, str], None]:
    def say(step: int, message: str) -> None:
        if progress is not None:
            progress(step, TOTAL_STEPS, message)
    return say


TOTAL_STEPS = 5


# --------------------------------------------------------------------- test images
def valid_size(size: int, minimum: int, step: int) -> int:
    """The smallest ``minimum + n * step`` at least ``size``."""
    return minimum + max(0, -(-(size - minimum) // step)) * step


def _largest_valid(size: int, minimum: int, step: int) -> int:
    return minimum + max(0, (size - minimum) // step) * step


def synthetic_image(channels: int, size: int, low: Sequence[float], high: Sequence[float],
                    seed: int = 0) -> np.ndarray:
    """A deterministic ``(C, size, size)`` float32 test image: smooth structures, a few
    bright spots and mild noise, spanning each channel's ``low``..``high`` range."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = np.empty((channels, size, size), np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(channels):
        base = gaussian_filter(rng.random((size, size)), size / 16)
        base = (base - base.min()) / max(np.ptp(base), 1e-12)
        for _ in range(6):
            cy, cx = rng.uniform(0, size, 2)
            r = rng.uniform(size / 40, size / 15)
            base += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        base += rng.normal(0, 0.05, base.shape)
        base = (base - base.min()) / max(np.ptp(base), 1e-12)
        out[c] = low[c] + base * (high[c] - low[c])
    return out


def _test_plane(test_input: Path | None, channels: int, minimum: int, step: int, norm) -> tuple[np.ndarray, str]:
    """A ``(C, S, S')`` float32 test input of a valid size, and where it came from."""
    if test_input is None:
        size = valid_size(TEST_SIZE, minimum, step)
        return synthetic_image(channels, size, norm.low, norm.high), (
            f"a synthetic {size}x{size} image (napari-gan model files do not store their training data)")
    from .axes import read_image, to_planes

    image = read_image(test_input)
    planes, _ = to_planes(image, channels)
    plane = planes[0]
    h, w = plane.shape[-2:]
    if min(h, w) < minimum:
        raise NapariGanError(f"The test input '{test_input}' is {h}x{w} pixels; this model's package needs at "
                             f"least {minimum}x{minimum}.")
    th, tw = (_largest_valid(min(n, MAX_TEST_SIZE), minimum, step) for n in (h, w))
    y0, x0 = (h - th) // 2, (w - tw) // 2
    crop = np.asarray(plane[:, y0:y0 + th, x0:x0 + tw], np.float32)
    if not np.isfinite(crop).all():
        raise NapariGanError(f"The test input '{test_input}' holds NaN or infinite values.")
    return crop, f"a {th}x{tw} crop of '{test_input.name}' (rows {y0}-{y0 + th}, columns {x0}-{x0 + tw})"


def _contrast(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, (0.5, 99.5))
    return np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1)


def make_cover(path: Path, left: np.ndarray, right: np.ndarray, titles: tuple[str, str]) -> Path:
    """A PNG of two images side by side (first channel, 0.5-99.5 percentile contrast)."""
    from matplotlib.figure import Figure   # no pyplot: no backend is chosen or changed

    fig = Figure(figsize=(8, 4), dpi=80)
    for i, (image, title) in enumerate(zip((left, right), titles)):
        ax = fig.add_axes((i / 2 + 0.01, 0.01, 0.48, 0.88))
        ax.imshow(_contrast(np.asarray(image, np.float64)), cmap="magma", interpolation="nearest")
        ax.set_title(title, fontsize=12)
        ax.set_axis_off()
    fig.savefig(path, format="png")
    return path


# ----------------------------------------------------------------------- documents
def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _record_lines(header) -> list[str]:
    record = header.raw.get("record") if isinstance(header.raw.get("record"), dict) else {}
    lines = []
    if header.step is not None:
        lines.append(f"- Training steps: {header.step}")
    for key, label in (("train_images", "Training images"), ("validation_images", "Validation images"),
                       ("validation", "Validation data"), ("elapsed_s", "Training time (s)")):
        if key in record:
            lines.append(f"- {label}: {_fmt(record[key])}")
    if header.raw.get("saved"):
        lines.append(f"- Saved: {header.raw['saved']} by napari-gan {header.raw.get('napari_gan_version', '?')}")
    return lines


def _metric_lines(header) -> list[str]:
    if not header.metrics:
        return ["No validation metrics were stored with this model."]
    return ["| metric | value |", "| --- | --- |"] + [f"| {k} | {_fmt(v)} |" for k, v in header.metrics.items()]


def _norm_text(norm, what: str) -> str:
    ranges = ", ".join(f"channel {c}: {lo:.6g} to {hi:.6g}" for c, (lo, hi) in enumerate(zip(norm.low, norm.high)))
    return f"{what} (percentiles {norm.percentiles[0]:g}-{norm.percentiles[1]:g}): {ranges}"


def default_texts(model_path: str | os.PathLike, options: dict | None = None) -> tuple[str, str]:
    """A default name and description for the package of a model file or run folder;
    ``options``: the family's own apply settings (e.g. CycleGAN's ``direction``)."""
    from . import checkpoint, families

    header = checkpoint.read_header(checkpoint.resolve_model_path(model_path), expect_role="model")
    family = families.for_header(header)
    exporter = family.bioimageio_exporter()
    if exporter is None:
        return f"napari-gan {family.title} model", f"{family.title} model trained with napari-gan."
    options = families.applier_options(family, dict(options or {}), f"'{header.path}'")
    return exporter.default_texts(family, families.stored_config(header), options)


# ---------------------------------------------------------------------- the export
@dataclass
class _Parts:
    """What a family contributes to a package."""

    inputs: list
    outputs: list
    weights: object
    test_input: Path
    test_output: Path
    cover_images: tuple[np.ndarray, np.ndarray, tuple[str, str]]
    tags: list[str]
    task: str
    architecture_type: str
    readme: str                  # the family's sections of the README
    output_range: float
    test_source: str             # where the test input came from
    usage: str                   # the napari-gan command that uses the package
    test_note: str               # how the test output was computed
    validation_note: str         # what the stored metrics measure


class Exporter:
    """How the models of one family become bioimage.io packages. A family's
    ``bioimageio_exporter()`` returns one; :func:`export_bioimageio` calls :meth:`check`
    before writing anything, then :meth:`parts` with bioimage.io imported."""

    #: the paper of the method the family's networks follow, ``(text, DOI)``: cited by every package
    cite: tuple[str, str] = ("", "")
    #: whether a TIFF may be given as the test input (families that generate from noise: no)
    takes_test_input: bool = True

    def check(self, family, header, test_input: Path | None) -> None:
        """Refuse, with a :class:`NapariGanError`, a model this exporter cannot package."""
        if test_input is not None and not self.takes_test_input:
            raise NapariGanError(f"A {family.title} model generates images from noise; it takes no test input "
                                 "image.")

    def default_texts(self, family, stored: dict, options: dict) -> tuple[str, str]:
        """A default package name and description from the model's stored configuration."""
        return f"napari-gan {family.title} model", f"{family.title} model trained with napari-gan."

    def parts(self, family, header, staging: Path, test_input: Path | None, bio, options: dict) -> _Parts:
        """Weights, tensors, test files and texts, written to ``staging``; ``bio`` is
        ``bioimageio.spec.model.v0_5``, ``options`` the checked apply settings of the family's own."""
        raise NotImplementedError


def exportable_titles() -> list[str]:
    """The titles of the families whose models napari-gan exports."""
    from . import families

    return [f.title for f in families.all_families() if f.bioimageio_exporter() is not None]


def export_bioimageio(model_path: str | os.PathLike, output_zip: str | os.PathLike, name: str,
                      description: str, authors: str | Sequence[str], license: str = DEFAULT_LICENSE,
                      cite: Sequence[str] = (), test_input: str | os.PathLike | None = None,
                      cover: str | os.PathLike | None = None,
                      progress: Callable[[int, int, str], None] | None = None,
                      options: dict | None = None) -> Path:
    """Write a bioimage.io model package (spec 0.5) of a napari-gan model; returns its path.

    ``model_path``: a model file, run folder or package napari-gan exported; ``authors``:
    names (a list, or "Name; Name2"); ``license``: an SPDX identifier; ``cite``: DOIs or
    web addresses (the method's paper is always cited); ``test_input``: a TIFF (default: a
    synthetic image); ``cover``: an image file (default: test input and output side by
    side); ``options``: the apply settings the model's family adds to the shared ones, which
    choose what is exported (CycleGAN's ``direction``: ``a2b`` by default).
    ``progress(step, total, message)`` is called between the stages (for a widget's
    worker). Every problem is a :class:`NapariGanError`; nothing is written unless the whole
    package is complete and valid.
    """
    from . import checkpoint, families

    say = _progress(progress)
    model_arg = Path(model_path).expanduser()
    output = Path(output_zip).expanduser()
    test_input = Path(test_input).expanduser() if test_input else None
    cover = Path(cover).expanduser() if cover else None

    say(0, "reading the model")
    header = checkpoint.read_header(checkpoint.resolve_model_path(model_arg), expect_role="model")
    family = families.for_header(header)
    exporter = family.bioimageio_exporter()
    if exporter is None:
        raise NapariGanError(f"'{header.path}' is a {family.title} model; napari-gan exports "
                             f"{' and '.join(exportable_titles())} models to bioimage.io.")
    options = families.applier_options(family, dict(options or {}), f"'{header.path}'")
    exporter.check(family, header, test_input)
    output = _check_paths(output, model_arg, header.path, test_input, cover)
    info = _check_info(name, description, authors, license, cite)
    _import_bioimageio()
    import bioimageio.spec.model.v0_5 as bio
    from bioimageio.spec import ValidationContext, save_bioimageio_package
    from pydantic import ValidationError

    try:
        license_id = bio.LicenseId(info.license)
    except (ValidationError, ValueError) as exc:
        raise NapariGanError(f"'{info.license}' is not an SPDX licence identifier that bioimage.io accepts "
                             f"(e.g. {DEFAULT_LICENSE}, CC0-1.0, MIT, BSD-3-Clause).") from exc

    with tempfile.TemporaryDirectory(prefix="napari-gan-export-") as tmp:
        staging = Path(tmp)
        say(1, "computing the test output with napari-gan")
        parts = exporter.parts(family, header, staging, test_input, bio, options)
        say(2, "writing the weights, cover and documentation")
        cover_path = staging / ("cover" + cover.suffix.lower()) if cover else staging / "cover.png"
        if cover:
            shutil.copyfile(cover, cover_path)
        else:
            make_cover(cover_path, *parts.cover_images)
        model_copy = staging / PACKAGE_MODEL_FILE
        shutil.copyfile(header.path, model_copy)
        readme = staging / "README.md"
        readme.write_text(_readme(parts, header, info), encoding="utf-8")
        arch_config = {k: v for k, v in header.architecture.items()}
        say(3, "describing the package")
        # cited web addresses are checked for their form only: nothing is fetched
        urls = {url: None for _, _, url in info.cite if url}
        context = ValidationContext(root=staging, perform_io_checks=True, known_files=dict(urls),
                                    log_warnings=False)
        try:
            with context, _quiet_bioimageio():
                method_text, method_doi = exporter.cite
                cites = [bio.CiteEntry(text=method_text, doi=bio.Doi(method_doi))]
                cites += [bio.CiteEntry(text=text, doi=bio.Doi(doi) if doi else None, url=url)
                          for text, doi, url in info.cite]
                record = {"model_file": PACKAGE_MODEL_FILE, "family": family.name, "architecture": arch_config,
                          "normalization": header.normalization, "napari_gan_version": _version()}
                if options:
                    record["options"] = options   # what was exported, e.g. the direction
                descr = bio.ModelDescr(
                    format_version=bio.ModelDescr.implemented_format_version, type="model",
                    name=info.name, description=info.description,
                    authors=[bio.Author(name=a) for a in info.authors], cite=cites, license=license_id,
                    documentation=bio.FileDescr(source=readme), covers=[bio.FileDescr(source=cover_path)],
                    attachments=[bio.FileDescr(source=model_copy)],
                    tags=parts.tags, inputs=parts.inputs, outputs=parts.outputs, weights=parts.weights,
                    config=bio.Config(
                        bioimageio=bio.BioimageioConfig(
                            reproducibility_tolerance=[bio.ReproducibilityTolerance(
                                relative_tolerance=RELATIVE_TOLERANCE,
                                absolute_tolerance=_absolute_tolerance(parts))],
                            architecture_type=parts.architecture_type, task=parts.task),
                        **{CONFIG_KEY: record}),
                )
                say(4, "packaging and validating")
                # the description was just validated with its files; bioimageio re-reads the written
                # package, and would look up cited web addresses again (it forgets the known ones)
                with context.replace(perform_io_checks=False):
                    staged = save_bioimageio_package(descr, output_path=staging / "package.zip")
        except ValidationError as exc:
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise NapariGanError(f"The bioimage.io description is invalid at {where or 'its top'}: "
                                 f"{first.get('msg', exc)}.") from exc
        except ValueError as exc:   # save_bioimageio_package: the written package does not validate
            raise NapariGanError(f"The bioimage.io package did not validate: {str(exc).splitlines()[0][:300]}") from exc

        from .io import atomic_write

        atomic_write(output, lambda dst: shutil.copyfile(staged, dst))
    say(TOTAL_STEPS, "done")
    return output


@contextlib.contextmanager
def _quiet_bioimageio():
    """Silence bioimageio.spec's warnings about its own re-reading of the file list of a
    package (harmless: it cannot hash files outside the package's root)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found mapping with 'source' and", category=UserWarning)
        yield


def _version() -> str:
    from .. import __version__

    return __version__


def check_package(path: str | os.PathLike, weight_format: str | None = None) -> tuple[bool, str]:
    """Run bioimage.io's own test of a package (``bioimageio.core.test_model``) on the CPU:
    ``(passed, summary)``, the summary one line per failed check (or "all N checks passed")."""
    _import_bioimageio()
    from bioimageio.core import test_model

    with _quiet_bioimageio():   # note: the test looks up cited web addresses (warnings when offline)
        summary = test_model(str(path), weight_format=weight_format, devices=["cpu"])
    failed = [d for d in summary.details if d.status == "failed"]
    if not failed:
        return True, f"all {len(summary.details)} checks of bioimage.io's test passed"
    lines = []
    for d in failed:
        msg = d.errors[0].msg if d.errors else ""
        lines.append(f"{d.name}: {msg.splitlines()[0][:300] if msg else 'failed'}")
    return False, "; ".join(lines)


# ------------------------------------------------------------------ package pieces
def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _channel_axis(bio, n: int, prefix: str = "channel"):
    return bio.ChannelAxis(channel_names=[f"{prefix}{i}" for i in range(n)])


def _scale_linear(bio, gain: list[float], offset: list[float]):
    """A per-channel ``x * gain + offset`` step, or ``None`` when it is the identity."""
    if all(g == 1.0 for g in gain) and all(o == 0.0 for o in offset):
        return None
    return bio.ScaleLinearDescr(kwargs=bio.ScaleLinearAlongAxisKwargs(
        axis=bio.AxisId("channel"), gain=[float(g) for g in gain], offset=[float(o) for o in offset]))


def _ensure_float32(bio):
    return bio.EnsureDtypeDescr(kwargs=bio.EnsureDtypeKwargs(dtype="float32"))


def _torch_version(bio):
    import torch

    return bio.Version(torch.__version__.split("+")[0])


def _weights(bio, state_file: Path, script_file: Path, arch_file: Path, callable_name: str, kwargs: dict,
             how: str):
    """Both weight formats: the state_dict with its standalone architecture file, and TorchScript."""
    return bio.WeightsDescr(
        pytorch_state_dict=bio.PytorchStateDictWeightsDescr(
            source=state_file, pytorch_version=_torch_version(bio),
            architecture=bio.ArchitectureFromFileDescr(source=arch_file, callable=bio.Identifier(callable_name),
                                                       kwargs=kwargs)),
        torchscript=bio.TorchscriptWeightsDescr(source=script_file, pytorch_version=_torch_version(bio),
                                                parent="pytorch_state_dict",
                                                comment=f"{how} of the pytorch_state_dict network"))


# --------------------------------------------------- image-to-image (Pix2Pix, CycleGAN)
@dataclass
class _Network:
    """A standalone, torch-only network file shipped in a package, and its class's kwargs
    (without the per-image normalisation, which :func:`_image_model` adds)."""

    module: object          # napari_gan.core.bioimageio_unet or bioimageio_resnet
    callable: str
    kwargs: dict
    file_name: str


@dataclass
class _ImageModel:
    """The bioimage.io pieces of an image-to-image network."""

    inputs: list
    outputs: list
    weights: object
    test_input: Path
    test_output: Path
    plane: np.ndarray        # test input (C, H, W), raw
    predicted: np.ndarray    # napari-gan's prediction (C_out, H*s, W*s)
    source: str              # where the test input came from
    halo: int
    minimum: int
    step: int
    output_range: float


def _image_model(predictor, network: _Network, staging: Path, test_input: Path | None, bio,
                 descriptions: tuple[str, str]) -> _ImageModel:
    """Weights, test tensors and tensor descriptions of a :class:`~napari_gan.core.inference.Predictor`'s
    network: input sizes ``min + n * step`` (``step``: the network's multiple, ``min`` leaving
    room for the halo), output Y/X ``scale`` times the input's, a halo of napari-gan's tile
    overlap; a data-set input normalisation is ``scale_linear`` pre-processing, a per-image one
    is done inside the network; the target range is ``scale_linear`` post-processing.
    ``descriptions``: of the input and the output tensor."""
    import torch

    norm_in, norm_out = predictor.input_norm, predictor.target_norm
    s, step = predictor.scale, predictor.multiple
    halo = int(predictor.overlap)                      # input pixels, napari-gan's tile overlap
    minimum = _round_up(2 * halo + step, step)          # a block keeps at least one step inside its halo
    plane, source = _test_plane(test_input, predictor.in_channels, minimum, step, norm_in)
    # one tile, no margin: the untiled network, as `napari-gan predict` on a plane that fits in memory
    predicted = predictor.predict_plane(plane, tile=_round_up(max(plane.shape[-2:]), step), overlap=0)

    kwargs = dict(network.kwargs)
    if norm_in.per_image:
        kwargs["per_image"] = {"low": list(norm_in.low), "high": list(norm_in.high),
                               "percentiles": list(norm_in.percentiles), "block": int(norm_in.block)}
    net = getattr(network.module, network.callable)(**kwargs).eval()
    net.load_state_dict(predictor.G.state_dict(), strict=True)
    arch_file = staging / network.file_name
    shutil.copyfile(network.module.__file__, arch_file)
    state_file = staging / "weights.pt"
    torch.save(net.state_dict(), state_file)
    script_file = staging / "weights_torchscript.pt"
    torch.jit.script(net).save(str(script_file))

    test_in, test_out = staging / "test_input.npy", staging / "test_output.npy"
    np.save(test_in, plane[None].astype(np.float32))
    np.save(test_out, predicted[None].astype(np.float32))

    space_in = [bio.SpaceInputAxis(id=bio.AxisId(a), size=bio.ParameterizedSize(min=minimum, step=step))
                for a in ("y", "x")]
    pre = []
    if not norm_in.per_image:
        span = [hi - lo for lo, hi in zip(norm_in.low, norm_in.high)]
        pre.append(_scale_linear(bio, [1.0 / d for d in span], [-lo / d for lo, d in zip(norm_in.low, span)]))
    pre = [p for p in pre if p is not None]
    pre = [_ensure_float32(bio)] + pre + ([_ensure_float32(bio)] if pre else [])
    inputs = [bio.InputTensorDescr(
        id=bio.TensorId("input"), axes=[bio.BatchAxis(), _channel_axis(bio, predictor.in_channels)] + space_in,
        description=descriptions[0], test_tensor=bio.FileDescr(source=test_in),
        data=bio.IntervalOrRatioDataDescr(type="float32"), pad=bio.ReflectPadding(mode="reflect"),
        preprocessing=pre)]

    span_out = [hi - lo for lo, hi in zip(norm_out.low, norm_out.high)]
    post = [_scale_linear(bio, span_out, list(norm_out.low))]
    post = [p for p in post if p is not None] + [_ensure_float32(bio)]
    space_out = [bio.SpaceOutputAxisWithHalo(
        id=bio.AxisId(a), size=bio.SizeReference(tensor_id=bio.TensorId("input"), axis_id=bio.AxisId(a)),
        scale=1.0 / s, halo=halo * s) for a in ("y", "x")]
    outputs = [bio.OutputTensorDescr(
        id=bio.TensorId("output"), axes=[bio.BatchAxis(), _channel_axis(bio, predictor.out_channels)] + space_out,
        description=descriptions[1], test_tensor=bio.FileDescr(source=test_out),
        data=bio.IntervalOrRatioDataDescr(type="float32"), postprocessing=post)]
    weights = _weights(bio, state_file, script_file, arch_file, network.callable, kwargs, "torch.jit.script")
    return _ImageModel(inputs, outputs, weights, test_in, test_out, plane, predicted, source, halo, minimum,
                       step, max(span_out))


def _normalisation_texts(norm_in, norm_out, source: str, target: str) -> list[str]:
    """The README's normalisation paragraphs of an image-to-image package; ``source`` and
    ``target`` name the data the ranges come from."""
    if norm_in.per_image:
        pre = (f"Each input image is normalised by its own intensity range, computed **inside the network** "
               f"(`per_image` in the architecture's kwargs): per channel, the {norm_in.percentiles[0]:g} and "
               f"{norm_in.percentiles[1]:g} percentiles of the means of {norm_in.block}x{norm_in.block}-pixel "
               "blocks (the training data's range for a constant image). No bioimage.io pre-processing "
               "operation computes that range, hence the network does it. It therefore depends on what the "
               "network receives: run it on whole images (no tiling) to reproduce napari-gan exactly; "
               "tiles get their own ranges.")
    else:
        pre = ("The input is mapped to the model's units by the fixed linear pre-processing `scale_linear` "
               "(`(x - low) / (high - low)`) with the training data's range, " + _norm_text(norm_in, source) + ".")
    post = ("The output is mapped back to the target's intensities by the post-processing `scale_linear` "
            "(`y * (high - low) + low`), " + _norm_text(norm_out, target) + ".")
    return [pre, "", post]


def _sizes_text(m: _ImageModel, s: int = 1) -> str:
    return (f"Input Y and X: {m.minimum} + n x {m.step} pixels (multiples of {m.step} above a minimum that leaves "
            f"room for the halo); any size works (the network mirrors the input up to a multiple of {m.step}). "
            f"Halo: {m.halo} input pixels ({m.halo * s} output pixels), napari-gan's own tile overlap.")


def _predict_test_note(usage: str) -> str:
    return (f"The test output was computed by napari-gan's own predictor (float32) on the test input, so this "
            f"package reproduces `{usage} --no-amp` (by default napari-gan predicts in bf16 where the processor "
            "supports it, which differs by about 1%).")


# ----------------------------------------------------------------------- Pix2Pix
class Pix2PixExporter(Exporter):
    """Pix2Pix denoising and x2/x4 super-resolution (any channels): the uNet of
    :mod:`napari_gan.core.bioimageio_unet`."""

    cite = ("Isola, Zhu, Zhou and Efros (2017): Image-to-image translation with conditional "
            "adversarial networks (Pix2Pix). CVPR.", "10.1109/CVPR.2017.632")

    def check(self, family, header, test_input):
        super().check(family, header, test_input)
        from .families import stored_config

        task = stored_config(header).get("task")
        if task not in ("denoise", "sr"):
            raise NapariGanError(f"'{header.path}' is a Pix2Pix model of the task '{task}'; napari-gan exports "
                                 "denoising and super-resolution models to bioimage.io (a label image's encoding "
                                 "is computed by napari-gan, outside the network).")

    def default_texts(self, family, stored, options):
        what = "denoising" if stored.get("task") == "denoise" else f"{stored.get('scale')}x super-resolution"
        return (f"napari-gan Pix2Pix {what}", f"Pix2Pix (uNet generator) {what} of {stored.get('in_channels', 1)}"
                "-channel microscopy images, trained with napari-gan.")

    def parts(self, family, header, staging, test_input, bio, options):
        from . import bioimageio_unet

        predictor = family.load_applier(header, "cpu", amp=False)
        cfg = family.config_from_header(header)
        s = int(cfg.scale)
        network = _Network(bioimageio_unet, "NapariGanUNet", {
            "in_channels": cfg.in_channels, "out_channels": cfg.out_channels, "depth": cfg.depth,
            "width": cfg.width, "scale": s, "norm": cfg.norm, "residual": bool(cfg.residual)}, "napari_gan_unet.py")
        model = _image_model(predictor, network, staging, test_input, bio, (
            "raw image in the training input's intensity units",
            "restored image in the training target's intensity units" +
            (f", {s} times larger along Y and X" if s > 1 else "")))
        task = "denoising" if cfg.task == "denoise" else "super-resolution"
        what = "denoising" if cfg.task == "denoise" else f"{s}x super-resolution"
        usage = "napari-gan predict --model PACKAGE.zip --input image.tif --output restored.tif"
        return _Parts(
            model.inputs, model.outputs, model.weights, model.test_input, model.test_output,
            (model.plane[0], model.predicted[0], ("input", f"output ({what})")),
            ["napari-gan", "pix2pix", "gan", "unet", "2d", "pytorch", "image-restoration", task],
            task, "U-Net (Pix2Pix generator)", self._readme(cfg, model, what, predictor), model.output_range,
            model.source, usage, _predict_test_note("napari-gan predict"),
            "Measured by napari-gan during training on its validation data (PSNR in dB and SSIM, in the model's "
            "normalised units; `train_` metrics come from training crops when the images were too small to hold "
            "out a validation region).")

    @staticmethod
    def _readme(cfg, model: _ImageModel, what: str, predictor) -> str:
        s = int(cfg.scale)
        return "\n".join([
            "## What it does", "",
            f"Pix2Pix {what} of microscopy images, trained with napari-gan: {cfg.in_channels} input channel(s), "
            f"{cfg.out_channels} output channel(s)" + (f", the output {s} times larger along Y and X" if s > 1 else "")
            + ".", "",
            "## Network", "",
            f"uNet generator of {cfg.depth} levels, {cfg.width} channels at the first level, normalisation "
            f"'{cfg.norm}', {'residual (predicts a correction to the upsampled input)' if cfg.residual else 'direct'}"
            f"{', with ' + str(int(math.log2(s))) + ' x2 upsampling stage(s)' if s > 1 else ''}. Weights: TorchScript "
            "and a PyTorch state_dict whose architecture is `napari_gan_unet.py` (`NapariGanUNet`), a standalone "
            "file that needs only PyTorch.", "",
            "## Axes and sizes", "",
            "Input `batch, channel, y, x` (float32). Output `batch, channel, y, x`"
            + (f", its Y and X {s} times the input's (pixel size 1/{s} of the input's)" if s > 1 else "") + ".",
            _sizes_text(model, s) + " The halo is half the uNet's receptive field.", "",
            "## Normalisation", "",
            *_normalisation_texts(predictor.input_norm, predictor.target_norm, "input", "target"),
        ])


# ----------------------------------------------------------------------- CycleGAN
class CycleGANExporter(Exporter):
    """One direction of a CycleGAN (``options["direction"]``, a2b by default): its ResNet
    generator (:mod:`napari_gan.core.bioimageio_resnet`) or uNet
    (:mod:`napari_gan.core.bioimageio_unet`)."""

    cite = ("Zhu, Park, Isola and Efros (2017): Unpaired image-to-image translation using cycle-consistent "
            "adversarial networks (CycleGAN). ICCV.", "10.1109/ICCV.2017.244")

    @staticmethod
    def _domains(options: dict) -> tuple[str, str, str]:
        direction = options.get("direction", "a2b")
        return direction, direction[0].upper(), direction[-1].upper()

    def default_texts(self, family, stored, options):
        direction, a, b = self._domains(options)
        net = stored.get("generator", "resnet")
        return (f"napari-gan CycleGAN {a} to {b}",
                f"CycleGAN translation of {stored.get('channels', 1)}-channel microscopy images from domain {a} to "
                f"domain {b} ({net} generator, {direction}), learnt from unpaired images with napari-gan.")

    def parts(self, family, header, staging, test_input, bio, options):
        from . import bioimageio_resnet, bioimageio_unet

        direction, a, b = self._domains(options)
        predictor = family.load_applier(header, "cpu", amp=False, direction=direction)
        cfg = family.config_from_header(header)
        shared = {"in_channels": cfg.channels, "out_channels": cfg.channels, "width": cfg.width,
                  "residual": bool(cfg.residual)}
        if cfg.generator == "unet":
            network = _Network(bioimageio_unet, "NapariGanUNet", {**shared, "depth": cfg.depth, "scale": 1,
                                                                  "norm": "none"}, "napari_gan_unet.py")
        else:
            network = _Network(bioimageio_resnet, "NapariGanResNet", {**shared, "blocks": cfg.blocks,
                                                                      "norm": cfg.norm}, "napari_gan_resnet.py")
        model = _image_model(predictor, network, staging, test_input, bio, (
            f"image of domain {a} in its intensity units",
            f"the image translated to domain {b}, in its intensity units"))
        usage = (f"napari-gan predict --model PACKAGE.zip --direction {direction} --input image.tif "
                 "--output translated.tif")
        arch = "ResNet" if cfg.generator == "resnet" else "U-Net"
        return _Parts(
            model.inputs, model.outputs, model.weights, model.test_input, model.test_output,
            (model.plane[0], model.predicted[0], (f"domain {a} (input)", f"translated to {b} ({direction})")),
            ["napari-gan", "cyclegan", "gan", cfg.generator, "2d", "pytorch", "image-to-image-translation",
             "unpaired"],
            "image-to-image translation", f"{arch} (CycleGAN generator)",
            self._readme(cfg, model, network, direction, predictor), model.output_range, model.source, usage,
            _predict_test_note(f"napari-gan predict --direction {direction}"),
            "Measured by napari-gan during training, for the a2b direction: with paired validation images "
            "`val_psnr` (dB) and `val_ssim` of a2b translations against their B counterparts; `neg_swd`, minus the "
            "sliced Wasserstein distance between a2b translations and real B patches (higher is better); "
            "`cycle_psnr`, the PSNR (dB) of A -> B -> A reconstructions. All in the model's normalised units.")

    @staticmethod
    def _readme(cfg, model: _ImageModel, network: _Network, direction: str, predictor) -> str:
        a, b = direction[0].upper(), direction[-1].upper()
        other = "b2a" if direction == "a2b" else "a2b"
        kind = ("direct" if not cfg.residual else "residual (predicts a correction to its input)")
        if cfg.generator == "resnet":
            net = (f"ResNet generator (CycleGAN's): a 7x7 stem of {cfg.width} channels, two stride-2 downsamplings, "
                   f"{cfg.blocks} residual blocks of {4 * cfg.width} channels, two nearest-neighbour upsamplings "
                   f"each followed by a 3x3 convolution and a 7x7 head, reflection padding, normalisation "
                   f"'{cfg.norm}', {kind}.")
        else:
            net = (f"uNet generator of {cfg.depth} levels, {cfg.width} channels at the first level, {kind}.")
        return "\n".join([
            "## What it does", "",
            f"CycleGAN translation of microscopy images from domain {a} to domain {b} (the `{direction}` generator), "
            f"learnt from unpaired images with napari-gan: {cfg.channels} channel(s), the output as large as the "
            f"input. The napari-gan model file attached to this package holds both generators (`--direction "
            f"{other}` applies the other one).", "",
            "## Network", "",
            f"{net} Weights: TorchScript and a PyTorch state_dict whose architecture is `{network.file_name}` "
            f"(`{network.callable}`), a standalone file that needs only PyTorch.", "",
            "## Axes and sizes", "",
            "Input `batch, channel, y, x` (float32), output `batch, channel, y, x` of the same size.",
            _sizes_text(model), "",
            "## Normalisation", "",
            *_normalisation_texts(predictor.input_norm, predictor.target_norm, f"domain {a}", f"domain {b}"),
        ])


# --------------------------------------------------------------------- StyleGAN2
_STYLEGAN2_WRAPPER = '''


# ---- bioimage.io entry point (added by napari-gan's export) ----
class NapariGanStyleGAN2(Generator):
    """napari-gan's StyleGAN2 generator for bioimage.io: latent vectors ``z`` (B, z_dim) ->
    images (B, C, H, W) in [-1, 1], with the model's fixed noise and no truncation (the
    package's post-processing maps them to the training images' intensities)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(z, 1.0, "const")
'''


class StyleGAN2Exporter(Exporter):
    """An unconditional StyleGAN2 generator: latent vectors in, images out."""

    cite = ("Karras, Laine, Aittala, Hellsten, Lehtinen and Aila (2020): Analyzing and improving the image "
            "quality of StyleGAN (StyleGAN2). CVPR.", "10.1109/CVPR42600.2020.00813")
    takes_test_input = False

    def check(self, family, header, test_input):
        from .families import stored_config

        if int(stored_config(header).get("c_dim") or 0) > 0:
            raise NapariGanError(f"'{header.path}' is a class-conditional {family.title} model; its package would "
                                 "need a class input besides z, which napari-gan does not export yet. Export an "
                                 "unconditional model, or share the napari-gan model file.")
        super().check(family, header, test_input)

    def default_texts(self, family, stored, options):
        res = stored.get("resolution")
        return (f"napari-gan StyleGAN2 {res}x{res}", f"StyleGAN2 generator of new {res}x{res} microscopy images "
                "from Gaussian noise, trained with napari-gan.")

    def parts(self, family, header, staging, test_input, bio, options):
        return _stylegan2_parts(family, header, staging, bio)


def _stylegan2_parts(family, header, staging: Path, bio) -> _Parts:
    import torch

    from .models import stylegan2 as networks

    gen = family.load_applier(header, "cpu", amp=False)
    cfg = family.config_from_header(header)
    norm = gen.norm
    z = gen.latents(2, seed=0)
    images = gen.generate_from_latents(z)
    images = images[:, None] if images.ndim == 3 else images

    kwargs = {"z_dim": cfg.z_dim, "w_dim": cfg.w_dim, "resolution": cfg.resolution, "img_channels": cfg.channels,
              "mapping_layers": cfg.mapping_layers, "channel_base": cfg.channel_base,
              "channel_max": cfg.channel_max}
    arch_file = staging / "napari_gan_stylegan2.py"
    arch_file.write_text(Path(networks.__file__).read_text(encoding="utf-8") + _STYLEGAN2_WRAPPER, encoding="utf-8")
    namespace: dict = {"__name__": "napari_gan_stylegan2"}
    exec(compile(arch_file.read_text(encoding="utf-8"), str(arch_file), "exec"), namespace)
    net = namespace["NapariGanStyleGAN2"](**kwargs).eval()
    net.load_state_dict(gen.G.state_dict(), strict=True)
    state_file = staging / "weights.pt"
    torch.save(net.state_dict(), state_file)
    script_file = staging / "weights_torchscript.pt"
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.from_numpy(z), check_trace=False)
    traced.save(str(script_file))

    test_in, test_out = staging / "test_input.npy", staging / "test_output.npy"
    np.save(test_in, z.astype(np.float32))
    np.save(test_out, images.astype(np.float32))

    inputs = [bio.InputTensorDescr(
        id=bio.TensorId("z"), axes=[bio.BatchAxis(), bio.IndexInputAxis(size=cfg.z_dim)],
        description="latent vectors drawn from N(0, 1)", test_tensor=bio.FileDescr(source=test_in),
        data=bio.IntervalOrRatioDataDescr(type="float32"))]
    span = [hi - lo for lo, hi in zip(norm.low, norm.high)]
    post = [bio.ScaleLinearDescr(kwargs=bio.ScaleLinearKwargs(gain=0.5, offset=0.5)),
            _scale_linear(bio, span, list(norm.low)), _ensure_float32(bio)]
    outputs = [bio.OutputTensorDescr(
        id=bio.TensorId("images"),
        axes=[bio.BatchAxis(), _channel_axis(bio, cfg.channels),
              bio.SpaceOutputAxis(id=bio.AxisId("y"), size=cfg.resolution),
              bio.SpaceOutputAxis(id=bio.AxisId("x"), size=cfg.resolution)],
        description="generated images in the training images' intensity units",
        test_tensor=bio.FileDescr(source=test_out), data=bio.IntervalOrRatioDataDescr(type="float32"),
        postprocessing=[p for p in post if p is not None])]
    weights = _weights(bio, state_file, script_file, arch_file, "NapariGanStyleGAN2", kwargs, "torch.jit.trace")
    readme = "\n".join([
        "## What it does", "",
        f"StyleGAN2 generator trained with napari-gan: it turns latent vectors z ~ N(0, 1) of length "
        f"{cfg.z_dim} into new {cfg.resolution}x{cfg.resolution} images with {cfg.channels} channel(s) that "
        "look like the training images.", "",
        "## Network", "",
        f"Mapping network of {cfg.mapping_layers} layers (z -> w, w of length {cfg.w_dim}) and a skip "
        "synthesis network of modulated convolutions (channel_base "
        f"{cfg.channel_base}, channel_max {cfg.channel_max}), pure PyTorch. The per-layer noise is the "
        "model's fixed noise and there is no truncation, as in `napari-gan generate` by default. Weights: "
        "TorchScript (traced) and a PyTorch state_dict whose architecture is `napari_gan_stylegan2.py` "
        "(`NapariGanStyleGAN2`), a standalone file that needs only PyTorch.", "",
        "## Axes and sizes", "",
        f"Input `z`: `batch, index` ({cfg.z_dim} values per image; a bioimage.io 0.5 input needs no spatial "
        f"axis). Output `images`: `batch, channel, y, x` with Y and X of {cfg.resolution} pixels.", "",
        "## Normalisation", "",
        "The network's output in [-1, 1] is mapped to the training images' intensities by two "
        "post-processing steps: `scale_linear` (gain 0.5, offset 0.5), then `scale_linear` per channel "
        "(`y * (high - low) + low`), " + _norm_text(norm, "training images") + ".",
    ])
    return _Parts(inputs, outputs, weights, test_in, test_out,
                  (images[0, 0], images[1, 0], ("generated (seed 0, image 1)", "generated (seed 0, image 2)")),
                  ["napari-gan", "stylegan2", "gan", "2d", "pytorch", "image-generation"],
                  "image generation", "StyleGAN2", readme, max(span),
                  f"the latent vectors of seed 0 ({z.shape[0]} x {cfg.z_dim})",
                  "napari-gan generate --model PACKAGE.zip --output generated.tif --n 16 --seed 0",
                  "The test input holds the latent vectors of seed 0 (`napari-gan generate --seed 0`), the test "
                  "output their images computed by napari-gan's own generator (float32).",
                  "Measured by napari-gan during training: sliced Wasserstein distance (SWD) between generated and "
                  "training image patches, lower is better.")


def _absolute_tolerance(parts: _Parts) -> float:
    """ABSOLUTE_TOLERANCE times the output's intensity range, but at most the 1% of the test
    output's maximum that bioimage.io allows (a barely trained model's output can lie far
    below its range)."""
    tolerance = ABSOLUTE_TOLERANCE * parts.output_range
    largest = float(np.load(parts.test_output).max())
    return min(tolerance, 0.01 * largest) if largest > 0 else tolerance


def _readme(parts: _Parts, header, info: PackageInfo) -> str:
    tol = (f"relative {RELATIVE_TOLERANCE:g}, absolute {_absolute_tolerance(parts):.4g} ({ABSOLUTE_TOLERANCE:g} x "
           "the output's intensity range, at most 1% of the test output's maximum)")
    return "\n".join([
        f"# {info.name}", "",
        info.description, "",
        *parts.readme.splitlines(), "",
        "## Training", "",
        *_record_lines(header), "",
        "## Validation", "",
        *_metric_lines(header), "",
        parts.validation_note,
        "",
        "## Test data", "",
        f"Test input: {parts.test_source}.", "",
        parts.test_note + " Outputs must match it within " + tol + ".", "",
        "## Use with napari-gan", "",
        "This package holds the napari-gan model file (`" + PACKAGE_MODEL_FILE + "`), so napari-gan uses it "
        "as it is, without the original run folder:", "",
        "```", "pip install napari-gan", parts.usage, "```", "",
        "## Use with other bioimage.io software", "",
        "Any bioimage.io consumer (bioimageio.core, deepImageJ, ilastik, ...) can run it from its TorchScript or "
        "PyTorch state_dict weights, e.g. `bioimageio predict PACKAGE.zip ...`.", "",
    ])
