"""Predicting a lazy image (dask, zarr, a memory-map) into an OME-Zarr store that fills as
the work goes: what Generate Data does with a lazy layer.

The store (:class:`.zarr_io.ZarrImageStore`, axes in NGFF order, pixel sizes scaled for
super-resolution) is created first, so a viewer can show it while it fills; each plane is
predicted chunk row by chunk row (:meth:`.inference.Predictor.predict_plane` into a band
writer: host memory is a band of tile rows plus a band of chunk rows, of a column strip's
width at most, and the input is read one tile window at a time), and every pyramid level is
brought up to date chunk by chunk as soon as the pixels it is computed from are written, so a
zoomed-out view fills in too. The metadata is written
(``complete: true``) only at the end; :func:`store_views` gives lazy views of the levels in
the input's axes order.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .axes import AxesImage, to_planes
from .errors import NapariGanError
from .zarr_io import LazyArray, ZarrImageStore, ngff_axes

#: largest tile of a lazy prediction when the tile is automatic: the first rows appear soon
#: and no read is larger than a tile window (larger on a GPU, where big tiles pay off)
LAZY_TILE_CPU = 512
LAZY_TILE_GPU = 1024


@dataclass
class StreamPlan:
    """A lazy image cut into planes and the store its prediction goes to."""

    planes: object
    layout: object
    out_axes: str                    # the result's axes, in the input's order
    store: ZarrImageStore
    tile: int
    overlap: int

    @property
    def total(self) -> int:
        """Work units for progress: chunks of level 0 over all planes."""
        store = self.store
        h, w = store.shape[store.axes.index("Y")], store.shape[store.axes.index("X")]
        return len(self.planes) * -(-h // store.chunk) * -(-w // store.chunk)


def plan_stream(predictor, image: AxesImage, path: str | Path, *, tile: int | None = None,
                overlap: int | None = None, chunk: int = 512, levels: int | None = None,
                version: str = "0.5", name: str | None = None, pixel_size: dict | None = None,
                unit: str | None = None) -> StreamPlan:
    """Cut ``image`` into planes and describe (not yet create) the OME-Zarr store at ``path``
    that will hold its prediction by ``predictor``. The store's pixel sizes are the image's
    (Y, X divided by the super-resolution factor) unless ``pixel_size`` and ``unit`` give the
    output's."""
    planes, layout = to_planes(image, predictor.in_channels)
    h, w = planes.shape[-2:]
    if min(h, w) < 4:
        raise NapariGanError(f"{image.name} is only {h}x{w} pixels; too small to predict.")
    s, c_out = predictor.scale, predictor.out_channels
    out_axes = layout.output_axes(c_out)
    sizes = dict(zip(layout.lead_axes, layout.lead_shape))
    sizes.update({"C": c_out, "S": c_out, "Y": h * s, "X": w * s})
    store_axes = ngff_axes(out_axes)
    if pixel_size is None:
        pixel_size = {k: (v / s if k in "YX" else v) for k, v in layout.pixel_size.items()}
        unit = layout.unit
    store = ZarrImageStore(path, tuple(sizes[a] for a in store_axes), store_axes, np.float32, chunk, levels,
                           pixel_size, unit, name or image.name, version)
    cap = LAZY_TILE_CPU if predictor.device.type == "cpu" else LAZY_TILE_GPU
    tile, overlap = predictor.tile_for(h, w, tile or min(cap, predictor.auto_tile(h, w)[0]), overlap)
    return StreamPlan(planes, layout, out_axes, store, tile, overlap)


def store_views(store: ZarrImageStore, out_axes: str) -> list[LazyArray]:
    """Lazy views of the store's levels in ``out_axes`` order (the input layer's order; an S
    axis is stored as C): what a viewer shows while the store fills (each read is fresh)."""
    stored = store.axes
    wanted = out_axes.replace("S", "C") if "C" not in out_axes else out_axes
    order = [stored.index(a) for a in wanted]
    return [LazyArray(array).transpose(order) for array in store.arrays]


def _plane_units(plan: StreamPlan, p: int) -> list[tuple[int, ...]]:
    """The store's non-YX indices that plane ``p`` writes (its lead axes, every channel)."""
    layout, store = plan.layout, plan.store
    fixed = dict(zip(layout.lead_axes, np.unravel_index(p, layout.lead_shape))) if layout.lead_axes else {}
    ranges = [[int(fixed[a])] if a in fixed else range(store.shape[store.axes.index(a)])
              for a in store.axes if a not in "YX"]
    return list(itertools.product(*ranges))


class _PyramidFiller:
    """Levels 1.. of one plane kept up to date with its level 0, chunk by chunk: a chunk of a
    level is computed as soon as the (up to four) chunks under it in the level below are
    written, whatever order level 0 fills in (rows, or column strips of rows)."""

    def __init__(self, store: ZarrImageStore, lead: list[tuple[int, ...]]):
        self.store, self.lead = store, lead
        yi, xi, c = store.axes.index("Y"), store.axes.index("X"), store.chunk
        self.grids = [(-(-a.shape[yi] // c), -(-a.shape[xi] // c)) for a in store.arrays]
        self.done: list[set[tuple[int, int]]] = [set() for _ in store.arrays]

    def written(self, rows: tuple[int, int], cols: tuple[int, int]) -> int:
        """Level-0 pixels ``rows x cols`` (whole chunks, or up to the image's edge) are
        written: compute what they complete above. Returns the number of level-0 chunks."""
        c = self.store.chunk
        chunks = [(j, k) for j in range(rows[0] // c, -(-rows[1] // c)) for k in range(cols[0] // c, -(-cols[1] // c))]
        self._mark(0, chunks)
        return len(chunks)

    def _mark(self, level: int, chunks: list[tuple[int, int]]) -> None:
        self.done[level].update(chunks)
        if level + 1 >= len(self.done):
            return
        rows, cols = self.grids[level]
        below = self.done[level]
        ready = [(J, K) for J, K in sorted({(j // 2, k // 2) for j, k in chunks})
                 if all((j, k) in below for j in (2 * J, 2 * J + 1) if j < rows for k in (2 * K, 2 * K + 1) if k < cols)]
        if ready:
            self.store.write_chunks(level + 1, [(idx, J, K) for idx in self.lead for J, K in ready])
            self._mark(level + 1, ready)


def run_stream(predictor, plan: StreamPlan, cancel: Callable[[], bool] | None = None,
               progress: Callable[[int, int], None] | None = None, name: str = "image",
               metadata: dict | None = None) -> ZarrImageStore:
    """Predict every plane of ``plan`` into its store (created already: ``plan.store.create()``),
    then write the store's metadata. Planes wider than a strip go in column strips
    (:func:`.inference.column_strips`), each top to bottom, so host memory does not grow with
    the width. ``progress(done, total)`` counts chunks of level 0 as they are written (their
    pyramid chunks with them); ``cancel()`` is asked between tiles (true:
    :class:`InterruptedError`, the store left as it is)."""
    from .inference import column_strips

    store = plan.store
    h_out, w_out = store.shape[store.axes.index("Y")], store.shape[store.axes.index("X")]
    strips = column_strips(w_out, store.chunk, plan.tile * predictor.scale)
    total, done = plan.total, 0
    for p in range(len(plan.planes)):
        index = {a: int(i) for a, i in zip(plan.layout.lead_axes,
                                           np.unravel_index(p, plan.layout.lead_shape))} if plan.layout.lead_axes else {}
        filler = _PyramidFiller(store, _plane_units(plan, p))
        plane_name = name if len(plan.planes) == 1 else f"{name} (plane {p + 1})"
        for cols in strips:
            def written(r0, r1, cols=cols, filler=filler):
                nonlocal done
                done += filler.written((r0, r1), cols)
                if progress is not None:
                    progress(done, total)

            sink = store.sink(plan.out_axes, index, (0, h_out), cols=cols, written=written)
            predictor.predict_plane(plan.planes[p], plan.tile, plan.overlap, cancel=cancel, out=sink,
                                    rows=(0, h_out), cols=cols, check_input=_nan_check(plane_name))
            sink.close()
    store.write_metadata({"source": name})
    return store


def _nan_check(name: str) -> Callable[[np.ndarray], None]:
    def check(raw: np.ndarray) -> None:
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            raise NapariGanError(f"{name} contains NaN or infinite values; fix or crop them first.")
    return check
