"""Applying a function tile by tile to an image of any size, blended without seams.

One tiler for any number of spatial axes (2 for ``(C, Y, X)``, 3 for ``(C, Z, Y, X)``):

* Tiles live on a virtual canvas padded by ``overlap`` (mirrored) on every side, so border
  pixels get the same context as interior ones and tiled == untiled up to the blending.
* Each tile's blending weight is a product of 1-D ramps (sin^2, rising over ``overlap``
  pixels except at the image border), one per axis; the tiles form a grid, so the summed
  weight is the product of per-axis 1-D sums and no image-sized weight array is needed.
* Tiles are read from the (possibly memory-mapped) input one at a time, batched, sent to
  the device, normalised there and passed to the function.
* The accumulator is either the output array itself (on the host: no image-sized
  temporaries beyond ``out``) or a band of rows (along the first spatial axis) on the
  device; in both cases rows that no later tile touches are finished (divided by the
  summed weight, returned to output units) as the tiles advance.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .errors import NapariGanError
from .normalization import Normalizer

#: Finish at most about this many output pixels per channel at a time (bounded temporaries).
_FINISH_PIXELS = 1 << 22


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``size`` with tiles of ``tile`` overlapping by >= ``overlap``."""
    if size <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return starts


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1-D blending weight: rises over ``overlap`` pixels except at the image border."""
    w = np.ones(length, np.float32)
    o = min(overlap, length // 2)
    if o > 0:
        rise = np.sin(0.5 * np.pi * (np.arange(o, dtype=np.float32) + 0.5) / o) ** 2
        if not at_start:
            w[:o] = rise
        if not at_end:
            w[-o:] = rise[::-1]
    return w


def read_padded(array: np.ndarray, starts: Sequence[int], sizes: Sequence[int]) -> np.ndarray:
    """The window of ``sizes`` at ``starts`` of ``array`` ``(C, *spatial)``, mirrored where it
    leaves the image (repeated edge along an axis only one pixel of the image wide). Only
    the window is read, so memory-mapped arrays stay on disk."""
    shape = array.shape[1:]
    lo = [max(a, 0) for a in starts]
    hi = [min(a + n, s) for a, n, s in zip(starts, sizes, shape)]
    window = np.asarray(array[(slice(None),) + tuple(slice(a, b) for a, b in zip(lo, hi))])
    for axis, (a, n, l, h) in enumerate(zip(starts, sizes, lo, hi), start=1):
        before, after = l - a, a + n - h
        if before or after:
            pads = [(0, 0)] * window.ndim
            pads[axis] = (before, after)
            window = np.pad(window, pads, mode="reflect" if window.shape[axis] > 1 else "edge")
    return window


@dataclass(frozen=True)
class TileGrid:
    """Where the tiles of an image go: per spatial axis, the tile size and the tile starts
    in image coordinates (the first is ``-overlap``: tiles cover the mirrored canvas)."""

    shape: tuple[int, ...]
    tile: tuple[int, ...]
    overlap: int
    starts: tuple[tuple[int, ...], ...]

    @classmethod
    def make(cls, shape: Sequence[int], tile: int | Sequence[int], overlap: int, multiple: int = 1) -> "TileGrid":
        """Tiles of at most ``tile`` pixels (per axis, or the same on every axis) that are
        multiples of ``multiple``, no larger than the padded image needs."""
        shape = tuple(int(s) for s in shape)
        tiles = (tile,) * len(shape) if isinstance(tile, (int, np.integer)) else tuple(tile)
        if len(tiles) != len(shape):
            raise ValueError(f"{len(tiles)} tile sizes for {len(shape)} spatial axes")
        m = int(overlap)
        sizes, starts = [], []
        for size, t in zip(shape, tiles):
            t = max(multiple, int(t) // multiple * multiple)
            t = min(t, round_up(size + 2 * m, multiple))
            sizes.append(t)
            starts.append(tuple(a - m for a in tile_starts(size + 2 * m, t, m)))
        return cls(shape, tuple(sizes), m, tuple(starts))

    def boxes(self) -> list[tuple[int, ...]]:
        """Tile start corners that touch the image, first axis slowest."""
        return [box for box in itertools.product(*self.starts)
                if all(max(a, 0) < min(a + t, s) for a, t, s in zip(box, self.tile, self.shape))]

    def ramps(self, scale: int = 1) -> list[dict[int, tuple[int, int, np.ndarray]]]:
        """Per axis, for each tile start: the output range ``[lo, hi)`` the tile covers in the
        image and its blending weight over that range (``scale`` output pixels per input pixel)."""
        m, s = self.overlap, scale
        out = []
        for size, t, starts in zip(self.shape, self.tile, self.starts):
            per_start = {}
            for a in starts:
                lo, hi = max(a, 0), min(a + t, size)
                if hi > lo:
                    w = ramp(t * s, m * s, a == -m, a + t >= size + m)[(lo - a) * s:(hi - a) * s]
                    per_start[a] = (lo * s, hi * s, w)
            out.append(per_start)
        return out


def _clip_ramps(per_start: dict, span: tuple[int, int]) -> dict:
    """The tiles of one axis (``{start: (lo, hi, weight)}``) that touch output range
    ``span``, each cropped to it."""
    c0, c1 = span
    out = {}
    for a, (lo, hi, w) in per_start.items():
        l, h = max(lo, c0), min(hi, c1)
        if h > l:
            out[a] = (l, h, w[l - lo:h - lo])
    return out


def _outer(vectors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Outer product of 1-D tensors: shape ``(len(v0), len(v1), ...)``."""
    n = len(vectors)
    return functools.reduce(torch.mul, [v.reshape([-1 if i == j else 1 for j in range(n)])
                                        for i, v in enumerate(vectors)])


class _Accumulator:
    """Weighted sums of tile predictions in output coordinates.

    With ``band_on=None`` the sums are kept in ``out`` itself (a CPU tensor sharing its
    memory); with a device, in a band of rows along the first spatial axis on that device:
    a ring (output row ``r`` at band row ``r % band_rows``) whose rows are copied to ``out``
    and cleared as they are finished, so it is never reallocated.
    """

    def __init__(self, out: np.ndarray, band_rows: int, band_on: torch.device | None,
                 weights: list[torch.Tensor], output_norm: Normalizer | None,
                 rows: tuple[int, int] | None = None, start: int = 0):
        self.out, self.weights, self.output_norm = out, weights, output_norm
        # only output rows [rows[0], rows[1]) are written (a share of the image: summed in a band)
        self.rows = rows if rows is not None else (0, out.shape[1])
        if rows is not None and band_on is None:
            band_on = torch.device("cpu")
        self.acc = None
        if band_on is None:
            try:
                self.acc = torch.from_numpy(out)   # shares memory: sums go straight into out
            except (TypeError, ValueError):        # e.g. negative strides: fall back to a band
                band_on = torch.device("cpu")
        if self.acc is not None:
            self.acc.zero_()
            self.band = False
        else:
            self.acc = torch.zeros((out.shape[0], band_rows) + tuple(out.shape[2:]), device=band_on)
            self.band = True
        self.done = start   # output rows before this one are finished in out
        rest = math.prod(out.shape[2:])
        self.finish_rows = max(1, _FINISH_PIXELS // max(1, rest))

    @property
    def device(self) -> torch.device:
        return self.acc.device

    def _segments(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """Where output rows ``[lo, hi)`` are held: ``(first, end, offset)`` slices of the
        accumulator (``offset``: of the first row from ``lo``); one slice unless a band wraps."""
        if not self.band:
            return [(lo, hi, 0)]
        cap, out, r = self.acc.shape[1], [], lo
        while r < hi:
            a = r % cap
            n = min(hi - r, cap - a)
            out.append((a, a + n, r - lo))
            r += n
        return out

    def add(self, pred: torch.Tensor, lo: Sequence[int], hi: Sequence[int], weight: torch.Tensor) -> None:
        """Add ``pred * weight`` (``pred`` already cropped to the image) at ``[lo, hi)``."""
        rest = tuple(slice(a, b) for a, b in zip(lo[1:], hi[1:]))
        for a, b, off in self._segments(lo[0], hi[0]):
            self.acc[(slice(None), slice(a, b)) + rest].addcmul_(pred[:, off:off + b - a], weight[off:off + b - a])

    def finish(self, until: int) -> None:
        """Output rows ``[done, until)`` are complete: divide them by the summed weight,
        return them to output units and (for a band) copy them to ``out`` and clear them."""
        for r0 in range(self.done, until, self.finish_rows):
            r1 = min(until, r0 + self.finish_rows)
            w0, w1 = max(r0, self.rows[0]), min(r1, self.rows[1])   # the rows to write
            for a, b, off in (self._segments(w0, w1) if w1 > w0 else []):
                at = w0 + off
                rows = self.acc[:, a:b]
                res = rows / _outer([self.weights[0][at:at + b - a]] + self.weights[1:])
                if self.output_norm is not None:
                    res = self.output_norm.denormalize_tensor(res, channel_dim=0)
                if self.band:
                    self.out[:, at:at + b - a] = res.cpu().numpy()
                else:
                    rows.copy_(res)
            if self.band:   # the ring's rows are reused for later rows
                for a, b, _ in self._segments(r0, r1):
                    self.acc[:, a:b].zero_()
        self.done = max(self.done, until)


def predict_tiled(source: np.ndarray, fn: Callable[[torch.Tensor], torch.Tensor], out: np.ndarray,
                  tile: int | Sequence[int], overlap: int, *, scale: int = 1, multiple: int = 1,
                  batch: int = 1, device: torch.device | str = "cpu",
                  accumulate_on: torch.device | str | None = "auto",
                  input_norm: Normalizer | None = None, output_norm: Normalizer | None = None,
                  cancel: Callable[[], bool] | None = None,
                  on_tile: Callable[[int, int], None] | None = None,
                  rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None,
                  check_input: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """Apply ``fn`` to ``source`` tile by tile and blend the results into ``out``.

    ``source``: ``(C, *spatial)`` raw pixels, any number of spatial axes (possibly a
    memory-map). ``fn``: a batch ``(B, C, *tile)`` float tensor on ``device`` (normalised by
    ``input_norm`` when given) -> ``(B, C_out, *(tile * scale))`` tensor. ``out``: float32
    ``(C_out, *(spatial * scale))``, written in ``output_norm``'s units when given.
    ``accumulate_on``: ``None`` sums in ``out`` itself on the host; a device sums in a band of
    rows there; ``"auto"`` is ``None`` for a CPU ``device``, else ``device``.
    ``on_tile(done, total)`` after each batch; ``cancel()`` before each, raising
    :class:`InterruptedError` when it returns true.
    ``rows``: compute only output rows ``[rows[0], rows[1])`` along the first spatial axis
    (the tiles touching them, on the same grid as the whole image, so the pixels equal the
    whole image's); the other rows of ``out`` are not written. ``out`` may then be any
    object taking ``out[:, r0:r1] = rows`` in increasing order (e.g. a writer into a Zarr
    store): the sums are kept in a band of rows. ``cols``: likewise only output columns
    ``[cols[0], cols[1])`` along the last spatial axis (a column strip: ``out`` then holds just
    those columns, and the band is as wide as the strip, not the image). ``check_input(raw)``
    sees every batch of raw tiles before it is computed (e.g. refusing NaN).
    """
    device = torch.device(device)
    if isinstance(accumulate_on, str) and accumulate_on == "auto":
        accumulate_on = None if device.type == "cpu" else device
    elif accumulate_on is not None:
        accumulate_on = torch.device(accumulate_on)
    spatial = tuple(source.shape[1:])
    full = tuple(d * scale for d in spatial)
    if cols is not None:
        if len(spatial) < 2:
            raise ValueError("column strips need at least two spatial axes")
        cols = (max(0, int(cols[0])), min(full[-1], int(cols[1])))
        if rows is None:
            rows = (0, full[0])   # a strip is summed in a band of rows
    expected = (out.shape[0],) + full[:-1] + ((cols[1] - cols[0],) if cols is not None else full[-1:])
    if tuple(out.shape) != expected:
        raise ValueError(f"out has shape {out.shape}, expected {expected}")
    grid = TileGrid.make(spatial, tile, overlap, multiple)
    ramps = grid.ramps(scale)
    pred_shape = tuple(t * scale for t in grid.tile)
    with torch.inference_mode():
        acc_device = accumulate_on or torch.device("cpu")
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(acc_device)
        ramps = [{a: (lo, hi, t(w)) for a, (lo, hi, w) in per_axis.items()} for per_axis in ramps]
        weights = []
        for size, per_axis in zip(spatial, ramps):
            summed = torch.zeros(size * scale, device=acc_device)   # 1-D sum of the tiles' ramps
            for lo, hi, w in per_axis.values():
                summed[lo:hi] += w
            weights.append(summed)
        boxes = grid.boxes()
        if cols is not None:   # the strip's tiles, cropped to its columns; the strip's summed weights
            ramps[-1] = _clip_ramps(ramps[-1], cols)
            boxes = [b for b in boxes if b[-1] in ramps[-1]]
            weights[-1] = weights[-1][cols[0]:cols[1]]
        start = 0
        if rows is not None:
            rows = (max(0, int(rows[0])), min(spatial[0] * scale, int(rows[1])))
            boxes = [b for b in boxes if ramps[0][b[0]][0] < rows[1] and ramps[0][b[0]][1] > rows[0]]
            start = ramps[0][boxes[0][0]][0] if boxes else rows[0]
        acc = _Accumulator(out, grid.tile[0] * scale, accumulate_on, weights, output_norm, rows, start)
        total = len(boxes)
        for first in range(0, total, batch):
            if cancel is not None and cancel():
                raise InterruptedError("prediction cancelled")
            chunk = boxes[first:first + batch]
            raw = np.stack([read_padded(source, box, grid.tile) for box in chunk])
            if check_input is not None:
                check_input(raw)
            x = torch.from_numpy(raw.astype(np.float32, copy=False)).to(device)
            if input_norm is not None:
                x = input_norm.normalize_tensor(x, channel_dim=1)
            preds = fn(x)
            if tuple(preds.shape[2:]) != pred_shape or preds.shape[0] != len(chunk) or preds.shape[1] != out.shape[0]:
                raise NapariGanError(
                    f"The model turned tiles of {tuple(x.shape)} into {tuple(preds.shape)}, not the expected "
                    f"{(len(chunk), out.shape[0]) + pred_shape}; its stored scale or channels do not match it."
                )
            for box, pred in zip(chunk, preds):
                parts = [per_axis[a] for per_axis, a in zip(ramps, box)]
                acc.finish(parts[0][0])   # no later tile touches rows above this one
                crop = (slice(None),) + tuple(slice(lo - a * scale, hi - a * scale)
                                              for a, (lo, hi, _) in zip(box, parts))
                shift = [0] * (len(parts) - 1) + [cols[0] if cols is not None else 0]   # into out's columns
                acc.add(pred[crop].to(acc.device), [p[0] - d for p, d in zip(parts, shift)],
                        [p[1] - d for p, d in zip(parts, shift)], _outer([p[2] for p in parts]))
            if on_tile is not None:
                on_tile(min(first + batch, total), total)
        acc.finish(rows[1] if rows is not None else spatial[0] * scale)
    return out
