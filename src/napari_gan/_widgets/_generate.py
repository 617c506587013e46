"""The "Generate Data" dock widget: apply a trained model and get a new layer.

Choosing a model file reads only its header; its family (from the registry) says what the
model does: families with apply mode "image" restore or translate an input layer (2D,
Z/T stack or several channels; tiled, so large images fit in memory), those with mode
"noise" generate a stack of new images from a seed. The weights are read, and everything
heavy done, in a napari thread worker with progress and Cancel; the result becomes a new
layer placed on top of the input (scale and translate account for super-resolution) and
can be saved as TIFF.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from magicgui.widgets import (
    CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox,
)
from qtpy.QtWidgets import QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from ._common import (
    InputError, contrast_limits, device_choices, image_layer_data, layer_choices, notify_error,
    notify_info, notify_warning, upscaled_placement, user_message,
)
from ._fields import align_labels
from ._workers import Failure, ProgressRelay, start_job

if TYPE_CHECKING:
    import napari

    from ..core.checkpoint import Header
    from ..core.families import Family

TIFF_SUFFIXES = (".tif", ".tiff")
BUTTON_TEXT = {"image": "Predict", "noise": "Generate", None: "Generate"}


@dataclass
class GenerationPlan:
    """A checked request: the job to run and how to present its result."""

    job: Callable
    args: tuple
    layer_name: str
    layer_kwargs: dict = field(default_factory=dict)
    save_path: Path | None = None
    description: str = ""
    total: int = 0


@dataclass
class Outcome:
    """What a job returns: the result, its display range and its channel axis (if split)."""

    data: np.ndarray
    contrast: Any
    channel_axis: int | None = None


@dataclass
class Notice:
    """A warning a job sends to the user on its way."""

    message: str


def describe_model(family: "Family", header: "Header") -> str:
    """One line about a model file, from its header."""
    text = family.describe(header)
    if header.role != "model":
        text += f" ({header.role.replace('_', ' ')} file)"
    if header.step is not None:
        text += f", trained {header.step} steps"
    metrics = {k: v for k, v in header.metrics.items() if isinstance(v, (int, float))}
    if metrics:
        text += ", " + ", ".join(f"{k} {v:.3g}" for k, v in metrics.items())
    return text


def safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._ -]+", "_", name).strip() or "result"


class GenerateWidget(QWidget):
    """Dock widget: choose a model, then restore a layer or generate images, as its family does."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self._pbar = None
        self._plan: GenerationPlan | None = None
        self._cancel = threading.Event()
        self._running = False
        self.family: "Family | None" = None     # of the chosen model file
        self.header: "Header | None" = None
        self.last_layer = None
        self.last_saved: Path | None = None

        self.model_path = FileEdit(label="Model", mode="r", filter="napari-gan model (*.safetensors)",
                                   tooltip="A model.safetensors file, or a training run folder")
        self.model_info = Label(value="Choose a model file or a run folder.")
        self.input_layer = ComboBox(label="Input", choices=lambda _w: layer_choices(self.viewer), nullable=True,
                                    tooltip="2D image, Z/T stack, or an image with a channel axis")
        self.channel_axis = SpinBox(label="Channel axis", value=-1, min=-1, max=10,
                                    tooltip="Axis holding the channels for multi-channel models; -1 = find it")
        self.tile = SpinBox(label="Tile size", value=0, min=0, max=8192, step=64,
                            tooltip="Large images are predicted in tiles; 0 = automatic (256 CPU, 512 GPU)")
        self.overlap = SpinBox(label="Tile overlap", value=48, min=0, max=512, step=8)
        self.n_images = SpinBox(label="Number of images", value=16, min=1, max=100_000)
        self.seed = SpinBox(label="Seed", value=0, min=0, max=2**31 - 1)
        self.truncation = FloatSpinBox(label="Truncation", value=1.0, min=0.0, max=2.0, step=0.05,
                                       tooltip="Below 1: more typical, less varied images")
        self.device = ComboBox(label="Device", choices=device_choices(), value="auto")
        self.save = CheckBox(text="Save result as TIFF", value=False)
        self.save_path = FileEdit(label="Save to", mode="w", filter="TIFF (*.tif *.tiff)", visible=False,
                                  tooltip="A .tif file, or a folder (the file is named after the new layer)")
        self.image_box = Container(widgets=[self.input_layer, self.channel_axis, self.tile, self.overlap])
        self.noise_box = Container(widgets=[self.n_images, self.seed, self.truncation], visible=False)
        sections = [Container(widgets=[self.model_path, self.model_info]), self.image_box, self.noise_box,
                    Container(widgets=[self.device]), self.save, Container(widgets=[self.save_path])]
        self.form = Container(labels=False, widgets=sections)
        labelled = [c for c in sections if isinstance(c, Container)]
        for c in labelled:
            c.margins = (0, 0, 0, 0)
        align_labels(*labelled)
        self.run_button = PushButton(text="Generate")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        self.status = Label(value="")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.relay = ProgressRelay()

        layout = QVBoxLayout(self)
        for w in (self.form.native, self.buttons.native, self.progress_bar, self.status.native):
            layout.addWidget(w)
        layout.addStretch(1)
        for label in (self.model_info, self.status):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        self.model_path.changed.connect(self._detect)
        self.save.changed.connect(lambda v: setattr(self.save_path, "visible", bool(v)))
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.relay.progressed.connect(self._on_progress)
        self.destroyed.connect(lambda *_args, cancel=self._cancel: cancel.set())   # widget closed: stop work
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self.reset_choices)
        self._show_sections(None, None)

    # ------------------------------------------------------------------ choices
    def reset_choices(self, *_args) -> None:
        self.form.reset_choices()

    def _path(self) -> Path:
        value = str(self.model_path.value).strip()
        if value in ("", "."):
            raise InputError("No model chosen; choose a model file (model.safetensors) or a training run folder.")
        return Path(value).expanduser()

    def _read_model(self) -> tuple["Header", "Family"]:
        """The header of the chosen model file (never its weights) and its family."""
        from ..core import checkpoint, families

        header = checkpoint.read_header(checkpoint.resolve_model_path(self._path()))
        return header, families.for_header(header)

    def _detect(self, *_args) -> "Family | None":
        """Read the chosen file's header and show the settings its family needs."""
        try:
            header, family = self._read_model()
        except Exception as exc:  # noqa: BLE001 - shown in the info line; Generate notifies
            self.model_info.value = user_message(exc)
            self._show_sections(None, None)
            return None
        self._show_sections(header, family)
        return family

    def _show_sections(self, header: "Header | None", family: "Family | None") -> None:
        from ..core.families import stored_config

        self.header, self.family = header, family
        if family is not None:
            self.model_info.value = describe_model(family, header)
        mode = family.apply_mode if family is not None else None
        self.image_box.visible = mode != "noise"
        self.noise_box.visible = mode == "noise"
        self.channel_axis.visible = header is not None and _in_channels(stored_config(header)) > 1
        self.run_button.text = BUTTON_TEXT[mode]

    # ------------------------------------------------------------------ actions
    @property
    def running(self) -> bool:
        return self._running

    def run(self, *_args) -> bool:
        """Check the inputs (cheaply), then start the prediction or generation; False on bad input."""
        if self._running:
            notify_warning("A prediction is already running; cancel it or wait for it to finish.")
            return False
        try:
            plan = self._make_plan()
        except Exception as exc:  # noqa: BLE001 - every problem becomes a notification
            notify_error(user_message(exc, "Cannot generate"))
            return False
        self._plan = plan
        self._cancel.clear()
        self._running = True
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = plan.description
        self._open_progress(plan.total)
        self._worker = start_job(plan.job, *plan.args, on_yield=self._on_message, on_finish=self._on_finish)
        return True

    def cancel(self, *_args) -> None:
        if self._running:
            self._cancel.set()
            self.cancel_button.enabled = False
            self.status.value = "Cancelling ..."

    # ------------------------------------------------------------------ planning
    def _make_plan(self) -> GenerationPlan:
        from ..core import checkpoint

        header, family = self._read_model()     # again: the file may have changed since it was chosen
        self._show_sections(header, family)
        if header.role != "model":
            raise InputError(f"'{header.path}' is a {header.role.replace('_', ' ')} file, not a model; choose "
                             f"{checkpoint.MODEL_FILENAME} (or the run folder).")
        if family.apply_mode == "image":
            return self._plan_image(header, family)
        return self._plan_noise(header, family)

    def _save_target(self, layer_name: str) -> Path | None:
        from ..core.io import check_writable

        if not self.save.value:
            return None
        value = str(self.save_path.value).strip()
        if value in ("", "."):
            raise InputError("'Save result as TIFF' is ticked but no file or folder is given in 'Save to'.")
        target = Path(value).expanduser()
        if target.suffix.lower() not in TIFF_SUFFIXES:
            if target.suffix:
                raise InputError(f"'{target.name}' is not a TIFF name; use .tif, or give a folder.")
            target = target / f"{safe_filename(layer_name)}.tif"
        return check_writable(target)

    def _plan_image(self, header: "Header", family: "Family") -> GenerationPlan:
        from ..core.families import stored_config

        stored = stored_config(header)
        channels = _in_channels(stored)
        layer = self.input_layer.value
        image = image_layer_data(layer, "input", grayscale=channels == 1)
        channel_axis = None if self.channel_axis.value < 0 or channels == 1 else int(self.channel_axis.value)
        factor = family.output_scale(family.config_from_header(header))
        what = f"x{factor}" if factor > 1 else "denoised" if stored.get("task") == "denoise" else family.name
        name = f"{layer.name} {what}"
        scale, translate = upscaled_placement(layer, factor)
        kwargs: dict[str, Any] = {"metadata": {"napari_gan_model": str(header.path)}}
        if len(scale) == len(image.shape):
            kwargs.update(scale=scale, translate=translate)
        kwargs["colormap"] = layer.colormap.name if not layer.rgb else "gray"
        tile = int(self.tile.value) or None
        save_path = self._save_target(name)
        planes = math.prod(image.shape[:-2]) // channels
        return GenerationPlan(
            job=_predict_job,
            args=(family, header, self.device.value, image, channel_axis, tile, int(self.overlap.value),
                  self._cancel.is_set, self.relay, save_path, f"'{layer.name}'"),
            layer_name=name, layer_kwargs=kwargs, save_path=save_path, total=max(1, planes),
            description=f"Loading {family.title} and predicting '{layer.name}' ...")

    def _plan_noise(self, header: "Header", family: "Family") -> GenerationPlan:
        n, seed, psi = int(self.n_images.value), int(self.seed.value), float(self.truncation.value)
        name = f"{header.path.parent.name or family.name} generated (seed {seed})"
        kwargs: dict[str, Any] = {"metadata": {"napari_gan_model": str(header.path), "seed": seed,
                                               "truncation": psi}, "colormap": "gray"}
        save_path = self._save_target(name)
        return GenerationPlan(
            job=_generate_job,
            args=(family, header, self.device.value, n, seed, psi, self._cancel.is_set, self.relay, save_path),
            layer_name=name, layer_kwargs=kwargs, save_path=save_path, total=n,
            description=f"Loading {family.title} and generating {n} image(s) ...")

    # ------------------------------------------------------------------ progress
    def _open_progress(self, total: int) -> None:
        from napari.utils import progress

        total = total if total > 1 else 0     # one plane: an indeterminate (busy) bar
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(0)
        self._pbar = progress(total=total, desc="napari-gan: generating")

    def _close_progress(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.progress_bar.setRange(0, 1)

    def _on_progress(self, done: int, total: int) -> None:
        if total > 1:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)
            pbar = self._pbar
            if pbar is not None:
                if pbar.total != total:
                    pbar.total = total
                if done > pbar.n:
                    pbar.update(done - pbar.n)
        self.status.value = f"{done}/{total} done"

    def _on_message(self, message) -> None:
        if isinstance(message, Notice):
            notify_warning(message.message)
        elif isinstance(message, str):
            self.status.value = message

    def _on_finish(self, result) -> None:
        self._close_progress()
        self._running = False
        self._worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        plan = self._plan
        if isinstance(result, Failure):
            if isinstance(result.error, InterruptedError):
                self.status.value = "Cancelled; no layer was added."
                notify_info("Generation cancelled; no layer was added.")
            else:
                message = user_message(result.error, "Generation failed")
                self.status.value = message
                notify_error(message)
            self.progress_bar.setValue(0)
            return
        kwargs = dict(plan.layer_kwargs, contrast_limits=result.contrast)
        if result.channel_axis is not None:
            kwargs["channel_axis"] = result.channel_axis
        added = self.viewer.add_image(result.data, name=plan.layer_name, **kwargs)
        self.last_layer = added[0] if isinstance(added, list) else added
        self.progress_bar.setValue(1)
        message = f"Added layer '{self.last_layer.name}' {tuple(result.data.shape)}"
        if plan.save_path is not None:
            self.last_saved = plan.save_path
            message += f"; saved to '{plan.save_path}'"
            notify_info(f"Saved '{self.last_layer.name}' to '{plan.save_path}'.")
        self.status.value = message + "."


def _in_channels(stored: dict) -> int:
    try:
        return max(1, int(stored.get("in_channels", 1)))
    except (TypeError, ValueError):
        return 1


def _looks_constant(image) -> float | None:
    """The value of an image whose every (subsampled) pixel is the same, else None."""
    step_y, step_x = (max(1, n // 256) for n in image.shape[-2:])
    sample = np.asarray(image[..., ::step_y, ::step_x])
    if sample.size == 0 or (sample.dtype.kind == "f" and not np.isfinite(sample).all()):
        return None
    lo, hi = float(sample.min()), float(sample.max())
    return lo if lo == hi else None


# ------------------------------------------------------------------------ the workers
def _predict_job(family, header, device, image, channel_axis, tile, overlap, cancel, relay, save_path, name):
    """Worker: load the model, tiled prediction, then (optionally) the TIFF file."""
    from ..core.io import write_tiff

    predictor = family.load_applier(header, device)
    constant = _looks_constant(image)
    if constant is not None:
        yield Notice(f"{name} looks constant (every pixel is {constant:g}); the result will carry no information.")
    yield f"Predicting on {predictor.device_name} ..."
    result = predictor.predict(image, channel_axis, tile, overlap, cancel=cancel,
                               progress=relay.progressed.emit, name=name)
    if save_path is not None:
        yield f"Writing '{save_path}' ..."
        write_tiff(save_path, result)
    return Outcome(result, contrast_limits(result))


def _generate_job(family, header, device, n, seed, truncation, cancel, relay, save_path):
    """Worker: load the model, images in batches (progress, Cancel between batches), then the TIFF."""
    from ..core.io import write_tiff

    generator = family.load_applier(header, device)
    latents = generator.latents(n, seed)
    yield (f"Generating {n} image(s) of {generator.resolution}x{generator.resolution} "
           f"on {generator.device_name} ...")
    chunks, step = [], max(1, generator.batch)
    for start in range(0, n, step):
        if cancel():
            raise InterruptedError("generation cancelled")
        chunks.append(generator.generate_from_latents(latents[start:start + step], truncation))
        relay.progressed.emit(min(start + step, n), n)
    images = np.concatenate(chunks)
    if save_path is not None:
        yield f"Writing '{save_path}' ..."
        write_tiff(save_path, images)
    if generator.channels > 1:
        return Outcome(images, [contrast_limits(c) for c in np.moveaxis(images, 1, 0)], channel_axis=1)
    return Outcome(images, contrast_limits(images))
