"""Live preview of the view: Generate Data's "Live" toggle (image-to-image models).

While it is on, the part of the selected input layer visible in the canvas is predicted and
shown in a preview layer on top (metadata ``napari_gan_preview``: never offered as an input),
placed exactly over that part: at the resolution level napari displays for a multiscale layer,
in the plane of the current Z/T step, in the input layer's colormap. A model with several
output channels gets one preview layer per channel (napari's channel colormaps, overlaid:
the whole visible part at once, whatever the channel slider shows). Camera moves (centre, zoom) and step changes restart it after a pause of
:data:`DEBOUNCE_MS` (one prediction per settled view, not one per mouse event); a running
prediction is cancelled between two tiles as soon as the view moves. Tiles run centre first
(:mod:`..core.regions`), and the partial result is pushed to the preview layers at most every
:data:`PUSH_S` seconds, so the centre appears first and the rest fills outward.

Live works in the 2D view: in the 3D view (a preview is one plane) it pauses, cancelling the
running prediction, hides its preview layers and says so once in the status line; back in 2D
it shows them again and predicts the view. Turning Live off shows them again too.

Everything heavy (reading the model, the per-image input range of the plane, reading tiles,
the network) runs in a napari thread worker; the GUI thread only measures the view and sets
the preview layers' data (and their placement only when it changed: each setter refreshes the
layer); ``benchmarks/live_preview.py --gui`` measures how long it waits. The model is loaded
once and kept while Live stays on with the same model file and settings. Turning Live off,
choosing another model or another input layer stops it; the preview layers stay (layers
napari-gan made; delete them, or turn Live on again: the same input layer's previews are
reused, or replaced when their channel count no longer fits).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEBOUNCE_MS = 150
#: seconds between two partial results sent to the preview layer
PUSH_S = 0.1
PREVIEW_NAME = "{} live preview"
#: pixels (at most) a new preview layer's contrast limits are measured on, on the GUI thread
CONTRAST_SAMPLE = 256 * 256
PAUSED_3D = "Live preview paused: it works in the 2D view (the preview is hidden until the view is back in 2D)."


@dataclass
class ViewRequest:
    """The visible part of a layer, measured on the GUI thread; the worker predicts it."""

    data: object                  # the displayed level's array (never read on the GUI thread)
    axes: str
    lead_index: dict              # the current step of each axis before Y/X (C excluded)
    region: object                # core.regions.Region in the level's pixels
    level: int
    scale: list                   # where the level's pixel (region.y0, region.x0) sits: Y, X
    translate: list
    name: str
    colormap: str = "gray"        # of a one-channel preview: the input layer's, as Generate Data's result


@dataclass
class PreviewUpdate:
    """A partial (or the full) result of a request, sent to the GUI thread."""

    request: ViewRequest
    data: np.ndarray              # (C_out, h*s, w*s), NaN where no tile has landed yet
    done: int
    total: int
    scale_factor: int


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _layer_level(layer) -> tuple[object, int, np.ndarray]:
    """(the array napari displays, its level, its downsampling per layer axis)."""
    if getattr(layer, "multiscale", False):
        level = int(layer.data_level)
        return layer.data[level], level, np.asarray(layer.downsample_factors[level], float)
    return layer.data, 0, np.ones(layer.ndim)


def view_request(viewer, layer, axes: str) -> ViewRequest | None:
    """The part of ``layer`` visible in the canvas (None when nothing of it is, or in a 3D view)."""
    from ..core.regions import region_within

    if viewer.dims.ndisplay != 2 or layer.ndim < 2:
        return None
    data, level, factors = _layer_level(layer)
    height, width = viewer.canvas.size
    zoom = float(camera(viewer).zoom)
    centre = np.asarray(camera(viewer).center, float)[-2:]
    half = np.array([height, width], float) / (2 * zoom)
    point = np.asarray(viewer.dims.point, float)
    corners = []
    for sign in (-1, 1):
        world = point.copy()
        world[list(viewer.dims.displayed)] = centre + sign * half
        corners.append(np.asarray(layer.world_to_data(world), float))
    yx = slice(layer.ndim - 2, layer.ndim)
    low, high = corners[0][yx] / factors[yx], corners[1][yx] / factors[yx]
    shape = tuple(int(n) for n in data.shape)
    y_axis = axes.index("Y")
    region = region_within(low, high, shape[y_axis:y_axis + 2])
    if region is None:
        return None
    here = np.asarray(layer.world_to_data(point), float)
    lead_index = {a: int(np.clip(round(here[i]), 0, shape[i] - 1)) for i, a in enumerate(axes[:y_axis]) if a != "C"}
    scale = np.asarray(layer.scale, float)[yx] * factors[yx]
    translate = np.asarray(layer.translate, float)[yx] + np.asarray(layer.scale, float)[yx] * factors[yx] * \
        np.array([region.y0, region.x0], float)
    from ._generate import result_colormap

    return ViewRequest(data, axes, lead_index, region, level, list(scale), list(translate), layer.name,
                       result_colormap(layer))


def _source(layer) -> str | None:
    """The name of the input layer a preview layer shows."""
    return layer.metadata.get("napari_gan_source")


def _display_range(channel: np.ndarray) -> tuple[float, float]:
    """Contrast limits of a (partial) preview channel, from an even subsample of its pixels."""
    from ._common import contrast_limits

    step = max(1, math.ceil(math.sqrt(channel.size / CONTRAST_SAMPLE)))
    return contrast_limits(channel[::step, ::step])


def _finished(update: PreviewUpdate) -> str:
    """The status line once a view is predicted."""
    req, (channels, h, w) = update.request, update.data.shape
    return (f"Live preview: {w}x{h} pixels of '{req.name}'" + (f" (level {req.level})" if req.level else "")
            + (f", {channels} channels" if channels > 1 else "") + ".")


def _set_pixels(layer, data: np.ndarray, scale, translate) -> None:
    """New pixels for a preview layer. A partial result of the view it shows is copied into
    its array and the layer refreshed (napari recomputes nothing else); a new view's array
    replaces it, with the placement set only where it changed (each setter refreshes the
    layer and makes the viewer recompute its dimensions)."""
    own = layer.data
    same_array = (isinstance(own, np.ndarray) and own.flags.writeable and own.shape == data.shape
                  and own.dtype == data.dtype)
    if same_array and np.array_equal(layer.scale, scale) and np.array_equal(layer.translate, translate):
        np.copyto(own, data)
        layer.refresh()
        return
    if not np.array_equal(layer.scale, scale):
        layer.scale = scale
    if not np.array_equal(layer.translate, translate):
        layer.translate = translate
    layer.data = np.array(data)            # the layer's own copy, written into by later updates


class LivePreview:
    """The Live toggle of a Generate Data widget: follows the view, runs one preview at a time."""

    def __init__(self, widget):
        from magicgui.widgets import CheckBox
        from qtpy.QtCore import QTimer

        self.widget, self.viewer = widget, widget.viewer
        self.toggle = CheckBox(text="Live preview of the view", value=False, visible=False,
                               tooltip="Restore the part of the input layer visible in the canvas, centre first, "
                                       "as you pan and zoom (a preview layer on top; 2D view)")
        self.timer = QTimer()
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self._start)
        self._cancel = threading.Event()
        self._worker = None
        self._busy = False
        self._pending = False
        self._connected = False
        self._model = None            # (key, predictor), loaded in the worker, kept while Live is on
        self._norms: dict = {}
        self.layers: list = []         # the preview layers, one per output channel
        self._hidden: list = []        # preview layers hidden while the view is 3D
        self.last_update: PreviewUpdate | None = None
        self.started = 0               # predictions started (for tests and the status line)
        self.toggle.changed.connect(self._on_toggle)
        widget.model_path.changed.connect(self._on_model_changed)
        self._layer = widget.input_layer.value
        widget.input_layer.changed.connect(self._on_layer_changed)
        widget.destroyed.connect(lambda *_a: self._cancel.set())      # widget closed: stop work

    # ------------------------------------------------------------------ switching
    def _on_model_changed(self, *_args) -> None:
        family, header = self.widget.family, self.widget.header
        self.turn_off()
        self.toggle.visible = (family is not None and family.apply_mode == "image"
                               and not self.widget.takes_labels and header is not None)

    def _on_layer_changed(self, layer) -> None:
        """Another input layer stops Live (the choices being refreshed with the same layer does not)."""
        if layer is not self._layer:
            self._layer = layer
            self.turn_off()

    def turn_off(self) -> None:
        if self.toggle.value:
            self.toggle.value = False      # -> _on_toggle(False)

    def _view_events(self) -> list:
        """(event, handler) pairs Live follows while it is on."""
        moved, dims = camera(self.viewer).events, self.viewer.dims.events
        return [(moved.center, self.schedule), (moved.zoom, self.schedule),
                (dims.current_step, self.schedule), (dims.ndisplay, self._on_ndisplay)]

    def _on_toggle(self, on: bool) -> None:
        if on and not self._connected:
            for event, handler in self._view_events():
                event.connect(handler)
            self._connected = True
            self._on_ndisplay()
        elif not on:
            if self._connected:
                for event, handler in self._view_events():
                    event.disconnect(handler)
                self._connected = False
            self._stop_work()
            self._show_hidden()
            self._model = None
            self._norms.clear()

    @property
    def running(self) -> bool:
        return self._busy

    @property
    def in_2d(self) -> bool:
        return self.viewer.dims.ndisplay == 2

    def schedule(self, *_args) -> None:
        """The view moved: cancel the running preview and start a new one once the view rests."""
        if not self.toggle.value or not self.in_2d:
            return
        self._cancel.set()
        self.timer.start()

    def _stop_work(self) -> None:
        """No prediction to come: the debounce stops, the running one is cancelled."""
        self.timer.stop()
        self._cancel.set()
        self._pending = False

    def _on_ndisplay(self, *_args) -> None:
        """2D: the hidden previews come back and the view is predicted; 3D: Live pauses."""
        if self.in_2d:
            self._show_hidden()
            self.schedule()
            return
        self._stop_work()
        self._hidden += [layer for layer in self._present_layers() if layer.visible]
        for layer in self._hidden:
            layer.visible = False
        self.widget.status.value = PAUSED_3D

    def _show_hidden(self) -> None:
        for layer in self._hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden = []

    def _present_layers(self) -> list:
        """The preview layers still in the viewer."""
        return [layer for layer in self.layers if layer in self.viewer.layers]

    # ------------------------------------------------------------------ running
    def _request(self) -> ViewRequest | None:
        from ._common import InputError, image_layer_data
        from ..core.axes import guess_axes
        from ..core.families import stored_config
        from ._generate import _model_channels

        w = self.widget
        layer = w.input_layer.value
        channels = _model_channels(stored_config(w.header))
        data = image_layer_data(layer, "input", grayscale=channels == 1)
        channel_axis = w._resolve_channel_axis(layer, tuple(data.shape), channels)
        try:
            axes = guess_axes(tuple(data.shape), channels, channel_axis, f"'{layer.name}'")
        except Exception as exc:   # noqa: BLE001 - one message in the status line
            raise InputError(f"'{layer.name}': the live preview needs axes it can name ({exc}).") from exc
        return view_request(self.viewer, layer, axes)

    def _start(self) -> None:
        from ._common import user_message
        from ._workers import start_job

        if not self.toggle.value or not self.in_2d:
            return
        if self._busy:                     # the cancelled one ends first (between two tiles)
            self._pending = True
            return
        try:
            request = self._request()
            values = self.widget._checked_values(self.widget.family)
        except Exception as exc:   # noqa: BLE001 - shown in the status line
            self.widget.status.value = user_message(exc, "Live preview")
            return
        if request is None:
            return
        self._cancel = threading.Event()
        self._busy = True
        self.started += 1
        self.widget.status.value = "Live preview: predicting the view ..."
        self._worker = start_job(_live_job, self, request, self.widget.family, self.widget.header,
                                 self.widget.device.value, values, self._cancel.is_set,
                                 on_yield=self._show, on_finish=self._done)

    def _done(self, result) -> None:
        from ._common import user_message
        from ._workers import Failure

        self._busy, self._worker = False, None
        if isinstance(result, Failure) and not isinstance(result.error, InterruptedError):
            self.widget.status.value = user_message(result.error, "Live preview")
            self.toggle.value = False
            return
        if self._pending:
            self._pending = False
            self._start()

    def _show(self, update) -> None:
        """Put a (partial) result into the preview layers, placed over the region it restores."""
        from ._common import placement

        if not isinstance(update, PreviewUpdate) or not self.toggle.value or not self.in_2d:
            return
        self.last_update = update
        req = update.request
        scale, translate = placement(req.scale, req.translate, update.scale_factor)
        layers = self._present_layers()
        if len(layers) == len(update.data) and all(_source(layer) == req.name for layer in layers):
            for layer, channel in zip(layers, update.data):
                _set_pixels(layer, channel, scale, translate)
        else:
            self._add_layers(update, scale, translate)
        if update.done == update.total:
            self.widget.status.value = _finished(update)

    def _add_layers(self, update: PreviewUpdate, scale, translate) -> None:
        """New preview layers for the update: one per output channel (one channel: in the input
        layer's colormap); this input layer's previews that no longer fit go."""
        name = update.request.name
        for layer in self._present_layers():
            if _source(layer) == name:
                self.viewer.layers.remove(layer)
        contrast = [_display_range(channel) for channel in update.data]
        kwargs = {"name": PREVIEW_NAME.format(name), "scale": scale, "translate": translate,
                  "metadata": {"napari_gan_preview": True, "napari_gan_source": name}}
        data = np.array(update.data)       # the layers' own copy, written into by later updates
        if len(data) > 1:
            added = self.viewer.add_image(data, channel_axis=0, contrast_limits=contrast, **kwargs)
        else:
            added = self.viewer.add_image(data[0], colormap=update.request.colormap, contrast_limits=contrast[0],
                                          **kwargs)
        self.layers = added if isinstance(added, list) else [added]

    # ------------------------------------------------------------------ worker side
    def predictor(self, family, header, device, values):
        """The loaded model (worker thread): loaded once, kept while Live is on."""
        from ._generate import _shared_names, _split_values

        common, own = _split_values(family, values, _shared_names(family))
        path = Path(header.path)
        key = (str(path), path.stat().st_mtime if path.exists() else None, device,
               common.get("amp", True), tuple(sorted((k, repr(v)) for k, v in own.items())))
        if self._model is None or self._model[0] != key:
            self._model = (key, family.load_applier(header, device, amp=common.get("amp", True), **own))
            self._norms.clear()
        return self._model[1], common

    def plane_of(self, request: ViewRequest, predictor):
        """(the ``(C, H, W)`` plane the request shows, its input normaliser) (worker thread)."""
        from ..core.axes import AxesImage, to_planes
        from ..core.zarr_io import LazyArray

        data = request.data if isinstance(request.data, LazyArray) else LazyArray(request.data)
        planes, layout = to_planes(AxesImage(data, request.axes, name=request.name), predictor.in_channels)
        index = [request.lead_index[a] for a in layout.lead_axes]
        p = int(np.ravel_multi_index(index, layout.lead_shape)) if index else 0
        plane = planes[p]
        key = (id(request.data), request.level, p)
        if key not in self._norms:
            self._norms = {key: predictor.input_norm.for_plane(plane)}
        return plane, self._norms[key]


def _live_job(live: LivePreview, request: ViewRequest, family, header, device, values, cancel):
    """Worker: the view's region, centre first, partial results every PUSH_S seconds."""
    from ..core.regions import RegionPrediction

    predictor, common = live.predictor(family, header, device, values)
    if cancel():
        raise InterruptedError("preview cancelled")
    plane, norm = live.plane_of(request, predictor)
    job = RegionPrediction(predictor, plane, request.region, common.get("tile"), common.get("overlap"), norm)
    last = -math.inf
    while job.done < job.total:
        if cancel():
            raise InterruptedError("preview cancelled")
        job.step()
        now = time.monotonic()
        if job.done == job.total or now - last >= PUSH_S:
            last = now
            yield PreviewUpdate(request, job.partial(), job.done, job.total, predictor.scale)
