"""OME-Zarr images in and out, read and written piece by piece.

Reading (:func:`read_ome_zarr`): the axes (``t``, ``c``, ``z``, ``y``, ``x``) and pixel sizes
come from the multiscales metadata (NGFF 0.4 on Zarr v2 or 0.5 on Zarr v3, also inside a
bioformats2raw layout), checked with ome-zarr-py; the chosen level (0, full resolution, by
default) is wrapped in a :class:`LazyArray`: slicing, transposing and picking planes only
record what to read, ``np.asarray`` on a slice reads just that slice (the tiler reads one
tile at a time, training one patch at a time).

Writing (:class:`ZarrImageStore`): NGFF 0.5 (Zarr v3; 0.4 on Zarr v2 on request) with axes in
the NGFF order ``t, c, z, y, x``, chunks of one plane and ``chunk x chunk`` pixels,
``coordinateTransformations`` scales from the pixel sizes and a multiscale pyramid whose
levels (2 x 2 means in Y and X) are computed chunk by chunk from the level above. Outputs are
written into a temporary folder beside the destination and renamed into place when complete,
so a failed or interrupted run never leaves a half-written image under the output name.
Several processes may fill one store together (:meth:`ZarrImageStore.sink` writes whole
chunk rows only, so regions of different processes never share a chunk).

numpy at import; zarr and ome-zarr-py are imported when a store is opened.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import NapariGanError

ZARR_SUFFIXES = (".zarr",)          # also ".ome.zarr"
#: the NGFF axis order (a subsequence of it), and our letters for NGFF axis names
NGFF_ORDER = "TCZYX"
NGFF_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
NGFF_VERSIONS = ("0.4", "0.5")
DEFAULT_NGFF = "0.5"
DEFAULT_CHUNK = 512
#: attribute that marks a store napari-gan wrote (such outputs may be replaced by a later run)
MARK = "napari-gan"
#: NGFF unit names <-> the canonical names of :func:`.axes.normalize_unit`
_NGFF_UNITS = {"micrometer": "micron", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm",
               "meter": "m", "angstrom": "Å", "picometer": "pm"}
_UNITS_NGFF = {v: k for k, v in _NGFF_UNITS.items()}
_MICRONS = {"micron": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4, "pm": 1e-6}
#: elements read at a time when copying an image into a store
_BAND_ELEMENTS = 1 << 24


def is_zarr_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a Zarr store (a ``.zarr`` / ``.ome.zarr`` folder, existing or not)."""
    return Path(path).name.lower().endswith(ZARR_SUFFIXES)


# ------------------------------------------------------------------------- lazy views
class LazyArray:
    """A view of an array (a zarr array, a memory-map, anything with ``shape``, ``dtype`` and
    basic indexing) that reads nothing until it is converted with ``np.asarray``.

    Integer and slice indexing (steps > 0), ``...``, ``None``, :meth:`transpose` and
    :meth:`view` (a cast applied on reading) are recorded; ``np.asarray(view)`` then reads
    exactly the selected region of the base array with one indexing call. Anything else
    (fancy indexing, negative steps) reads the view and indexes the result.
    """

    def __init__(self, base, _fixed: dict | None = None, _dims: list | None = None, dtype=None):
        self.base = base
        self._fixed = dict(_fixed or {})          # base axis -> the index it is fixed at
        # view axes: (base axis, start, step, length), or None for an inserted axis of length 1
        self._dims = list(_dims) if _dims is not None else [
            (d, 0, 1, int(n)) for d, n in enumerate(base.shape)]
        self._dtype = np.dtype(dtype) if dtype is not None else None

    # ------------------------------------------------------------------ array protocol
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(1 if d is None else d[3] for d in self._dims)

    @property
    def ndim(self) -> int:
        return len(self._dims)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype if self._dtype is not None else np.dtype(self.base.dtype)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        if not self._dims:
            raise TypeError("len() of a 0-d view")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"LazyArray(shape={self.shape}, dtype={self.dtype}, base={type(self.base).__name__})"

    def _derive(self, fixed, dims, dtype=None) -> "LazyArray":
        return LazyArray(self.base, fixed, dims, dtype if dtype is not None else self._dtype)

    def view(self, dtype) -> "LazyArray":
        """The view read as ``dtype`` (a cast on reading, e.g. bool as uint8)."""
        return self._derive(self._fixed, self._dims, np.dtype(dtype))

    astype = view

    def transpose(self, *axes) -> "LazyArray":
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(reversed(range(self.ndim)))
        if sorted(int(a) % max(self.ndim, 1) for a in axes) != list(range(self.ndim)):
            raise ValueError(f"axes {axes} do not permute a {self.ndim}-d view")
        return self._derive(self._fixed, [self._dims[int(a) % self.ndim] for a in axes])

    @property
    def T(self) -> "LazyArray":
        return self.transpose()

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        consuming = sum(1 for k in key if k is not None and k is not Ellipsis)
        if sum(1 for k in key if k is Ellipsis) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        if consuming > self.ndim:
            raise IndexError(f"too many indices for a {self.ndim}-d view")
        fill = (slice(None),) * (self.ndim - consuming)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + fill + key[i + 1:]
        else:
            key = key + fill
        fixed, dims, own = dict(self._fixed), [], iter(self._dims)
        for k in key:
            if k is None:
                dims.append(None)
                continue
            d = next(own)
            length = 1 if d is None else d[3]
            if isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)):
                k = int(k) + (length if k < 0 else 0)
                if not 0 <= k < length:
                    raise IndexError(f"index {k} is out of bounds for an axis of size {length}")
                if d is not None:
                    fixed[d[0]] = d[1] + k * d[2]
            elif isinstance(k, slice):
                a, b, step = k.indices(length)
                n = len(range(a, b, step))
                if step <= 0 or (d is None and n != 1):
                    return np.asarray(self)[key]
                dims.append(None if d is None else (d[0], d[1] + a * d[2], d[2] * step, n))
            else:   # fancy indexing: read the view, then index it
                return np.asarray(self)[key]
        return self._derive(fixed, dims)

    def selection(self) -> tuple:
        """The basic index of the base array this view reads."""
        by_axis = {d[0]: d for d in self._dims if d is not None}
        sel = []
        for axis in range(len(self.base.shape)):
            if axis in self._fixed:
                sel.append(self._fixed[axis])
            else:
                _, start, step, n = by_axis[axis]
                sel.append(slice(start, start + step * (n - 1) + 1 if n else start, step))
        return tuple(sel)

    def __array__(self, dtype=None, copy=None):
        data = np.asarray(self.base[self.selection()])
        present = [a for a in range(len(self.base.shape)) if a not in self._fixed]
        order = [present.index(d[0]) for d in self._dims if d is not None]
        if order != sorted(order):
            data = data.transpose(order)
        data = data.reshape(self.shape)
        target = dtype if dtype is not None else self._dtype
        if target is not None and data.dtype != np.dtype(target):
            data = data.astype(target)
        return data

    def read(self) -> np.ndarray:
        return np.asarray(self)


class MappedFile:
    """An uncompressed C-order array at ``offset`` in a file (a memory-mappable TIFF), mapped
    only while a region is read: unlike one long-lived memory-map, the pages read are not
    kept in this process's resident memory, so reading a huge image tile by tile keeps the
    process small (the operating system still caches the file)."""

    def __init__(self, path: str | os.PathLike, offset: int, shape: Sequence[int], dtype):
        self.path, self.offset = str(path), int(offset)
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key):
        mapped = np.memmap(self.path, self.dtype, "r", self.offset, self.shape)
        try:
            return np.array(mapped[key])
        finally:
            mapped._mmap.close()   # unmap now (the copy above holds the data)


def is_lazy(array) -> bool:
    return isinstance(array, LazyArray)


class LazyPlanes:
    """``(P, C, H, W)`` planes of a lazy image (:func:`.axes.to_planes`): ``planes[i]`` is a
    :class:`LazyArray` ``(C, H, W)``; nothing is read until a plane is sliced and converted."""

    def __init__(self, moved: LazyArray, lead: int, has_channel: bool):
        self.moved, self.lead, self.has_channel = moved, int(lead), bool(has_channel)
        self.lead_shape = tuple(moved.shape[:self.lead])
        c = moved.shape[self.lead] if has_channel else 1
        self.shape = (math.prod(self.lead_shape), c) + tuple(moved.shape[-2:])

    ndim = 4

    @property
    def dtype(self) -> np.dtype:
        return self.moved.dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        i = int(i) + (len(self) if i < 0 else 0)
        if not 0 <= i < len(self):
            raise IndexError(f"plane {i} of {len(self)}")
        index = tuple(int(k) for k in np.unravel_index(i, self.lead_shape)) if self.lead_shape else ()
        plane = self.moved[index]
        return plane if self.has_channel else plane[None]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


# ------------------------------------------------------------------------------ units
def _ngff_unit(unit: str | None) -> str | None:
    return _UNITS_NGFF.get(unit) if unit else None


def _our_unit(unit) -> str | None:
    from .axes import normalize_unit

    if not unit:
        return None
    return _NGFF_UNITS.get(str(unit).lower(), normalize_unit(unit))


# ---------------------------------------------------------------------------- reading
def _open_group(path: Path):
    import zarr

    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as exc:   # not a group: maybe a bare array, maybe nothing readable
        try:
            return zarr.open_array(str(path), mode="r")
        except Exception:
            raise NapariGanError(f"Could not read '{path}' as OME-Zarr ({exc}).") from exc


def _ome_attrs(group) -> dict:
    attrs = group.attrs.asdict()
    return attrs.get("ome", attrs) if isinstance(attrs.get("ome"), dict) else attrs


def _image_group(group, path: Path, series: int | None):
    """The group holding the multiscales of the image to read (inside a bioformats2raw
    layout: series ``series``) and how many images the store holds."""
    attrs = _ome_attrs(group)
    if "multiscales" in attrs:
        if series not in (None, 0):
            raise NapariGanError(f"'{path.name}' holds one image; there is no series {series}.")
        return group, 1
    if "bioformats2raw.layout" in attrs or "plate" in attrs or "well" in attrs:
        names = sorted((k for k in group.group_keys() if k.isdigit()), key=int)
        images = [k for k in names if "multiscales" in _ome_attrs(group[k])]
        if not images:
            raise NapariGanError(f"'{path.name}' holds no OME-Zarr image (plates and wells are not "
                                 "supported; open one of its images).")
        if series is None and len(images) > 1:
            raise NapariGanError(f"'{path.name}' holds {len(images)} images (series {', '.join(images[:8])}"
                                 f"{' ...' if len(images) > 8 else ''}) of which napari-gan uses one; choose "
                                 "one with --series N.")
        index = 0 if series is None else series
        if str(index) not in images:
            raise NapariGanError(f"'{path.name}' has no series {index}; it holds {', '.join(images[:8])}.")
        return group[str(index)], len(images)
    raise NapariGanError(f"'{path}' is a Zarr group without OME-Zarr 'multiscales' metadata.")


def _axis_letters(axes_meta: list, path: Path) -> str:
    """NGFF axes (dicts with name and type) -> our letters (t, c, z, y, x by name; other
    names by type: time -> T, channel -> C, space -> Z)."""
    letters = []
    for axis in axes_meta:
        name = str(axis.get("name", "") if isinstance(axis, dict) else axis).lower()
        kind = axis.get("type") if isinstance(axis, dict) else None
        letter = name.upper() if name in ("t", "c", "z", "y", "x") else \
            {"time": "T", "channel": "C", "space": "Z"}.get(kind or "")
        if letter is None or letter in letters:
            raise NapariGanError(
                f"'{path.name}': cannot name the axes {[a.get('name') if isinstance(a, dict) else a for a in axes_meta]} "
                "with T, C, Z, Y and X; give them with --axes.")
        letters.append(letter)
    return "".join(letters)


def _scales(transforms, ndim: int) -> list[float]:
    scale = [1.0] * ndim
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") == "scale" and isinstance(t.get("scale"), list) \
                and len(t["scale"]) == ndim:
            scale = [a * float(b) for a, b in zip(scale, t["scale"])]
    return scale


def read_ome_zarr(path: str | os.PathLike, axes: str | None = None, level: int = 0,
                  series: int | None = None):
    """Read one level of an OME-Zarr image (or a bare Zarr array) lazily, as an
    :class:`~.axes.AxesImage` whose data is a :class:`LazyArray` over the zarr array.

    Axes and pixel sizes come from the multiscales metadata (``axes`` overrides the letters);
    the pixel sizes are those of ``level`` (its ``coordinateTransformations`` scale times the
    multiscale's own). ``series_count`` tells how many images the store holds."""
    from .axes import AxesImage, guess_axes, parse_axes

    path = Path(path)
    if not path.is_dir():
        raise NapariGanError(f"'{path}' does not exist." if not path.exists() else
                             f"'{path}' is not an OME-Zarr folder.")
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise NapariGanError(f"--level must be a whole number from 0, not {level!r}.")
    import zarr

    node = _open_group(path)
    if isinstance(node, zarr.Array):   # a bare array: no metadata
        if level:
            raise NapariGanError(f"'{path.name}' is a single Zarr array without levels; --level must be 0.")
        letters = parse_axes(axes, node.ndim) if axes is not None else guess_axes(node.shape, name=path.name)
        return AxesImage(LazyArray(node), letters, {}, None, path.name, 1)
    group, count = _image_group(node, path, series)
    attrs = _ome_attrs(group)
    multiscale = attrs["multiscales"][0]
    version = str(multiscale.get("version") or attrs.get("version") or "0.4")
    axes_meta = multiscale.get("axes")
    if axes_meta is not None:
        from ome_zarr.axes import Axes
        from ome_zarr.format import format_from_version

        try:
            fmt = format_from_version(version)
        except ValueError:   # a version ome-zarr-py does not know yet: read what we understand
            fmt = None
        try:
            if fmt is not None:
                Axes(axes_meta, fmt=fmt)     # ome-zarr-py's checks: raises ValueError if not valid
        except ValueError as exc:
            raise NapariGanError(f"'{path.name}' has invalid OME-Zarr axes metadata ({exc}).") from exc
    datasets = multiscale.get("datasets") or []
    if level >= len(datasets):
        raise NapariGanError(f"'{path.name}' has {len(datasets)} level(s) (0 to {len(datasets) - 1}); "
                             f"there is no level {level}.")
    try:
        array = group[datasets[level]["path"]]
    except Exception as exc:
        raise NapariGanError(f"'{path.name}': level {level} cannot be read ({exc}).") from exc
    if axes_meta is None:   # NGFF 0.1/0.2: always tczyx
        axes_meta = [{"name": n} for n in "tczyx"]
    if len(axes_meta) != array.ndim:
        raise NapariGanError(f"'{path.name}': the metadata names {len(axes_meta)} axes but level {level} "
                             f"has {array.ndim} dimensions.")
    letters = parse_axes(axes, array.ndim) if axes is not None else _axis_letters(axes_meta, path)
    letters = parse_axes(letters, array.ndim)
    scale = _scales(datasets[level].get("coordinateTransformations"), array.ndim)
    scale = [a * b for a, b in zip(scale, _scales(multiscale.get("coordinateTransformations"), array.ndim))]
    units = {letters[i]: _our_unit(a.get("unit")) for i, a in enumerate(axes_meta) if isinstance(a, dict)}
    unit = units.get("X") or units.get("Y") or units.get("Z")
    pixel_size = {}
    for i, letter in enumerate(letters):
        if letter in "ZYX":
            value = scale[i]
            own = units.get(letter)
            if own and unit and own != unit:   # one unit for all: X's
                if own not in _MICRONS or unit not in _MICRONS:
                    continue
                value = value * _MICRONS[own] / _MICRONS[unit]
            pixel_size[letter] = value
    if all(v == 1.0 for v in pixel_size.values()) and not unit:
        pixel_size = {}     # scale 1 without a unit: no calibration
    return AxesImage(LazyArray(array), letters, pixel_size, unit, path.name, count)


# ---------------------------------------------------------------------------- writing
def ngff_axes(axes: str) -> str:
    """Our axes in the NGFF order (RGB samples S become the channel axis C)."""
    axes = axes.replace("S", "C") if "C" not in axes else axes
    return "".join(a for a in NGFF_ORDER if a in axes)


def auto_levels(height: int, width: int, chunk: int) -> int:
    """Pyramid levels: halve Y and X until the image fits in one chunk (at most 12 levels)."""
    levels, h, w = 1, height, width
    while max(h, w) > chunk and min(h, w) >= 2 and levels < 12:
        h, w = -(-h // 2), -(-w // 2)
        levels += 1
    return levels


def level_shapes(shape: Sequence[int], axes: str, levels: int) -> list[tuple[int, ...]]:
    y, x = axes.index("Y"), axes.index("X")
    shapes = [tuple(int(s) for s in shape)]
    for _ in range(levels - 1):
        s = list(shapes[-1])
        s[y], s[x] = -(-s[y] // 2), -(-s[x] // 2)
        shapes.append(tuple(s))
    return shapes


def _split(n: int, rank: int, world: int) -> range:
    """Rank ``rank``'s contiguous share of ``n`` units."""
    return range(rank * n // world, (rank + 1) * n // world)


class BandWriter:
    """One ``(C, H, W)`` float32 plane of a zarr array, as the tiler writes it: rows arrive in
    order (``sink[:, r0:r1] = rows``) and are written in bands of whole chunk rows, so each
    chunk is written once and processes writing different row ranges never share a chunk.

    ``rows``: the output rows this writer receives (chunk-aligned, except at the image end).
    ``cols``: the columns it holds (a column strip, chunk-aligned likewise; its ``shape`` is
    then ``(C, H, cols[1] - cols[0])``). ``check(rows)`` sees every band before it is written
    (e.g. refusing NaN outputs). ``written(r0, r1)`` is told each band once it is stored.
    """

    def __init__(self, array, axes: str, index: dict[str, int], channel: str | None,
                 shape: tuple[int, int, int], chunk_rows: int, rows: tuple[int, int] | None = None,
                 check: Callable[[np.ndarray], None] | None = None, cols: tuple[int, int] | None = None,
                 written: Callable[[int, int], None] | None = None):
        self.array, self.axes, self.index, self.channel = array, axes, dict(index), channel
        self.cols = (0, int(shape[2])) if cols is None else (int(cols[0]), int(cols[1]))
        self.shape = (int(shape[0]), int(shape[1]), self.cols[1] - self.cols[0])
        self.dtype = np.dtype(np.float32)
        self.chunk_rows = int(chunk_rows)
        self.start, self.stop = rows if rows is not None else (0, self.shape[1])
        self.written = written
        self.next = self.start
        self.check = check
        c, _, w = self.shape
        self.buf = np.empty((c, min(self.chunk_rows, max(1, self.stop - self.start)), w), np.float32)
        self.buf_start = self.start
        kept = [a for a in axes if a in ((channel or ""), "Y", "X")]
        source = ((channel,) if channel else ()) + ("Y", "X")
        self.order = [source.index(a) for a in kept]

    @property
    def ndim(self) -> int:
        return 3

    def _band_end(self) -> int:
        return min((self.buf_start // self.chunk_rows + 1) * self.chunk_rows, self.stop)

    def __setitem__(self, key, value) -> None:
        key = key if isinstance(key, tuple) else (key,)
        if len(key) < 2 or key[0] != slice(None) or not isinstance(key[1], slice) \
                or any(k != slice(None) for k in key[2:]):
            raise TypeError(f"a band writer takes rows as out[:, r0:r1], not {key}")
        r0, r1, _ = key[1].indices(self.shape[1])
        if r1 <= r0:
            return
        if r0 != self.next or r1 > self.stop:
            raise ValueError(f"rows {r0}:{r1} arrive out of order (expected from {self.next} up to {self.stop})")
        value = np.asarray(value, np.float32)
        pos = 0
        while r0 < r1:
            end = self._band_end()
            n = min(r1, end) - r0
            at = r0 - self.buf_start
            self.buf[:, at:at + n] = value[:, pos:pos + n]
            r0, pos = r0 + n, pos + n
            self.next = r0
            if r0 == end:
                self._flush(end)

    def _flush(self, end: int) -> None:
        block = self.buf[:, :end - self.buf_start]
        if self.check is not None:
            self.check(block)
        bounds = {"Y": slice(self.buf_start, end), "X": slice(*self.cols)}
        region = tuple(self.index[a] if a in self.index else bounds.get(a, slice(None)) for a in self.axes)
        data = block.transpose(self.order) if self.channel else block[0]
        self.array[region] = data
        if self.written is not None:
            self.written(self.buf_start, end)
        self.buf_start = end

    def close(self) -> None:
        if self.next != self.stop:
            raise RuntimeError(f"only rows {self.start}:{self.next} of {self.start}:{self.stop} were written")
        self.buf = np.empty((0, 0, 0), np.float32)


class ZarrImageStore:
    """An image being written into a Zarr store at ``path``: its levels' arrays, its axes
    (in array order), pixel size and unit. :meth:`create` (one process) makes the arrays;
    :meth:`open` (any process) opens them; :meth:`sink` gives a plane writer;
    :meth:`write_pyramid` fills levels 1.. from level 0; :meth:`write_metadata` adds the
    OME-Zarr metadata (``ome=False``: a plain store, e.g. a temporary one)."""

    def __init__(self, path: str | os.PathLike, shape: Sequence[int], axes: str, dtype=np.float32,
                 chunk: int = DEFAULT_CHUNK, levels: int | None = 1, pixel_size: dict | None = None,
                 unit: str | None = None, name: str | None = None, version: str = DEFAULT_NGFF,
                 ome: bool = True):
        from .axes import parse_axes

        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.axes = parse_axes(axes, len(self.shape))
        if ome and self.axes != ngff_axes(self.axes):
            raise ValueError(f"OME-Zarr axes must be in the order {NGFF_ORDER}, not {self.axes}")
        if version not in NGFF_VERSIONS:
            raise NapariGanError(f"OME-Zarr version {version} cannot be written; choose one of "
                                 f"{', '.join(NGFF_VERSIONS)}.")
        self.dtype = np.dtype(dtype)
        self.chunk = int(chunk)
        h, w = self.shape[self.axes.index("Y")], self.shape[self.axes.index("X")]
        self.levels = auto_levels(h, w, self.chunk) if levels is None else max(1, int(levels))
        self.pixel_size = {k: float(v) for k, v in (pixel_size or {}).items() if k in self.axes}
        self.unit, self.name = unit, name or self.path.name
        self.version, self.ome = version, ome
        self.arrays: list = []

    # ------------------------------------------------------------------ arrays
    @property
    def zarr_format(self) -> int:
        return 2 if self.version == "0.4" else 3

    def chunks_of(self, shape) -> tuple[int, ...]:
        return tuple(min(self.chunk, s) if a in "YX" else 1 for a, s in zip(self.axes, shape))

    def create(self) -> "ZarrImageStore":
        import zarr

        group = zarr.open_group(str(self.path), mode="w", zarr_format=self.zarr_format)
        self.arrays = []
        for k, shape in enumerate(level_shapes(self.shape, self.axes, self.levels)):
            kwargs = {"dimension_names": [a.lower() for a in self.axes]} if self.zarr_format == 3 else \
                {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
            self.arrays.append(group.create_array(str(k), shape=shape, chunks=self.chunks_of(shape),
                                                  dtype=self.dtype, fill_value=0, **kwargs))
        group.attrs[MARK] = {"software": MARK, "complete": False}
        return self

    def open(self) -> "ZarrImageStore":
        import zarr

        group = zarr.open_group(str(self.path), mode="r+")
        self.arrays = [group[str(k)] for k in range(self.levels)]
        return self

    def sink(self, out_axes: str, index: dict[str, int], rows: tuple[int, int] | None = None,
             check: Callable[[np.ndarray], None] | None = None, cols: tuple[int, int] | None = None,
             written: Callable[[int, int], None] | None = None) -> BandWriter:
        """A writer for one ``(C, H, W)`` plane of level 0 (or its rows ``rows`` and columns
        ``cols``; see :class:`BandWriter`): ``index`` fixes the plane's other axes; ``out_axes``
        are the plane's axes (S stands for C in an OME store)."""
        channel = "C" if "C" in self.axes else None
        if channel is None and "S" in self.axes:
            channel = "S"
        c = self.shape[self.axes.index(channel)] if channel else 1
        h, w = self.shape[self.axes.index("Y")], self.shape[self.axes.index("X")]
        return BandWriter(self.arrays[0], self.axes, index, channel, (c, h, w), self.chunk, rows, check, cols, written)

    # ------------------------------------------------------------------ pyramid
    def pyramid_units(self, level: int) -> list[tuple[tuple[int, ...], int]]:
        """Work units of a pyramid level: (index of the non-YX axes, chunk row)."""
        shape = self.arrays[level].shape if self.arrays else level_shapes(self.shape, self.axes, self.levels)[level]
        lead = [s for a, s in zip(self.axes, shape) if a not in "YX"]
        rows = -(-shape[self.axes.index("Y")] // self.chunk)
        return [(idx, j) for idx in np.ndindex(*lead) for j in range(rows)]

    def write_level(self, level: int, units: Iterable[tuple[tuple[int, ...], int]]) -> None:
        """Compute ``units`` (non-YX index, chunk row) of ``level`` (>= 1) from ``level - 1``,
        one chunk at a time (:meth:`write_chunks`)."""
        xi = self.axes.index("X")
        cols = -(-self.arrays[level].shape[xi] // self.chunk)
        self.write_chunks(level, [(idx, j, k) for idx, j in units for k in range(cols)])

    def write_chunks(self, level: int, chunks: Iterable[tuple[tuple[int, ...], int, int]]) -> None:
        """Compute ``chunks`` (non-YX index, chunk row, chunk column) of ``level`` (>= 1) from
        ``level - 1``: 2 x 2 means in Y and X (an odd edge repeats its last row/column)."""
        src, dst = self.arrays[level - 1], self.arrays[level]
        yi, xi = self.axes.index("Y"), self.axes.index("X")
        c = self.chunk
        sh, sw = src.shape[yi], src.shape[xi]
        dh, dw = dst.shape[yi], dst.shape[xi]
        for idx, j, k in chunks:
            r0, r1 = j * c, min(dh, (j + 1) * c)
            c0, c1 = k * c, min(dw, (k + 1) * c)
            block = np.asarray(src[self._region(idx, slice(2 * r0, min(sh, 2 * r1)), slice(2 * c0, min(sw, 2 * c1)))])
            dst[self._region(idx, slice(r0, r1), slice(c0, c1))] = _halve(block, (r1 - r0, c1 - c0), self.dtype)

    def _region(self, lead: Sequence[int], ys: slice, xs: slice) -> tuple:
        """An index of the store's arrays: ``lead`` for the non-YX axes (in order), then Y, X."""
        lead = iter(int(i) for i in lead)
        return tuple(ys if a == "Y" else xs if a == "X" else next(lead) for a in self.axes)

    def write_pyramid(self, rank: int = 0, world: int = 1, barrier: Callable[[], None] | None = None) -> None:
        """Levels 1.. from level 0, each level split over ``world`` processes (``barrier``
        between levels: a level reads what every process wrote of the one above)."""
        for level in range(1, self.levels):
            units = self.pyramid_units(level)
            self.write_level(level, [units[i] for i in _split(len(units), rank, world)])
            if barrier is not None and level < self.levels - 1:
                barrier()

    # ------------------------------------------------------------------ metadata
    def axes_metadata(self) -> list[dict]:
        unit = _ngff_unit(self.unit)
        out = []
        for a in self.axes:
            axis = {"name": a.lower(), "type": NGFF_TYPES.get(a, "channel")}
            if a in "ZYX" and unit and self.pixel_size:
                axis["unit"] = unit
            out.append(axis)
        return out

    def scale_of(self, level: int) -> list[float]:
        factor = 2 ** level
        return [float(self.pixel_size.get(a, 1.0)) * (factor if a in "YX" else 1) for a in self.axes]

    def write_metadata(self, extra: dict | None = None) -> None:
        """The multiscales metadata (through ome-zarr-py) and napari-gan's mark."""
        import zarr

        group = zarr.open_group(str(self.path), mode="r+")
        if self.ome:
            from ome_zarr.format import format_from_version
            from ome_zarr.writer import write_multiscales_metadata

            datasets = [{"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": self.scale_of(k)}]}
                        for k in range(self.levels)]
            write_multiscales_metadata(group, datasets, fmt=format_from_version(self.version),
                                       axes=self.axes_metadata(), name=self.name)
        from .. import __version__

        group.attrs[MARK] = {"software": MARK, "version": __version__, "complete": True, **(extra or {})}


def _halve(block: np.ndarray, out_hw: tuple[int, int], dtype) -> np.ndarray:
    """2 x 2 means of a 2-D block (an odd edge repeats its last row/column)."""
    h, w = out_hw
    pad = ((0, 2 * h - block.shape[0]), (0, 2 * w - block.shape[1]))
    if any(p[1] for p in pad):
        block = np.pad(block, pad, mode="edge")
    means = block.reshape(h, 2, w, 2).astype(np.float64 if block.dtype.itemsize > 4 else np.float32).mean(axis=(1, 3))
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        means = np.clip(np.rint(means), info.min, info.max)
    elif dtype.kind == "b":
        means = means >= 0.5
    return means.astype(dtype)


# -------------------------------------------------------------------- output folders
def temporary_path(path: str | os.PathLike) -> Path:
    """Where an output store is built before it is renamed into place (the same for every
    process of a run, so they can fill it together)."""
    path = Path(path)
    return path.parent / f".{path.name}.napari-gan-part"


def is_own_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Zarr store napari-gan wrote (which a later run may replace)."""
    path = Path(path)
    for meta in ("zarr.json", ".zattrs"):
        try:
            import json

            text = (path / meta).read_text()
            attrs = json.loads(text)
            attrs = attrs.get("attributes", attrs) if meta == "zarr.json" else attrs
            own = attrs.get(MARK) if isinstance(attrs, dict) else None
            if isinstance(own, dict) and own.get("software") == MARK:
                return True
        except (OSError, ValueError):
            continue
    return False


def move_into_place(tmp: Path, path: Path) -> Path:
    """Rename the finished store ``tmp`` to ``path`` (replacing a store napari-gan wrote there)."""
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.napari-gan-old"
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


def remove_store(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _inside(a: Path, b: Path) -> bool:
    """Whether ``a`` is ``b`` or lies inside it (links resolved)."""
    try:
        a, b = a.resolve(), b.resolve()
    except (OSError, RuntimeError):
        a, b = Path(os.path.abspath(a)), Path(os.path.abspath(b))
    return a == b or b in a.parents


def check_zarr_output(path: str | os.PathLike, protected=(), option: str = "--output") -> Path:
    """Refuse an OME-Zarr output before any work starts: when it is, lies inside or contains
    one of the ``protected`` paths (inputs, models), when it exists and is not a store
    napari-gan wrote (never replaced), or when its folder cannot be written."""
    from .io import check_writable

    path = Path(path).expanduser()
    if not is_zarr_path(path):
        raise NapariGanError(f"{option} '{path}' must be an OME-Zarr folder name (ending in .zarr or .ome.zarr).")
    for other, what in protected:
        if other is None:
            continue
        other = Path(other)
        if _inside(path, other) or _inside(other, path):
            raise NapariGanError(f"{option} '{path}' would replace {what} '{other}'; napari-gan never writes over "
                                 "its inputs or models. Choose another output.")
    if path.exists() and not (path.is_dir() and is_own_store(path)):
        raise NapariGanError(f"{option} '{path}' already exists and was not written by napari-gan, so it is never "
                             "replaced; choose another name or move it away.")
    check_writable(path.parent / (path.name + ".check"))
    return path


# ------------------------------------------------------------------ whole images
def write_ome_zarr(path: str | os.PathLike, image, chunk: int = DEFAULT_CHUNK, levels: int | None = None,
                   version: str = DEFAULT_NGFF, dtype=None, check: Callable[[np.ndarray], None] | None = None) -> Path:
    """Write an :class:`~.axes.AxesImage` (in memory, memory-mapped or lazy) as an OME-Zarr
    image with a pyramid, band by band (host memory: a band of ``chunk`` rows), atomically.
    Axes are stored in NGFF order; RGB samples become channels."""
    from .axes import AxesImage

    if not isinstance(image, AxesImage):
        raise TypeError("write_ome_zarr takes an AxesImage")
    path = Path(path)
    src, axes = image.data, image.axes
    if "S" in axes and "C" in axes:
        if src.shape[-1] != 1:
            raise NapariGanError(f"{image.name} has both channels (C) and RGB samples (S); OME-Zarr has one "
                                 "channel axis.")
        src, axes = src[..., 0], axes[:-1]
    target = ngff_axes(axes)
    order = [axes.index("S" if a == "C" and "C" not in axes else a) for a in target]
    if isinstance(src, np.ndarray):
        moved = src.transpose(order)
    else:
        moved = (src if is_lazy(src) else LazyArray(src)).transpose(order)
    dtype = np.dtype(dtype or (np.uint8 if image.dtype.kind == "b" else image.dtype.newbyteorder("=")))
    store = ZarrImageStore(temporary_path(path), moved.shape, target, dtype, chunk, levels,
                           image.pixel_size, image.unit, image.name, version)
    if store.path.exists():
        remove_store(store.path)
    try:
        store.create()
        yi = target.index("Y")
        lead_axes = [i for i, a in enumerate(target) if a not in "YX"]
        h, w = moved.shape[yi], moved.shape[target.index("X")]
        band = max(store.chunk, _BAND_ELEMENTS // max(1, w) // store.chunk * store.chunk)
        for idx in np.ndindex(*[moved.shape[i] for i in lead_axes]):
            for r0 in range(0, h, band):
                lead = iter(idx)
                region = tuple(slice(r0, r0 + band) if a == "Y" else slice(None) if a == "X" else next(lead)
                               for a in target)
                block = np.asarray(moved[region])
                if check is not None:
                    check(block)
                store.arrays[0][region] = block.astype(dtype, copy=False)
        store.write_pyramid()
        store.write_metadata()
        return move_into_place(store.path, path)
    except BaseException:
        remove_store(store.path)
        raise
