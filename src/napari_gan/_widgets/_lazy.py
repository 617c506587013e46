"""Generate Data on lazy layers: the input is read tile by tile, the result fills an OME-Zarr.

Which layers: every layer whose pixels are not one numpy array in memory (dask, zarr or any
other array-like, and every multiscale layer: its level 0 is predicted). A numpy layer is in
memory already, and so is its result; it keeps the in-memory path. Label images (models of
images from label masks encode whole planes) also keep it.

What happens: the worker loads the model, creates the OME-Zarr store and sends
:class:`LazyStore` to the GUI thread, which adds the result layer at once (lazy views of the
store's levels, a multiscale layer when there is a pyramid) with the input's scale and
translate (Y and X finer for super-resolution) and the model's target range as contrast.
The worker then predicts (:func:`..core.streaming.run_stream`) and the layer is refreshed as
chunk rows land, at most every :data:`REFRESH_S` seconds.

Where the store lives: with a 'Save to' ending in .zarr / .ome.zarr, it is built beside it
(``.NAME.napari-gan-part``) and renamed into place when complete; otherwise in a temporary
folder that is deleted when the layer is removed from the viewer or napari quits. A TIFF
'Save to' is written from the store at the end. Cancel (or a failure) removes the layer and
its store: nothing half-written is left under the user's name, and no layer pretends to be
a result.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: seconds between two refreshes of a filling layer
REFRESH_S = 0.5
_TEMPORARY: set[Path] = set()


def is_lazy_layer(layer) -> bool:
    """Whether Generate Data predicts ``layer`` lazily (not a numpy array in memory)."""
    if layer is None:
        return False
    return bool(getattr(layer, "multiscale", False)) or not isinstance(layer.data, np.ndarray)


@dataclass
class LazyStore:
    """Sent by the worker once the store exists: what the result layer shows."""

    views: list                 # lazy views of the levels, in the result's axes order
    path: Path                  # where the store is being written
    contrast: tuple[float, float]
    axes: str | None
    temporary: bool


@dataclass
class LazyOutcome:
    """What the lazy job returns: the finished store and where the result was saved."""

    views: list
    path: Path
    contrast: tuple[float, float]
    saved: Path | None
    axes: str | None


def _temporary_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="napari-gan-"))
    _TEMPORARY.add(path)
    return path


def remove_temporary(path: Path) -> None:
    """Delete a temporary store folder napari-gan made (never anything else)."""
    path = Path(path)
    for folder in list(_TEMPORARY):
        if path == folder or folder in path.parents:
            shutil.rmtree(folder, ignore_errors=True)
            _TEMPORARY.discard(folder)


@atexit.register
def _remove_all_temporary() -> None:
    for folder in list(_TEMPORARY):
        shutil.rmtree(folder, ignore_errors=True)
    _TEMPORARY.clear()


def _target_range(predictor) -> tuple[float, float]:
    """The model's target range (its stored normalisation): the result's contrast until the
    whole result is known."""
    norm = predictor.target_norm
    lo, hi = float(norm.low[0]), float(norm.high[0])
    return (lo, hi) if hi > lo else (0.0, 1.0)


def lazy_predict_job(family, header, device, image, channel_axis, axes, values, cancel, relay, save, name):
    """Worker (the arguments of ``_generate._predict_job``): predict the lazy ``image`` into an
    OME-Zarr store shown while it fills; then the TIFF, if one is asked for."""
    from ..core.axes import AxesImage, write_image
    from ..core.streaming import plan_stream, run_stream, store_views
    from ..core.zarr_io import LazyArray, is_zarr_path, move_into_place, remove_store, temporary_path
    from ._common import contrast_limits
    from ._generate import _shared_names, _split_values

    if axes is None:
        from ..core.errors import NapariGanError

        raise NapariGanError(f"{name} has more axes than T, Z, C, Y and X can name; a lazy layer is predicted "
                             "with named axes (reduce or merge its extra axes).")
    common, own = _split_values(family, values, _shared_names(family))
    predictor = family.load_applier(header, device, amp=common.get("amp", True), **own)
    to_zarr = save is not None and is_zarr_path(save.path)
    temporary = not to_zarr
    path = temporary_path(save.path) if to_zarr else _temporary_dir() / "result.ome.zarr"
    lazy = AxesImage(image if isinstance(image, LazyArray) else LazyArray(image), axes, name=name)
    plan = plan_stream(predictor, lazy, path, tile=common.get("tile"), overlap=common.get("overlap"),
                       name=(save.path.name.split(".")[0] if to_zarr else name.strip("'")),
                       pixel_size=save.pixel_size if save is not None else None,
                       unit=save.unit if save is not None else None)
    try:
        if to_zarr and path.exists():
            remove_store(path)
        plan.store.create()
        yield LazyStore(store_views(plan.store, plan.out_axes), path, _target_range(predictor), plan.out_axes,
                        temporary)
        yield f"Predicting on {predictor.device_name}, tile {plan.tile} ..."
        run_stream(predictor, plan, cancel=cancel, progress=relay.progressed.emit, name=name)
        views = store_views(plan.store, plan.out_axes)
        contrast = contrast_limits(np.asarray(views[-1]))
        saved = None
        if to_zarr:
            move_into_place(path, save.path)
            path, saved = save.path, save.path
            plan.store.path = path
            views = store_views(plan.store.open(), plan.out_axes)
        elif save is not None:
            yield f"Writing '{save.path}' ..."
            write_image(save.path, AxesImage(views[0], plan.out_axes, save.pixel_size, save.unit))
            saved = save.path
    except BaseException:
        if temporary:
            remove_temporary(path)
        else:
            remove_store(path)
        raise
    return LazyOutcome(views, path, contrast, saved, plan.out_axes)


class LazyResults:
    """The GUI side: adds the filling layer, refreshes it, and settles it at the end."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.layers: list = []
        self.store: LazyStore | None = None
        self._last_refresh = 0.0
        viewer.layers.events.removed.connect(self._on_removed)

    def show(self, message: LazyStore, plan) -> None:
        """Add the result layer(s) over the store being filled."""
        self.store = message
        kwargs = dict(plan.layer_kwargs, contrast_limits=message.contrast)
        kwargs["metadata"] = dict(kwargs.get("metadata", {}), napari_gan_store=str(message.path),
                                  napari_gan_store_temporary=message.temporary)
        data = message.views if len(message.views) > 1 else message.views[0]
        if plan.place is not None:   # channels stay an axis of the one layer, as in the in-memory result
            from ._generate import Outcome

            kwargs.update(plan.place(Outcome(message.views[0], message.contrast, axes=message.axes)))
        added = self.viewer.add_image(data, name=plan.layer_name, multiscale=len(message.views) > 1, **kwargs)
        self.layers = added if isinstance(added, list) else [added]
        self._last_refresh = time.monotonic()

    def refresh(self, *_args, force: bool = False) -> None:
        """Show the rows written so far (rate-limited)."""
        now = time.monotonic()
        if not self.layers or (not force and now - self._last_refresh < REFRESH_S):
            return
        self._last_refresh = now
        for layer in self.layers:
            if layer in self.viewer.layers:
                layer.refresh()

    def finish(self, outcome: LazyOutcome) -> list:
        """The store is complete (and maybe renamed): point the layers at it, set the contrast."""
        for layer in self.layers:
            views = outcome.views
            layer.data = views if len(views) > 1 else views[0]
            layer.contrast_limits = outcome.contrast
            layer.metadata["napari_gan_store"] = str(outcome.path)
        layers, self.layers, self.store = self.layers, [], None
        return layers

    def discard(self) -> None:
        """A cancelled or failed run: its layers go (their store is removed by the worker)."""
        for layer in self.layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layers, self.store = [], None

    def _on_removed(self, event) -> None:
        layer = event.value
        metadata = getattr(layer, "metadata", {}) or {}
        if metadata.get("napari_gan_store_temporary") and layer not in self.layers:
            others = [other for other in self.viewer.layers
                      if other.metadata.get("napari_gan_store") == metadata.get("napari_gan_store")]
            if not others:
                remove_temporary(Path(metadata["napari_gan_store"]))


def finish_lazy(widget, result) -> None:
    """Generate Data's end of a lazy run: settle the layer, or remove it after Cancel/failure."""
    from ._common import notify_info, report_failure
    from ._workers import Failure

    results = widget.lazy
    if isinstance(result, Failure):
        results.discard()
        report_failure(widget.status, result.error, "Generation",
                       "the partial result was removed and nothing was saved")
        widget.progress_bar.setValue(0)
        return
    layers = results.finish(result)
    widget.last_layer = layers[0] if layers else None
    shape = tuple(result.views[0].shape)
    message = f"Added layer '{widget._plan.layer_name}' {shape}, stored in '{result.path}'"
    if result.saved is not None:
        widget.last_saved = result.saved
        message = f"Added layer '{widget._plan.layer_name}' {shape}; saved to '{result.saved}'"
        notify_info(f"Saved '{widget._plan.layer_name}' to '{result.saved}'.")
    widget.status.value = message + "."
