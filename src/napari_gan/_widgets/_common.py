"""Helpers the dock widgets share: layer choices and checks, devices, messages.

Nothing here imports torch at module level; ``napari_gan.core`` is imported inside the
functions that need it, so napari starts fast.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import napari

log = logging.getLogger("napari_gan")

PREVIEW_SUFFIX = " preview"


class InputError(Exception):
    """A widget-level problem with the user's choices (shown like a NapariGanError)."""


# ------------------------------------------------------------------------ messages
def user_message(exc: BaseException, context: str = "") -> str:
    """A clear sentence for the user; unexpected errors are logged with their traceback."""
    from ..core.errors import NapariGanError

    prefix = f"{context}: " if context else ""
    if isinstance(exc, (NapariGanError, InputError)):
        return prefix + str(exc)
    if _is_out_of_memory(exc):
        return (prefix + "the device ran out of memory. Lower the batch or patch size (training) "
                "or the tile size (prediction), or choose the CPU device.")
    if isinstance(exc, MemoryError):
        return prefix + "the computer ran out of memory; use a smaller image or crop it first."
    log.error("napari-gan: unexpected error", exc_info=(type(exc), exc, exc.__traceback__))
    return f"{prefix}unexpected error ({type(exc).__name__}: {exc}). Your layers are unchanged."


def _is_out_of_memory(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def report_failure(status, error: BaseException, what: str, outcome: str) -> None:
    """A job that ended without a result, on the ``status`` line and in one notification:
    cancelled ("<what> cancelled; <outcome>.", information) or failed (an error)."""
    if isinstance(error, InterruptedError):
        status.value = f"Cancelled; {outcome}."
        notify_info(f"{what} cancelled; {outcome}.")
    else:
        status.value = user_message(error, f"{what} failed")
        notify_error(status.value)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


# -------------------------------------------------------------------------- layers
def data_layers(viewer: "napari.Viewer") -> list:
    """Image and Labels layers (labels are listed so that choosing one gets a clear message)."""
    from napari.layers import Image, Labels

    return [layer for layer in viewer.layers if isinstance(layer, (Image, Labels))]


def layer_choices(viewer: "napari.Viewer", exclude_previews: bool = True,
                  labels_first: bool = False) -> list[tuple[str, object]]:
    """(name, layer) of the Image and Labels layers; ``labels_first``: for an input that takes
    label images, Labels layers come first."""
    layers = data_layers(viewer)
    if exclude_previews:
        layers = [lay for lay in layers if not lay.metadata.get("napari_gan_preview")]
    if labels_first:
        layers = sorted(layers, key=lambda layer: not is_labels_layer(layer))   # stable: the order is kept
    return [(layer.name, layer) for layer in layers]


def refresh_choices(combo) -> None:
    """Reset a layer picker's choices *in their new order* (magicgui keeps the items it has
    where they are and appends new ones), keeping its value when it is still offered."""
    value = combo.value
    with combo.changed.blocked():       # the same value again is no change for listeners
        combo.native.clear()
        combo.reset_choices()
        if value is not None and any(value is choice for choice in combo.choices):
            combo.value = value
    if combo.value is not value:
        combo.changed.emit(combo.value)


def is_labels_layer(layer) -> bool:
    from napari.layers import Labels

    return isinstance(layer, Labels)


def image_layer_data(layer, role: str, grayscale: bool = True, labels: bool = False):
    """The pixels of an image layer after the cheap checks every widget needs: the layer's
    own array (level 0 of a multiscale layer), never converted here, so that dask or zarr
    data are only read in the worker. ``labels``: the role takes label images (integer ids):
    a Labels layer or an integer image layer, never a float image."""
    from napari.layers import Image, Labels

    if layer is None:
        what = "labels" if labels else role
        raise InputError(f"No {what} layer chosen; open an image (or a sample from File > Open Sample) "
                         "and pick it in the widget.")
    if isinstance(layer, Labels) and not labels:
        raise InputError(f"'{layer.name}' is a labels layer; the {role} must be an image layer.")
    if not isinstance(layer, (Image, Labels)):
        raise InputError(f"'{layer.name}' is not an image layer.")
    if labels and isinstance(layer, Image):
        _check_label_image_layer(layer, role)
    if grayscale and getattr(layer, "rgb", False):
        raise InputError(f"'{layer.name}' is an RGB image but a grayscale image is expected for the "
                         f"{role}; split the colour channels (right-click the layer > Split RGB).")
    data = layer.data[0] if layer.multiscale else layer.data
    if 0 in tuple(data.shape):
        raise InputError(f"'{layer.name}' is empty (shape {tuple(data.shape)}).")
    return data


def _check_label_image_layer(layer, role: str) -> None:
    """An image layer given where label images are expected must hold integer ids."""
    dtype = np.dtype((layer.data[0] if layer.multiscale else layer.data).dtype)
    if layer.rgb or dtype.kind not in "uib":
        kind = "an RGB image" if layer.rgb else f"a {dtype} image"
        raise InputError(f"'{layer.name}' is {kind}, but the {role} must be a label image (integer ids, "
                         "0 = background): choose a Labels layer, or convert this one (right-click the "
                         "layer > Convert to Labels) if its values are object ids.")


def spatial_scale(layer) -> tuple[np.ndarray, np.ndarray]:
    """(scale, translate) of a layer as float arrays."""
    return np.array(layer.scale, float), np.array(layer.translate, float)


def upscaled_placement(layer, factor: int, ndim: int | None = None) -> tuple[list[float], list[float]]:
    """Scale and translate of a result ``factor`` times finer in Y/X than ``layer``."""
    return placement(*spatial_scale(layer), factor, ndim)


def placement(scale, translate, factor: int, ndim: int | None = None) -> tuple[list[float], list[float]]:
    """Scale and translate of a result ``factor`` times finer in Y/X than a layer placed by
    ``scale`` and ``translate``.

    Output pixel centres are placed inside the input pixel they subdivide, so the result
    lies exactly on top of the input in world coordinates.
    """
    scale, translate = np.array(scale, float), np.array(translate, float)
    ndim = ndim or len(scale)
    scale, translate = scale[-ndim:].copy(), translate[-ndim:].copy()
    if factor != 1:
        translate[-2:] += (-0.5 + 0.5 / factor) * scale[-2:]
        scale[-2:] /= factor
    return list(scale), list(translate)


def placement_by_axes(scale, translate, axes: str, out_axes: str, factor: int,
                      units=None, axis_labels=None) -> dict:
    """Layer keywords (scale, translate and, where given, units and axis labels) placing a
    result whose axes are ``out_axes`` on top of a layer whose axes are ``axes``: each axis
    keeps the layer's values by its letter (an S axis, RGB samples, is no layer dimension), a
    C axis the layer does not have gets scale 1, and Y/X are ``factor`` times finer (see
    :func:`placement`)."""
    dims, out_dims = [a for a in axes if a != "S"], [a for a in out_axes if a != "S"]
    if len(scale) != len(dims):
        raise ValueError(f"{len(scale)} scale values for the axes {axes}")
    pick = {a: i for i, a in enumerate(dims)}
    out_scale = [float(scale[pick[a]]) if a in pick else 1.0 for a in out_dims]
    out_translate = [float(translate[pick[a]]) if a in pick else 0.0 for a in out_dims]
    out_scale, out_translate = placement(out_scale, out_translate, factor)
    kwargs: dict = {"scale": out_scale, "translate": out_translate}
    if all(a in pick for a in out_dims):
        if units is not None:
            kwargs["units"] = [units[pick[a]] for a in out_dims]
        if axis_labels is not None:
            kwargs["axis_labels"] = [axis_labels[pick[a]] for a in out_dims]
    return kwargs


CHANNEL_LABELS = ("c", "ch", "channel", "channels")


def labelled_channel_axis(layer) -> int | None:
    """The axis a layer's axis labels name as its channels ("c", "channel"), if exactly one."""
    labels = [str(label).strip().lower() for label in getattr(layer, "axis_labels", ())]
    found = [i for i, label in enumerate(labels) if label in CHANNEL_LABELS]
    return found[0] if len(found) == 1 else None


def physical_pixel_size(layer, axes: str, factor: int = 1) -> tuple[dict[str, float], str | None]:
    """Pixel size (Z, Y, X, in the unit of X; Y and X ``factor`` times finer) of a result
    on a layer whose axes are ``axes``, for saving; empty when the layer's units are pixels
    (napari's default)."""
    from ..core.axes import normalize_unit

    dims = [a for a in axes if a != "S"]
    units = [normalize_unit(str(u)) for u in (getattr(layer, "units", None) or ())]
    scale = list(layer.scale)
    if "X" not in dims or len(units) != len(dims) or len(scale) != len(dims):
        return {}, None
    unit = units[dims.index("X")]
    if unit is None:
        return {}, None
    sizes = {}
    for a in "ZYX":
        if a in dims and units[dims.index(a)] == unit:
            sizes[a] = float(scale[dims.index(a)]) / (factor if a in "YX" else 1)
    return sizes, unit


def contrast_limits(image: np.ndarray, percentiles=(0.5, 99.8)) -> tuple[float, float]:
    """Robust display range from a subsample of the image."""
    flat = np.asarray(image).reshape(-1)
    step = max(1, flat.size // 1_000_000)
    sample = flat[::step].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(sample, percentiles)
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


# -------------------------------------------------------------------------- devices
#: OpenGL renderers that draw in software: remote and virtual displays (X forwarding, VNC, Xvfb)
SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "swiftshader", "software rasterizer")
_renderer: dict = {}


def draws_in_software(viewer) -> bool:
    """Whether napari's canvas is drawn by a software OpenGL (asked once per process).

    With a canvas in the window, Qt recomposes the whole window through OpenGL whenever any
    widget repaints, so there napari's animated "in progress" indicator alone costs a sixth of
    a 2-core CPU for as long as a job runs (docs/benchmarks.md, section 2e)."""
    if "name" not in _renderer:
        try:
            from vispy.gloo import gl

            viewer.window._qt_viewer.canvas._scene_canvas.set_current()
            _renderer["name"] = str(gl.glGetParameter(gl.GL_RENDERER)).lower()
        except Exception:  # noqa: BLE001 - no canvas or no context: assume a GPU draws it
            return False
    return any(name in _renderer["name"] for name in SOFTWARE_GL)


def activity_progress(viewer, total: int, desc: str):
    """napari's progress bar for a job (listed in its activity dock, with an animated "in
    progress" indicator), or None where the canvas is drawn in software and that animation
    would take CPU from the job: the widget's own progress bar shows the job either way."""
    if draws_in_software(viewer):
        return None
    from napari.utils import progress

    return progress(total=total, desc=desc)


def import_training_modules() -> None:
    """Import what a first training run would otherwise import in its worker: torch's first
    optimiser imports torch._dynamo (about a second), which holds the GIL for up to 0.15 s
    at a time and so would freeze napari's canvas while the run starts. Called when the
    Train widget opens, which imports torch anyway."""
    import torch._dynamo  # noqa: F401


def device_choices() -> list[tuple[str, str]]:
    """(label, value) pairs: auto with what it resolves to, the CPU, and each GPU by name."""
    import torch

    from ..core.device import describe_device, resolve_device

    choices = [(f"auto: {describe_device(resolve_device('auto'))}", "auto"), ("CPU", "cpu")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            choices.append((f"GPU {i}: {torch.cuda.get_device_name(i)}", f"cuda:{i}"))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        choices.append(("GPU: Apple MPS", "mps"))
    return choices


# -------------------------------------------------------------------------- models
def read_model(value):
    """``(header, family)`` of the model file or run folder a FileEdit holds (only the
    header is read, never the weights)."""
    from pathlib import Path

    from ..core import checkpoint, families

    text = str(value).strip()
    if text in ("", "."):
        raise InputError("No model chosen; choose a model file (model.safetensors) or a training run folder.")
    header = checkpoint.read_header(checkpoint.resolve_model_path(Path(text).expanduser()))
    if header.role != "model":
        raise InputError(f"'{header.path}' is a {header.role.replace('_', ' ')} file, not a model; choose "
                         f"{checkpoint.MODEL_FILENAME} (or the run folder).")
    return header, families.for_header(header)
