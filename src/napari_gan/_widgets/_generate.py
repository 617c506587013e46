"""The "Generate Data" dock widget: apply a trained model and get a new layer.

The model's kind is read from its file. Pix2Pix models restore an input layer (2D, Z/T
stack or several channels; tiled, so large images fit in memory); StyleGAN2 models
generate a stack of new images from a seed. The work runs in a napari thread worker
with progress and Cancel; the result becomes a new layer placed on top of the input
(scale and translate account for x2/x4 super-resolution) and can be saved as TIFF.
"""

from __future__ import annotations

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
    InputError, contrast_limits, device_choices, layer_array, layer_choices, notify_error,
    notify_info, notify_warning, upscaled_placement, user_message,
)
from ._workers import Failure, ProgressRelay, start_job

if TYPE_CHECKING:
    import napari

TIFF_SUFFIXES = (".tif", ".tiff")


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


def describe_model(loaded) -> str:
    """One line about a model file, from its header."""
    cfg, header = loaded.config, loaded.header
    if loaded.kind == "pix2pix":
        what = ("denoising" if cfg.get("task") == "denoise" else f"super-resolution x{cfg.get('scale')}")
        text = f"Pix2Pix {what}, {cfg.get('in_channels', 1)} channel(s)"
    elif loaded.kind == "stylegan2":
        res = cfg.get("resolution")
        text = "StyleGAN2 generator" + (f", {res}x{res} pixels" if res else "")
    else:
        text = f"{loaded.kind} model"
    if loaded.role != "model":
        text += f" ({loaded.role} file)"
    if header.get("step") is not None:
        text += f", trained {header['step']} steps"
    metrics = header.get("metrics") or {}
    if metrics:
        text += ", " + ", ".join(f"{k} {v:.3g}" for k, v in metrics.items())
    return text


def safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._ -]+", "_", name).strip() or "result"


class GenerateWidget(QWidget):
    """Dock widget: choose a model, then restore a layer (Pix2Pix) or generate images (StyleGAN2)."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._worker = None
        self._pbar = None
        self._plan: GenerationPlan | None = None
        self._cancel = threading.Event()
        self._running = False
        self.model_kind: str | None = None
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
        self.pix2pix_box = Container(widgets=[self.input_layer, self.channel_axis, self.tile, self.overlap])
        self.stylegan2_box = Container(widgets=[self.n_images, self.seed, self.truncation], visible=False)
        self.form = Container(widgets=[self.model_path, self.model_info, self.pix2pix_box, self.stylegan2_box,
                                       self.device, self.save, self.save_path])
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
        self.model_info.native.setWordWrap(True)
        self.status.native.setWordWrap(True)
        self.status.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        self.model_path.changed.connect(self._detect)
        self.save.changed.connect(lambda v: setattr(self.save_path, "visible", bool(v)))
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.relay.progressed.connect(self._on_progress)
        self.destroyed.connect(lambda *_args, cancel=self._cancel: cancel.set())   # widget closed: stop work
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self.reset_choices)
        self._show_sections(None)

    # ------------------------------------------------------------------ choices
    def reset_choices(self, *_args) -> None:
        self.form.reset_choices()

    def _path(self) -> Path:
        value = str(self.model_path.value).strip()
        if value in ("", "."):
            raise InputError("No model chosen; choose a model file (model.safetensors) or a training run folder.")
        return Path(value).expanduser()

    def _detect(self, *_args) -> str | None:
        """Read the model's kind from its file and show the matching settings."""
        from ..core import checkpoint

        try:
            loaded = checkpoint.load(self._path())
        except Exception as exc:  # noqa: BLE001 - shown in the info line; Generate notifies
            self.model_kind = None
            self.model_info.value = user_message(exc)
            self._show_sections(None)
            return None
        self.model_kind = loaded.kind
        self.model_info.value = describe_model(loaded)
        self._show_sections(loaded)
        return loaded.kind

    def _show_sections(self, loaded) -> None:
        kind = loaded.kind if loaded is not None else None
        self.pix2pix_box.visible = kind != "stylegan2"
        self.stylegan2_box.visible = kind == "stylegan2"
        multi = loaded is not None and int(loaded.config.get("in_channels", 1)) > 1
        self.channel_axis.visible = multi
        self.run_button.text = "Generate" if kind == "stylegan2" else "Predict" if kind == "pix2pix" else "Generate"

    # ------------------------------------------------------------------ actions
    @property
    def running(self) -> bool:
        return self._running

    def run(self, *_args) -> bool:
        """Check the inputs, then start the prediction or generation; False on bad input."""
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
        self._worker = start_job(plan.job, *plan.args, on_yield=self._on_status, on_finish=self._on_finish)
        return True

    def cancel(self, *_args) -> None:
        if self._running:
            self._cancel.set()
            self.cancel_button.enabled = False
            self.status.value = "Cancelling ..."

    # ------------------------------------------------------------------ planning
    def _make_plan(self) -> GenerationPlan:
        from ..core import checkpoint

        path = self._path()
        loaded = checkpoint.load(path)
        self.model_kind = loaded.kind
        self.model_info.value = describe_model(loaded)
        self._show_sections(loaded)
        if loaded.role != "model":
            raise InputError(f"'{loaded.path}' is a {loaded.role} file, not a model; choose "
                             f"{checkpoint.MODEL_FILENAME} (or the run folder).")
        if loaded.kind == "pix2pix":
            return self._plan_pix2pix(path)
        if loaded.kind == "stylegan2":
            return self._plan_stylegan2(path)
        raise InputError(f"'{loaded.path}' holds a '{loaded.kind}' model, which this version cannot use.")

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

    def _plan_pix2pix(self, path: Path) -> GenerationPlan:
        from ..core.data import to_planes
        from ..core.inference import load_predictor

        layer = self.input_layer.value
        if layer is None:
            layer_array(None, "input")
        predictor = load_predictor(path, self.device.value)
        image = layer_array(layer, "input", grayscale=predictor.in_channels == 1)
        channel_axis = None if self.channel_axis.value < 0 or predictor.in_channels == 1 else int(self.channel_axis.value)
        planes, _ = to_planes(image, predictor.in_channels, channel_axis, f"'{layer.name}'")
        sample = np.asarray(planes[0, :, ::max(1, planes.shape[-2] // 256), ::max(1, planes.shape[-1] // 256)])
        if sample.dtype.kind == "f" and not np.isfinite(sample).all():
            raise InputError(f"'{layer.name}' contains NaN or infinite values; fix or crop them first.")
        if sample.size and float(sample.max()) == float(sample.min()):
            notify_warning(f"'{layer.name}' looks constant (every pixel is {float(sample.min()):g}); "
                           "the result will carry no information.")
        what = "denoised" if predictor.scale == 1 else f"x{predictor.scale}"
        name = f"{layer.name} {what}"
        scale, translate = upscaled_placement(layer, predictor.scale)
        kwargs: dict[str, Any] = {"metadata": {"napari_gan_model": str(predictor.path)}}
        if len(scale) == image.ndim:
            kwargs.update(scale=scale, translate=translate)
        kwargs["colormap"] = layer.colormap.name if not layer.rgb else "gray"
        tile = int(self.tile.value) or None
        save_path = self._save_target(name)
        return GenerationPlan(
            job=_predict_job,
            args=(predictor, image, channel_axis, tile, int(self.overlap.value), self._cancel.is_set,
                  self.relay, save_path, f"'{layer.name}'"),
            layer_name=name, layer_kwargs=kwargs, save_path=save_path, total=len(planes),
            description=f"Predicting {len(planes)} plane(s) of '{layer.name}' on {predictor.device_name} ...")

    def _plan_stylegan2(self, path: Path) -> GenerationPlan:
        from ..core.generation import load_generator

        generator = load_generator(path, self.device.value)
        n, seed, psi = int(self.n_images.value), int(self.seed.value), float(self.truncation.value)
        latents = generator.latents(n, seed)
        run_name = generator.path.parent.name if generator.path is not None else "stylegan2"
        name = f"{run_name} generated (seed {seed})"
        kwargs: dict[str, Any] = {"metadata": {"napari_gan_model": str(generator.path), "seed": seed,
                                               "truncation": psi}, "colormap": "gray"}
        if generator.channels > 1:
            kwargs["channel_axis"] = 1
        save_path = self._save_target(name)
        return GenerationPlan(
            job=_generate_job, args=(generator, latents, psi, self._cancel.is_set, self.relay, save_path),
            layer_name=name, layer_kwargs=kwargs, save_path=save_path, total=n,
            description=(f"Generating {n} image(s) of {generator.resolution}x{generator.resolution} "
                         f"on {generator.device_name} ..."))

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
            if self._pbar is not None and done > self._pbar.n:
                self._pbar.update(done - self._pbar.n)
        self.status.value = f"{done}/{total} done"

    def _on_status(self, message) -> None:
        if isinstance(message, str):
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
        kwargs = dict(plan.layer_kwargs)
        if "channel_axis" not in kwargs:
            kwargs.setdefault("contrast_limits", contrast_limits(result))
        if "channel_axis" in kwargs:
            kwargs["contrast_limits"] = [contrast_limits(c) for c in np.moveaxis(result, kwargs["channel_axis"], 0)]
        added = self.viewer.add_image(result, name=plan.layer_name, **kwargs)
        self.last_layer = added[0] if isinstance(added, list) else added
        self.progress_bar.setValue(1)
        message = f"Added layer '{self.last_layer.name}' {tuple(result.shape)}"
        if plan.save_path is not None:
            self.last_saved = plan.save_path
            message += f"; saved to '{plan.save_path}'"
            notify_info(f"Saved '{self.last_layer.name}' to '{plan.save_path}'.")
        self.status.value = message + "."


def _predict_job(predictor, image, channel_axis, tile, overlap, cancel, relay, save_path, name):
    """Worker: tiled Pix2Pix prediction, then (optionally) the TIFF file."""
    from ..core.io import write_tiff

    yield f"Predicting on {predictor.device_name} ..."
    result = predictor.predict(image, channel_axis, tile, overlap, cancel=cancel,
                               progress=relay.progressed.emit, name=name)
    if save_path is not None:
        yield f"Writing '{save_path}' ..."
        write_tiff(save_path, result)
    return result



def _generate_job(generator, latents, truncation, cancel, relay, save_path):
    """Worker: StyleGAN2 images in batches (progress, Cancel between batches), then the TIFF."""
    from ..core.io import write_tiff

    yield f"Generating on {generator.device_name} ..."
    chunks, n, step = [], len(latents), max(1, generator.batch)
    for start in range(0, n, step):
        if cancel():
            raise InterruptedError("generation cancelled")
        chunks.append(generator.generate_from_latents(latents[start:start + step], truncation))
        relay.progressed.emit(min(start + step, n), n)
    images = np.concatenate(chunks)
    if save_path is not None:
        yield f"Writing '{save_path}' ..."
        write_tiff(save_path, images)
    return images
