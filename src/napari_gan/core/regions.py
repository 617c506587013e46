"""Predicting one region of a plane, centre first: what the live preview of the view shows.

The tiles are those of the whole plane (:class:`.tiling.TileGrid` over the plane), limited to
the ones that touch the region, so the finished region equals the same pixels of the
whole-plane prediction (:meth:`.inference.Predictor.predict_plane` with the same tile and
overlap). They run in order of distance from the region's centre and are blended into
region-sized sums, so a partial result (the tiles done so far, NaN elsewhere) can be shown
after every batch: the centre appears first and the rest fills outward. Only the tiles'
windows of the plane are read (a lazy plane stays on disk).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .errors import NapariGanError
from .tiling import TileGrid, _outer, read_padded

#: tile sizes for previews (input pixels, overlap included). On 2 CPU cores a default Pix2Pix
#: shows a 1024x1024 view in 1.7 s with 512 (9 tiles, first pixels after 0.2 s) against 2.8-3.7 s
#: with 256 (49 tiles: the overlap is recomputed more often); benchmarks/live_preview.py
PREVIEW_TILE_CPU = 512
PREVIEW_TILE_GPU = 1024


@dataclass(frozen=True)
class Region:
    """Rows ``[y0, y1)`` and columns ``[x0, x1)`` of a plane, in its pixels."""

    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def centre(self) -> tuple[float, float]:
        return (self.y0 + self.y1) / 2, (self.x0 + self.x1) / 2

    def scaled(self, factor: int) -> "Region":
        return Region(self.y0 * factor, self.x0 * factor, self.y1 * factor, self.x1 * factor)


def region_within(low: Sequence[float], high: Sequence[float], shape: Sequence[int],
                  margin: int = 0) -> Region | None:
    """The pixels whose centres lie between the corners ``low`` and ``high`` (Y, X; pixel ``i``
    has its centre at ``i``), widened by ``margin`` pixels and clipped to a plane of ``shape``;
    None when nothing of the plane is inside."""
    h, w = int(shape[-2]), int(shape[-1])
    y0 = max(0, math.floor(min(low[0], high[0])) - margin)
    x0 = max(0, math.floor(min(low[1], high[1])) - margin)
    y1 = min(h, math.ceil(max(low[0], high[0])) + 1 + margin)
    x1 = min(w, math.ceil(max(low[1], high[1])) + 1 + margin)
    if y1 <= y0 or x1 <= x0:
        return None
    return Region(y0, x0, y1, x1)


def preview_tile(device: torch.device, tile: int | None = None) -> int:
    """The tile a preview uses: the one asked for, else a small one on a CPU (first pixels
    soon), a larger one on a GPU."""
    if tile:
        return int(tile)
    return PREVIEW_TILE_CPU if torch.device(device).type == "cpu" else PREVIEW_TILE_GPU


class RegionPrediction:
    """The prediction of ``region`` of one ``(C, H, W)`` raw ``plane`` (any array that slices;
    only tile windows are read) by ``predictor`` (a :class:`.inference.Predictor`).

    ``norm``: the input normaliser of the whole plane (``predictor.input_norm.for_plane``;
    give it to avoid measuring a per-image range again for every region of the same plane).
    :meth:`run` computes the tiles centre first; :meth:`partial` is the blended result of the
    tiles done so far (NaN where none has landed yet), in output pixels of the region.
    """

    def __init__(self, predictor, plane, region: Region, tile: int | None = None,
                 overlap: int | None = None, norm=None):
        c, h, w = (int(n) for n in plane.shape)
        if c != predictor.in_channels:
            raise NapariGanError(f"The plane has {c} channel(s) but the model expects {predictor.in_channels}.")
        if region.y0 < 0 or region.x0 < 0 or region.y1 > h or region.x1 > w or min(region.shape) <= 0:
            raise NapariGanError(f"Region {region} lies outside the {h}x{w} plane.")
        self.predictor, self.plane, self.region = predictor, plane, region
        self.tile, self.overlap = predictor.tile_for(h, w, preview_tile(predictor.device, tile), overlap)
        self.norm = norm if norm is not None else predictor.input_norm.for_plane(plane)
        s = predictor.scale
        self.out_region = region.scaled(s)
        self.grid = TileGrid.make((h, w), self.tile, self.overlap, predictor.multiple)
        self.ramps = self.grid.ramps(s)
        self.boxes = self._ordered_boxes()
        oh, ow = self.out_region.shape
        self.sums = np.zeros((predictor.out_channels, oh, ow), np.float32)
        self.weights = np.zeros((oh, ow), np.float32)
        self.done = 0

    @property
    def total(self) -> int:
        return len(self.boxes)

    def _ordered_boxes(self) -> list[tuple[int, int]]:
        """The grid's tiles that touch the region, nearest to its centre first."""
        out = self.out_region
        (ry, rx), t = self.region.centre, self.grid.tile

        def touches(box):
            (ylo, yhi, _), (xlo, xhi, _) = self.ramps[0][box[0]], self.ramps[1][box[1]]
            return ylo < out.y1 and yhi > out.y0 and xlo < out.x1 and xhi > out.x0

        def distance(box):
            return math.hypot(box[0] + t[0] / 2 - ry, box[1] + t[1] / 2 - rx)

        return sorted((b for b in self.grid.boxes() if touches(b)), key=distance)

    def _add(self, box: tuple[int, int], pred: np.ndarray) -> None:
        """Blend one tile's prediction ``(C_out, th*s, tw*s)`` into the region's sums."""
        out, s = self.out_region, self.predictor.scale
        (ylo, yhi, wy), (xlo, xhi, wx) = self.ramps[0][box[0]], self.ramps[1][box[1]]
        y0, y1, x0, x1 = max(ylo, out.y0), min(yhi, out.y1), max(xlo, out.x0), min(xhi, out.x1)
        if y1 <= y0 or x1 <= x0:
            return
        weight = np.outer(wy[y0 - ylo:y1 - ylo], wx[x0 - xlo:x1 - xlo])
        tile = pred[:, y0 - box[0] * s:y1 - box[0] * s, x0 - box[1] * s:x1 - box[1] * s]
        target = (slice(y0 - out.y0, y1 - out.y0), slice(x0 - out.x0, x1 - out.x0))
        self.sums[(slice(None),) + target] += tile * weight
        self.weights[target] += weight

    def step(self) -> int:
        """Compute the next batch of tiles (nearest the centre first); returns how many are done."""
        p = self.predictor
        chunk = self.boxes[self.done:self.done + max(1, getattr(p, "batch", 1))]
        if not chunk:
            return self.done
        raw = np.stack([read_padded(self.plane, box, self.grid.tile) for box in chunk])
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            raise NapariGanError("The image contains NaN or infinite values here; fix or crop them first.")
        x = torch.from_numpy(raw.astype(np.float32, copy=False)).to(p.device)
        preds = p._run_tiles(self.norm.normalize_tensor(x, channel_dim=1)).cpu().numpy()
        for box, pred in zip(chunk, preds):
            self._add(box, pred)
        self.done += len(chunk)
        return self.done

    def run(self, cancel: Callable[[], bool] | None = None,
            on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Compute the remaining tiles, centre first, a batch at a time; ``cancel()`` is asked
        before each batch (true: :class:`InterruptedError`), ``on_batch(done, total)`` after.
        Returns the finished region ``(C_out, h*s, w*s)`` float32 in the target's units."""
        while self.done < self.total:
            if cancel is not None and cancel():
                raise InterruptedError("preview cancelled")
            self.step()
            if on_batch is not None:
                on_batch(self.done, self.total)
        return self.partial()

    def partial(self) -> np.ndarray:
        """The tiles done so far, blended and in the target's units; NaN where none landed."""
        covered = self.weights > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            values = self.sums / np.where(covered, self.weights, 1.0)
        result = self.predictor.target_norm.denormalize_tensor(torch.from_numpy(values), channel_dim=0).numpy()
        result = np.asarray(result, np.float32)
        result[:, ~covered] = np.nan
        return result


def predict_region(predictor, plane, region: Region, tile: int | None = None, overlap: int | None = None,
                   cancel: Callable[[], bool] | None = None,
                   on_batch: Callable[[int, int], None] | None = None, norm=None) -> np.ndarray:
    """``region`` of ``plane`` predicted centre first (see :class:`RegionPrediction`)."""
    return RegionPrediction(predictor, plane, region, tile, overlap, norm).run(cancel, on_batch)
