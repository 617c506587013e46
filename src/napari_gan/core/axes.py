"""Images that carry their axes: reading, writing and plane layout by axis name.

An :class:`AxesImage` is an array (possibly memory-mapped, never copied here) with an axes
string over the letters ``T`` (time), ``Z`` (depth), ``C`` (channel), ``Y``, ``X`` and ``S``
(RGB samples), one letter per dimension, ending in ``YX`` (or ``YXS`` for RGB), plus the
physical pixel size where known. With known axes the channel axis is never guessed, so an
ImageJ ``TZCYX`` stack whose Z length equals its channel count keeps Z and C apart.

:func:`read_image` / :func:`write_image` read and write TIFF, ImageJ hyperstack and
OME-TIFF keeping axes and pixel sizes; :func:`to_planes` gives the ``(P, C, H, W)`` planes the
models work on and a :class:`PlaneLayout` that puts model outputs back in the input's axes.
numpy + tifffile only.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import NapariGanError

#: The axis letters an :class:`AxesImage` may use.
AXES = "TZCYXS"
AXIS_NAMES = {"T": "time", "Z": "depth", "C": "channel", "Y": "height", "X": "width",
              "S": "RGB samples"}
#: ImageJ hyperstacks store their axes in this order (any subsequence of it).
IMAGEJ_ORDER = "TZCYXS"
IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
#: Pixel types tifffile can describe in OME-XML (others are written as plain TIFF).
OME_DTYPES = tuple(np.dtype(t) for t in (np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                         np.uint32, np.float32, np.float64))
#: Larger outputs are written as BigTIFF (and so never as ImageJ hyperstacks).
BIGTIFF_BYTES = 2**31
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_CHUNK = 1 << 24
#: Lengths in micrometres, to read TIFF resolution tags and mixed OME units.
_MICRONS = {"m": 1e6, "cm": 1e4, "mm": 1e3, "micron": 1.0, "nm": 1e-3, "pm": 1e-6, "Å": 1e-4}
_UNIT_ALIASES = {"µm": "micron", "μm": "micron", "um": "micron", "microns": "micron",
                 "micrometer": "micron", "micrometre": "micron", "angstrom": "Å", "å": "Å"}
_SCREEN_DPI = (72.0, 96.0)


# ------------------------------------------------------------------------ axes strings
def parse_axes(text: str, ndim: int) -> str:
    """Validate a user-given axes string (any case, e.g. "tzcyx") for an ``ndim``-D image."""
    if not isinstance(text, str) or not text.strip():
        raise NapariGanError("Give the axes as letters such as 'TZCYX' (one per image dimension).")
    axes = text.strip().upper()
    unknown = sorted({a for a in axes if a not in AXES}, key=axes.index)
    if unknown:
        raise NapariGanError(
            f"Unknown axis letter(s) {', '.join(repr(a) for a in unknown)} in axes '{text}'; use "
            "T (time), Z (depth), C (channel), Y, X and S (RGB samples)."
        )
    repeated = sorted({a for a in axes if axes.count(a) > 1}, key=axes.index)
    if repeated:
        raise NapariGanError(
            f"Axis letter(s) {', '.join(repr(a) for a in repeated)} appear more than once in axes "
            f"'{text}'; each axis may be named only once."
        )
    if len(axes) != ndim:
        raise NapariGanError(
            f"Axes '{text}' name {len(axes)} dimension(s) but the image has {ndim}; give one "
            "letter per dimension."
        )
    if "S" in axes and not axes.endswith("YXS"):
        raise NapariGanError(
            f"Axes '{text}' must end with YX, or YXS for RGB images: S (the RGB samples) can only "
            "be the last axis, right after X."
        )
    if not (axes.endswith("YX") or axes.endswith("YXS")):
        raise NapariGanError(
            f"Axes '{text}' must end with YX (or YXS for RGB images): the image rows and columns "
            "are its last two dimensions."
        )
    return axes


def looks_rgb(shape) -> bool:
    """Whether a plain array looks like RGB(A) pixels: a last axis of 3 or 4 after a real image."""
    return len(shape) >= 3 and shape[-1] in (3, 4) and shape[-2] > 4


def _lead_letters(count: int, shape, name: str) -> str:
    if count > 2:
        raise NapariGanError(
            f"{name} has shape {tuple(shape)}: {count} dimensions besides Y, X and channels, but "
            "only T and Z are available to name them; give the axes explicitly (e.g. TZCYX)."
        )
    return "TZ"[2 - count:]


def guess_axes(shape, channels: int = 1, channel_axis: int | None = None, name: str = "image") -> str:
    """Axes for an array without metadata (a napari layer, a plain TIFF).

    ``YX``; ``ZYX`` and ``TZYX`` for stacks; an RGB(A)-looking last axis is ``S``; the channel
    axis ``C`` is ``channel_axis`` when given, otherwise (with ``channels > 1``) the first axis
    of length ``channels`` (TIFF order), e.g. ``CYX``, ``ZCYX``, ``TZCYX``; two such axes are
    refused as ambiguous rather than guessed.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if ndim < 2:
        raise NapariGanError(f"{name} has shape {shape}; expected at least 2 dimensions (Y, X).")
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim:
            raise NapariGanError(f"{name} has {ndim} dimensions; there is no axis {channel_axis} to "
                                 "use as the channel axis.")
        c = channel_axis % ndim
        if c >= ndim - 2:
            raise NapariGanError(f"{name}: the channel axis cannot be one of the last two (Y, X) axes.")
        letters = iter(_lead_letters(ndim - 3, shape, name))
        return "".join("C" if i == c else next(letters) for i in range(ndim - 2)) + "YX"
    if looks_rgb(shape):
        return _lead_letters(ndim - 3, shape, name) + "YXS"
    if channels > 1:
        candidates = [i for i in range(ndim - 2) if shape[i] == channels]
        if not candidates:
            raise NapariGanError(
                f"{name} has shape {shape} but the model expects {channels} channels; "
                f"no axis of length {channels} was found before Y and X."
            )
        if len(candidates) > 1:
            raise NapariGanError(
                f"{name} has shape {shape}: axes {', '.join(map(str, candidates))} both have the model's "
                f"{channels} channels, so which one holds them is ambiguous; name the axes (e.g. --axes "
                "TZCYX, or save the image with ImageJ/OME metadata) or give the channel axis.")
        return guess_axes(shape, channels, candidates[0], name)
    return _lead_letters(ndim - 2, shape, name) + "YX"


# ---------------------------------------------------------------------- units & sizes
def normalize_unit(unit) -> str | None:
    """A length unit as written by ImageJ/OME/users -> a canonical name ("micron", "nm", ...)."""
    if unit is None:
        return None
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), str(unit).strip())
    if not text or text.lower() in ("pixel", "pixels", "none"):
        return None
    if text.lower() in _UNIT_ALIASES:
        return _UNIT_ALIASES[text.lower()]
    return text.lower() if text.lower() in _MICRONS else text


def _to_microns(value: float, unit: str | None) -> float | None:
    factor = _MICRONS.get(normalize_unit(unit) or "")
    return None if factor is None else value * factor


def _positive(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def _clean_pixel_size(pixel_size, axes: str) -> dict[str, float]:
    out = {}
    for key, value in (pixel_size or {}).items():
        key, value = str(key).upper(), _positive(value)
        if key in "ZYX" and key in axes and value is not None:
            out[key] = value
    return out


# ------------------------------------------------------------------------ the image
@dataclass
class AxesImage:
    """An array with named axes, its physical pixel size and (read from a file) series count."""

    data: np.ndarray
    axes: str
    pixel_size: dict[str, float] = field(default_factory=dict)
    unit: str | None = None
    name: str = "image"
    series_count: int = 1

    def __post_init__(self):
        if not hasattr(self.data, "shape") or not hasattr(self.data, "dtype"):
            self.data = np.asarray(self.data)
        self.axes = parse_axes(self.axes, len(self.data.shape))
        self.pixel_size = _clean_pixel_size(self.pixel_size, self.axes)
        self.unit = normalize_unit(self.unit)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def native_dtype(self) -> np.dtype:
        """The dtype the planes have for computing: native byte order, bool as uint8.
        (Big-endian data stay lazy; numpy swaps bytes per tile when converting to float32.)"""
        if self.dtype.kind == "b":
            return np.dtype(np.uint8)
        return self.dtype.newbyteorder("=")

    def size_of(self, axis: str) -> int:
        """Length of ``axis`` (1 when the image has no such axis)."""
        return self.shape[self.axes.index(axis)] if axis in self.axes else 1

    @property
    def channels(self) -> int:
        """Number of channels: the C axis, else RGB samples S, else 1."""
        return self.size_of("C") if "C" in self.axes else self.size_of("S")

    def scaled_pixel_size(self, factor: float) -> dict[str, float]:
        """Pixel size of an output ``factor`` times finer in Y and X (super-resolution)."""
        return {k: (v / factor if k in "YX" else v) for k, v in self.pixel_size.items()}


# --------------------------------------------------------------------------- dtypes
def _chunks(array, limit: int):
    """Views of ``array`` of at most ~``limit`` elements (memory-mapped data is read in pieces)."""
    if array.ndim == 0 or array.size <= limit:
        yield array
        return
    per = array.size // array.shape[0]
    if per <= limit:
        step = max(1, limit // max(per, 1))
        for start in range(0, array.shape[0], step):
            yield array[start:start + step]
    else:
        for sub in array:
            yield from _chunks(sub, limit)


def check_float32_range(data, name: str = "image") -> None:
    """Refuse wider floats (float64) with finite values beyond float32's range: the models
    compute in float32 and would turn them into infinities. Checked in chunks."""
    if data.dtype.kind != "f" or data.dtype.itemsize <= 4:
        return
    for chunk in _chunks(data, _CHUNK):
        chunk = np.asarray(chunk)
        with np.errstate(invalid="ignore", over="ignore"):
            bad = np.isfinite(chunk) & (np.abs(chunk) > _FLOAT32_MAX)
        if bad.any():
            worst = float(np.abs(chunk[bad]).max())
            raise NapariGanError(
                f"{name} has {data.dtype} values up to {worst:.3g}, beyond the float32 range "
                f"(±{_FLOAT32_MAX:.3g}) the models compute in; rescale the image first."
            )


def count_non_finite(data) -> int:
    """How many NaN or infinite values ``data`` holds (0 for integer data); read in chunks,
    so a large or memory-mapped array is never copied whole."""
    if np.dtype(data.dtype).kind not in "fc":
        return 0
    bad = 0
    for chunk in _chunks(data, _CHUNK):
        chunk = np.asarray(chunk)
        bad += int(chunk.size - np.count_nonzero(np.isfinite(chunk)))
    return bad


def computable(data, name: str = "image"):
    """``data`` ready for plane computations, without copying: bool viewed as uint8, float64
    range-checked; other integer/float types (any byte order, float16) are kept as they are."""
    kind = data.dtype.kind
    if kind not in "uifb":
        raise NapariGanError(f"{name} has data type {data.dtype}; expected integer or float pixels.")
    if kind == "b":
        return data.view(np.uint8)
    check_float32_range(data, name)
    return data


# --------------------------------------------------------------------------- planes
@dataclass(frozen=True)
class PlaneLayout:
    """How an :class:`AxesImage` was cut into ``(P, C, H, W)`` planes, to put outputs back."""

    axes: str                   # the input's axes
    shape: tuple[int, ...]      # the input's shape
    channel_axis: str | None    # "C", "S" or None
    lead_axes: str              # the axes flattened into P, in input order
    lead_shape: tuple[int, ...]
    pixel_size: dict = field(default_factory=dict)
    unit: str | None = None
    name: str = "image"

    @property
    def planes(self) -> int:
        return int(np.prod(self.lead_shape, dtype=np.int64))

    @property
    def in_channels(self) -> int:
        return self.shape[self.axes.index(self.channel_axis)] if self.channel_axis else 1

    def output_axes(self, out_channels: int) -> str:
        """Axes of the restored output: the input's, with its channel axis kept in place (or
        dropped for a 1-channel output of an input without one; a C axis inserted before YX
        for a multi-channel output of a single-channel input)."""
        axes = self.axes
        if self.channel_axis == "S":
            if out_channels in (3, 4):
                return axes
            axes = axes[:-1]
        elif self.channel_axis == "C":
            return axes
        return axes if out_channels == 1 else axes[:-2] + "C" + axes[-2:]

    def restore(self, outputs: np.ndarray, out_channels: int | None = None) -> np.ndarray:
        """``(P, C_out, H', W')`` model outputs -> an array in :meth:`output_axes` order (a
        view of ``outputs`` where possible; H', W' may differ from the input's)."""
        if getattr(outputs, "ndim", 0) != 4 or outputs.shape[0] != self.planes:
            raise ValueError(f"expected outputs of shape ({self.planes}, C, H, W), got "
                             f"{getattr(outputs, 'shape', None)}")
        out_channels = outputs.shape[1] if out_channels is None else int(out_channels)
        if outputs.shape[1] != out_channels:
            raise ValueError(f"outputs have {outputs.shape[1]} channels, not {out_channels}")
        target = self.output_axes(out_channels)
        arr = outputs.reshape(self.lead_shape + tuple(outputs.shape[1:]))
        ch = "S" if "S" in target else "C"
        source = self.lead_axes + ch + "YX"
        if ch not in target:
            arr = arr.reshape(self.lead_shape + tuple(outputs.shape[2:]))
            source = self.lead_axes + "YX"
        return arr.transpose([source.index(a) for a in target])

    def restore_image(self, outputs: np.ndarray, out_channels: int | None = None,
                      scale: int = 1, name: str | None = None) -> AxesImage:
        """:meth:`restore` as an :class:`AxesImage` with the input's pixel size (Y, X divided
        by ``scale`` for super-resolution)."""
        out_channels = outputs.shape[1] if out_channels is None else out_channels
        pixel_size = {k: (v / scale if k in "YX" else v) for k, v in self.pixel_size.items()}
        return AxesImage(self.restore(outputs, out_channels), self.output_axes(out_channels),
                         pixel_size, self.unit, name or self.name)


def _reshape(array, shape):
    """Reshape as a view when possible (memory-mapped data stay lazy), else copy."""
    try:
        return np.reshape(array, shape, copy=False)
    except ValueError:
        return np.reshape(array, shape)
    except TypeError:  # numpy < 2.1 has no ``copy``
        return np.reshape(array, shape)


def to_planes(image: AxesImage, channels: int = 1) -> tuple[np.ndarray, PlaneLayout]:
    """``(P, C, H, W)`` planes of ``image`` and the :class:`PlaneLayout` to restore outputs.

    The channels come from the C axis (else RGB samples S); every other axis but Y and X is
    flattened into P in the input's order. Planes are views of ``image.data`` whenever the
    axes order allows it (ImageJ TZCYX, ZCYX, CZYX, ...), so memory-mapped data stay on disk;
    only orders where C sits between two flattened axes (e.g. TCZYX) need a copy.
    """
    name, axes = image.name, image.axes
    data = computable(image.data, name)
    if data.size == 0:
        raise NapariGanError(f"{name} is empty (shape {tuple(data.shape)}).")
    if "S" in axes and ("C" in axes or data.shape[-1] == 1):
        if data.shape[-1] != 1:
            raise NapariGanError(
                f"{name} has both channels (C) and RGB samples (S) (axes {axes}, shape "
                f"{tuple(data.shape)}); split the channels or convert the RGB to grayscale first."
            )
        data, axes = data[..., 0], axes[:-1]
    ch = "C" if "C" in axes else ("S" if "S" in axes else None)
    n = data.shape[axes.index(ch)] if ch else 1
    if n != channels:
        if ch == "S" and channels == 1:
            raise NapariGanError(
                f"{name} looks like an RGB image (axes {axes}, shape {tuple(data.shape)}) but the "
                "model expects 1 channel; split the channels or convert it to grayscale first."
            )
        where = f" (axis {ch} of {axes})" if ch else f" (axes {axes}: no C axis)"
        hint = "; pick a single channel." if channels == 1 else "."
        raise NapariGanError(
            f"{name} has {n} channel{'s' if n != 1 else ''}{where} but the model expects "
            f"{channels}{hint}"
        )
    lead = "".join(a for a in axes if a not in "YXS" and a != ch)
    order = [axes.index(a) for a in lead + (ch or "") + "YX"]
    moved = data.transpose(order)
    lead_shape = tuple(int(s) for s in moved.shape[:len(lead)])
    from .zarr_io import LazyPlanes, is_lazy

    if is_lazy(moved):   # OME-Zarr and other lazy data: planes are views, read tile by tile
        planes = LazyPlanes(moved, len(lead), ch is not None)
    else:
        planes = _reshape(moved, (-1, n) + tuple(moved.shape[-2:]))
    layout = PlaneLayout(axes, tuple(int(s) for s in data.shape), ch, lead, lead_shape,
                         dict(image.pixel_size), image.unit, name)
    return planes, layout


# ---------------------------------------------------------------------------- reading
def _map_tiff_axes(raw: str, shape, name: str) -> str:
    """tifffile's axes (which may use I, Q, A, E, ... and planar S) -> our letters."""
    letters = list(raw)
    for i, a in enumerate(letters):
        if a == "S" and i != len(letters) - 1:
            # tifffile reads a stack of 3 or 4 planes written without `photometric` as planar
            # RGB; in microscopy that is a stack of planes (give --axes CYX for channels)
            letters[i] = "?"
        elif a not in AXES:
            letters[i] = "?"
    free = [a for a in "ZT" if a not in letters]
    for i in reversed(range(len(letters))):
        if letters[i] == "?":
            if not free:
                raise NapariGanError(
                    f"{name}: cannot name the axes '{raw}' (shape {tuple(shape)}) with T, Z, C, Y and "
                    "X; give them explicitly (e.g. --axes TZCYX)."
                )
            letters[i] = free.pop(0)
    return "".join(letters)


def _rational(tag) -> float | None:
    try:
        value = tag.value
        value = value[0] / value[1] if isinstance(value, tuple) else float(value)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    return _positive(value)


def _resolution(page) -> tuple[float | None, float | None, int]:
    tags = page.tags
    xres, yres = _rational(tags.get("XResolution")), _rational(tags.get("YResolution"))
    unit_tag = tags.get("ResolutionUnit")
    try:
        unit = int(unit_tag.value) if unit_tag is not None else 2
    except (TypeError, ValueError):
        unit = 1
    return xres, yres, unit


def _ome_sizes(xml: str, series_index: int = 0) -> tuple[dict[str, float], str | None]:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}, None
    pixels = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"]
    if len(pixels) <= series_index:
        return {}, None
    attrs = pixels[series_index].attrib
    units = {a: normalize_unit(attrs.get(f"PhysicalSize{a}Unit", "µm")) for a in "XYZ"}
    unit = units["X"]
    sizes = {}
    for a in "XYZ":
        value = _positive(attrs.get(f"PhysicalSize{a}"))
        if value is None:
            continue
        if units[a] != unit:  # express every size in X's unit
            microns, per = _to_microns(value, units[a]), _MICRONS.get(unit or "")
            if microns is None or per is None:
                continue
            value = microns / per
        sizes[a] = value
    return sizes, unit


def _file_pixel_size(tif, series, axes: str, index: int = 0) -> tuple[dict[str, float], str | None]:
    page = getattr(series, "keyframe", None) or tif.pages[0]
    if tif.is_ome and tif.ome_metadata:
        sizes, unit = _ome_sizes(tif.ome_metadata, index)
        if sizes:
            return sizes, unit
    xres, yres, res_unit = _resolution(page)
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        unit = normalize_unit(meta.get("unit"))
        sizes = {}
        if xres and yres and (unit or (xres, yres) != (1.0, 1.0)):
            sizes.update(X=1.0 / xres, Y=1.0 / yres)
        spacing = _positive(meta.get("spacing"))
        if spacing is not None:
            sizes["Z"] = spacing
        return sizes, unit
    if not (xres and yres):
        return {}, None
    if res_unit == 3:  # pixels per centimetre
        return {"X": 1e4 / xres, "Y": 1e4 / yres}, "micron"
    if res_unit == 2:  # pixels per inch; 72/96 dpi are screen defaults, not a calibration
        if xres in _SCREEN_DPI and yres in _SCREEN_DPI:
            return {}, None
        return {"X": 25400.0 / xres, "Y": 25400.0 / yres}, "micron"
    if (xres, yres) == (1.0, 1.0):  # tifffile's default: no calibration
        return {}, None
    return {"X": 1.0 / xres, "Y": 1.0 / yres}, None


def describe_series(tif, limit: int = 8) -> str:
    """The series of an open TIFF, each with its index, shape, axes and pixel type (the first
    ``limit`` of them)."""
    lines = []
    for i, series in enumerate(tif.series[:limit]):
        try:
            lines.append(f"series {i}: shape {tuple(series.shape)}, axes {series.axes}, {series.dtype}")
        except Exception:   # a damaged series still gets a line
            lines.append(f"series {i}: unreadable")
    if len(tif.series) > limit:
        lines.append(f"and {len(tif.series) - limit} more")
    return "; ".join(lines)


#: TIFFs that cannot be memory-mapped (compressed, tiled) and are larger than this are read
#: lazily through tifffile's Zarr store (tile by tile, strip by strip), not loaded whole
LAZY_TIFF_BYTES = 1 << 28
#: memory-mappable TIFFs larger than this are mapped per read (:class:`.zarr_io.MappedFile`),
#: so the pages read do not stay in the process's resident memory
MAPPED_TIFF_BYTES = 1 << 26


def _lazy_tiff(path: Path, series: int, shape: tuple[int, ...]):
    """A :class:`.zarr_io.LazyArray` over series ``series`` of a TIFF (tifffile's Zarr store),
    or None when zarr cannot read it."""
    try:
        import tifffile
        import zarr

        from .zarr_io import LazyArray

        array = zarr.open_array(tifffile.imread(path, aszarr=True, series=series), mode="r")
        return LazyArray(array) if tuple(array.shape) == tuple(shape) else None
    except Exception:   # noqa: BLE001 - no zarr, a layout the store does not handle: read it whole
        return None


def read_image(path: str | os.PathLike, axes: str | None = None, memmap: bool = True,
               series: int | None = None, level: int = 0) -> AxesImage:
    """Read one series of a TIFF / ImageJ / OME-TIFF file, or one level of an OME-Zarr
    image (a ``.zarr`` folder, read lazily: :func:`.zarr_io.read_ome_zarr`), with its axes
    and pixel size.

    A file holding several series (an OME-TIFF of several images, pages of different
    shapes) needs ``series`` (0-based); without it such a file is refused with a message
    listing them, never silently cut to its first series. Axes come from the file (unknown
    tifffile axes such as I or Q become Z, then T) unless ``axes`` is given. The data are
    memory-mapped when ``memmap`` and the file allows it (uncompressed, contiguous).
    ``series_count`` tells how many series the file holds.
    """
    import tifffile

    path = Path(path)
    if series is not None and (isinstance(series, bool) or not isinstance(series, int) or series < 0):
        raise NapariGanError(f"--series must be a whole number from 0, not {series!r}.")
    from .zarr_io import is_zarr_path, read_ome_zarr

    if is_zarr_path(path):
        return read_ome_zarr(path, axes=axes, level=level, series=series)
    if level:
        raise NapariGanError(f"--level applies to OME-Zarr inputs; '{path.name}' is a TIFF (use level 0).")
    if not path.is_file():
        raise NapariGanError(f"File '{path}' does not exist.")
    name = path.name
    try:
        with tifffile.TiffFile(path) as tif:
            count = len(tif.series)
            if count == 0:
                raise NapariGanError(f"'{name}' holds no image.")
            if series is None and count > 1:
                raise NapariGanError(
                    f"'{name}' holds {count} images (series) of which napari-gan uses one: "
                    f"{describe_series(tif)}. "
                    "Choose one with --series N (0 is the first).")
            index = 0 if series is None else series
            if index >= count:
                raise NapariGanError(f"'{name}' has no series {index}; it holds {count} "
                                     f"(numbered from 0): {describe_series(tif)}.")
            chosen_series = tif.series[index]
            raw_axes, shape = chosen_series.axes, tuple(chosen_series.shape)
            if 0 in shape or len(shape) < 2:
                raise NapariGanError(f"'{name}' is empty (shape {shape}).")
            chosen = parse_axes(axes, len(shape)) if axes is not None else \
                _map_tiff_axes(raw_axes, shape, name)
            pixel_size, unit = _file_pixel_size(tif, chosen_series, chosen, index)
            data = None
            if memmap:
                try:
                    data = tifffile.memmap(path, series=index, mode="r")
                    if data.nbytes > min(MAPPED_TIFF_BYTES, LAZY_TIFF_BYTES) and isinstance(data, np.memmap) \
                            and data.flags.c_contiguous and getattr(data, "filename", None):
                        # huge: mapped per read, so the pages read do not pile up in memory
                        from .zarr_io import LazyArray, MappedFile

                        data = LazyArray(MappedFile(data.filename, data.offset, shape, data.dtype))
                    elif tuple(data.shape) != shape:
                        data = data.reshape(shape)
                except Exception:  # compressed, tiled or scattered data cannot be memory-mapped
                    data = None
            if data is None and math.prod(shape) * chosen_series.dtype.itemsize > LAZY_TIFF_BYTES:
                data = _lazy_tiff(path, index, shape)    # compressed/tiled and large: read tile by tile
            if data is None:
                data = chosen_series.asarray()
                if tuple(data.shape) != shape:
                    data = data.reshape(shape)
    except NapariGanError:
        raise
    except Exception as exc:
        raise NapariGanError(f"Could not read '{path}' as a TIFF image ({exc}).") from exc
    return AxesImage(data, chosen, pixel_size, unit, name, count)


# ---------------------------------------------------------------------------- writing
def _is_imagej_order(axes: str) -> bool:
    positions = [IMAGEJ_ORDER.index(a) for a in axes]
    return positions == sorted(positions)


def _imagej_unit(unit: str | None) -> str | None:
    if unit is None:
        return None
    return unit.encode("ascii", "backslashreplace").decode("ascii").replace("\\x", "\\u00")


def _ome_unit(unit: str | None) -> str:
    return {"micron": "µm", None: "µm"}.get(unit, unit)


def _resolution_kwargs(px: dict[str, float], unit: str | None) -> dict:
    if "X" not in px or "Y" not in px:
        return {}
    mx, my = _to_microns(px["X"], unit), _to_microns(px["Y"], unit)
    if mx is not None and my is not None:
        return {"resolution": (1e4 / mx, 1e4 / my), "resolutionunit": "CENTIMETER"}
    return {"resolution": (1.0 / px["X"], 1.0 / px["Y"]), "resolutionunit": "NONE"}


def write_image(path: str | os.PathLike, image: AxesImage | np.ndarray, axes: str | None = None,
                pixel_size: dict | None = None, unit: str | None = None) -> Path:
    """Write an image keeping its axes order and pixel size, atomically, zlib-compressed.

    An ImageJ hyperstack when ImageJ can hold it (axes in TZCYXS order, uint8/uint16/float32,
    RGB only as uint8 YXS with 3 samples, under 2 GB), otherwise OME-TIFF (any T/Z/C order,
    BigTIFF when large), or a plain tifffile TIFF for pixel types OME cannot describe (float16,
    int64). ``axes``/``pixel_size``/``unit`` override the image's own.
    Lazy data (a :class:`.zarr_io.LazyArray`, a zarr array) is written tile by tile as a
    tiled OME-TIFF, never loaded whole. A ``.zarr`` path writes OME-Zarr
    (:func:`.zarr_io.write_ome_zarr`).
    """
    import tifffile

    from .io import atomic_write
    from .zarr_io import LazyArray, is_lazy, is_zarr_path, write_ome_zarr

    if is_zarr_path(path):
        if not isinstance(image, AxesImage):
            image = AxesImage(image, axes or guess_axes(np.shape(image)), pixel_size or {}, unit)
        elif axes is not None or pixel_size is not None or unit is not None:
            image = AxesImage(image.data, axes or image.axes,
                              image.pixel_size if pixel_size is None else pixel_size,
                              image.unit if unit is None else unit, image.name)
        return write_ome_zarr(path, image)
    if isinstance(image, AxesImage):
        data = image.data
        axes = parse_axes(axes, image.ndim) if axes is not None else image.axes
        pixel_size = image.pixel_size if pixel_size is None else pixel_size
        unit = image.unit if unit is None else unit
    else:
        data = image if hasattr(image, "shape") and hasattr(image, "dtype") else np.asarray(image)
        axes = parse_axes(axes, data.ndim) if axes is not None else guess_axes(data.shape)
    unit = normalize_unit(unit)
    px = _clean_pixel_size(pixel_size, axes)
    lazy = not isinstance(data, np.ndarray)
    if lazy and not is_lazy(data):
        data = LazyArray(data)
    dtype = np.dtype(data.dtype)
    big = data.size * dtype.itemsize > BIGTIFF_BYTES
    samples = data.shape[-1] if axes.endswith("S") else 1
    rgb = axes.endswith("S") and samples in (3, 4)
    imagej = (not big and not lazy and dtype.newbyteorder("=") in IMAGEJ_DTYPES and _is_imagej_order(axes)
              and (not axes.endswith("S") or (dtype == np.uint8 and samples == 3)))
    if str(path).lower().endswith((".ome.tif", ".ome.tiff")):
        imagej = False
    from .io import SOFTWARE

    kwargs: dict = {"compression": "zlib", "photometric": "rgb" if rgb else "minisblack",
                    "software": SOFTWARE}
    if axes.endswith("S") and not rgb:
        kwargs["planarconfig"] = "contig"
    if imagej:
        meta = {"axes": axes}
        if "Z" in px:
            meta["spacing"] = px["Z"]
        if unit:
            meta["unit"] = _imagej_unit(unit)
        kwargs.update(imagej=True, ome=False, metadata=meta)
        if "X" in px and "Y" in px:
            kwargs.update(resolution=(1.0 / px["X"], 1.0 / px["Y"]))
    elif dtype.newbyteorder("=") in OME_DTYPES:
        meta = {"axes": axes}
        for a, value in px.items():
            meta[f"PhysicalSize{a}"] = value
            meta[f"PhysicalSize{a}Unit"] = _ome_unit(unit)
        kwargs.update(ome=True, bigtiff=big, metadata=meta, **_resolution_kwargs(px, unit))
    else:
        kwargs.update(ome=False, bigtiff=big, metadata={"axes": axes}, **_resolution_kwargs(px, unit))

    if lazy:   # tile by tile: host memory is one tile, whatever the image size
        kwargs.update(tile=(TIFF_TILE, TIFF_TILE), shape=tuple(data.shape), dtype=dtype)
        if not kwargs.get("bigtiff"):
            kwargs["bigtiff"] = big or data.size * dtype.itemsize > BIGTIFF_BYTES // 2

    def _write(tmp: str) -> None:
        tifffile.imwrite(tmp, _tiles(data, axes, TIFF_TILE) if lazy else data, **kwargs)

    return atomic_write(path, _write)


#: tile size of TIFFs written from lazy data (a multiple of 16, as TIFF requires)
TIFF_TILE = 512


def _tiles(data, axes: str, tile: int):
    """The tiles of ``data`` in TIFF order: page by page (every index of the axes before Y),
    rows of tiles top to bottom, each left to right (RGB samples stay inside the tiles)."""
    samples = axes.endswith("S")
    lead = data.shape[:-3] if samples else data.shape[:-2]
    h, w = (data.shape[-3], data.shape[-2]) if samples else data.shape[-2:]
    for idx in np.ndindex(*lead):
        for y in range(0, h, tile):
            for x in range(0, w, tile):
                yield np.asarray(data[idx + (slice(y, y + tile), slice(x, x + tile))])

