"""Predicting a lazy image (dask, zarr, a memory-map) into an OME-Zarr store that fills as
the work goes: what Generate Data does with a lazy layer.

The store (:class:`.zarr_io.ZarrImageStore`, axes in NGFF order, pixel sizes scaled for
super-resolution) is created first, so a viewer can show it while it fills; each plane is
predicted chunk row by chunk row (:meth:`.inference.Predictor.predict_plane` into a band
writer: host memory is a band of tile rows plus a band of chunk rows, the input is read one
tile window at a time), and every pyramid level is brought up to date as soon as the rows it
is computed from are written, so a zoomed-out view fills in too. The metadata is written
(``complete: true``) only at the end; :func:`store_views` gives lazy views of the levels in
the input's axes order.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
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
    rows_done: list[list[int]] = field(default_factory=list)   # per plane, per level

    @property
    def total(self) -> int:
        """Work units for progress: chunk rows of level 0 over all planes."""
        return len(self.planes) * -(-self.store.shape[self.store.axes.index("Y")] // self.store.chunk)


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
    return StreamPlan(planes, layout, out_axes, store, tile, overlap,
                      [[0] * store.levels for _ in range(len(planes))])


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


def _advance_pyramid(plan: StreamPlan, p: int, rows0: int) -> None:
    """Levels 1.. of plane ``p`` up to date with its first ``rows0`` rows of level 0: each
    chunk row of a level is computed once the two chunk rows above it are written."""
    store, done = plan.store, plan.rows_done[p]
    done[0] = rows0
    yi, c = store.axes.index("Y"), store.chunk
    lead = _plane_units(plan, p)
    for level in range(1, store.levels):
        src_h, dst_h = store.arrays[level - 1].shape[yi], store.arrays[level].shape[yi]
        j, ready = done[level] // c, []
        while j * c < dst_h and min(src_h, 2 * (j + 1) * c) <= done[level - 1]:
            ready.append(j)
            j += 1
        if ready:
            store.write_level(level, [(idx, k) for idx in lead for k in ready])
            done[level] = min(dst_h, (ready[-1] + 1) * c)


def run_stream(predictor, plan: StreamPlan, cancel: Callable[[], bool] | None = None,
               progress: Callable[[int, int], None] | None = None, name: str = "image",
               metadata: dict | None = None) -> ZarrImageStore:
    """Predict every plane of ``plan`` into its store (created already: ``plan.store.create()``),
    then write the store's metadata. ``progress(done, total)`` counts chunk rows of level 0 as
    they are written (and their pyramid rows with them); ``cancel()`` is asked between tiles
    (true: :class:`InterruptedError`, the store left as it is)."""
    store = plan.store
    h_out = store.shape[store.axes.index("Y")]
    per_plane = -(-h_out // store.chunk)
    total = plan.total
    for p in range(len(plan.planes)):
        index = {a: int(i) for a, i in zip(plan.layout.lead_axes,
                                           np.unravel_index(p, plan.layout.lead_shape))} if plan.layout.lead_axes else {}
        sink = store.sink(plan.out_axes, index, (0, h_out))
        plane_name = name if len(plan.planes) == 1 else f"{name} (plane {p + 1})"

        def on_tile(_done, _total, p=p, sink=sink):
            if sink.buf_start > plan.rows_done[p][0]:
                _advance_pyramid(plan, p, sink.buf_start)
                if progress is not None:
                    progress(p * per_plane + math.ceil(sink.buf_start / store.chunk), total)

        predictor.predict_plane(plan.planes[p], plan.tile, plan.overlap, cancel=cancel, on_tile=on_tile, out=sink,
                                rows=(0, h_out), check_input=_nan_check(plane_name))
        sink.close()
        _advance_pyramid(plan, p, h_out)
        if progress is not None:
            progress((p + 1) * per_plane, total)
    store.write_metadata({"source": name})
    return store


def _nan_check(name: str) -> Callable[[np.ndarray], None]:
    def check(raw: np.ndarray) -> None:
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            raise NapariGanError(f"{name} contains NaN or infinite values; fix or crop them first.")
    return check
