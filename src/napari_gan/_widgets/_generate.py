"""The "Generate Data" dock widget: apply a trained model and get a new layer.

Choosing a model file reads only its header; its family (from the registry) says what the
model does: families with apply mode "image" restore or translate an input layer (2D,
Z/T stack or several channels; tiled, so large images fit in memory), those with mode
"noise" generate a stack of new images from a seed. The weights are read, and everything
heavy done, in a napari thread worker with progress and Cancel; the result becomes a new
layer placed on top of the input (scale and translate account for super-resolution) and
can be saved as TIFF.

The settings of applying a model are the ones its family declares (``family.apply_settings``:
tile size and overlap, or number of images, seed and truncation, plus whatever a family adds,
such as CycleGAN's direction), built by :mod:`._fields` exactly as the command line builds its
options. The axes of the input layer are named (T, Z, C, Y, X) before anything is predicted, so
the result keeps the layer's axes order and each axis keeps its own scale and translate.

Lazy layers (dask, zarr, multiscale) are predicted tile by tile into an OME-Zarr store shown
while it fills (:mod:`._lazy`); the "Live" toggle restores the part of the layer in view as
the user pans and zooms (:mod:`._live`).
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton
from qtpy.QtWidgets import QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from ._common import (
    InputError, activity_progress, contrast_limits, device_choices, image_layer_data, labelled_channel_axis, layer_choices,
    notify_error, notify_info, notify_warning, physical_pixel_size, placement, placement_by_axes,
    refresh_choices, report_failure, spatial_scale, user_message,
)
from ._fields import SettingFields, align_labels
from ._lazy import LazyResults, LazyStore, finish_lazy, is_lazy_layer, lazy_predict_job
from ._live import LivePreview
from ._workers import Failure, ProgressRelay, start_job

if TYPE_CHECKING:
    import napari

    from ..core.checkpoint import Header
    from ..core.families import Family

TIFF_SUFFIXES = (".tif", ".tiff")
BUTTON_TEXT = {"image": "Predict", "noise": "Generate", None: "Generate"}
AUTO_AXIS = -1
MIXED_CLASSES = "mixed: image i of class i mod the number of classes"


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
    place: Callable[["Outcome"], dict] | None = None   # scale, translate, ... of the result layer


@dataclass
class Outcome:
    """What a job returns: the result, its display range, its channel axis (if split into
    one layer per channel) and its axes (T, Z, C, Y, X letters) where they are known."""

    data: np.ndarray
    contrast: Any
    channel_axis: int | None = None
    axes: str | None = None


@dataclass
class SaveTarget:
    """Where a result is written, with the physical pixel size of its Z/Y/X axes if known."""

    path: Path
    pixel_size: dict = field(default_factory=dict)
    unit: str | None = None


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
        self.input_layer = ComboBox(label="Input", nullable=True,
                                    choices=lambda _w: layer_choices(self.viewer, labels_first=self.takes_labels),
                                    tooltip="2D image, Z/T stack, or an image with a channel axis; a model of "
                                            "images from label images takes a Labels layer")
        self.class_names: list[str] = []      # of the chosen model (class-conditional models)
        self.class_name = ComboBox(label="Class", choices=self._class_choices, value=None,
                                   tooltip="Class-conditional models: the class of the generated images")
        self.class_box = Container(widgets=[self.class_name], visible=False)
        self.channel_axis = ComboBox(
            label="Channel axis", choices=self._channel_axis_choices, value=AUTO_AXIS,
            tooltip="The axis of the input layer that holds the channels of a multi-channel model; auto: the "
                    "axis labelled C, else the one axis whose length is the model's channel count")
        self.device = ComboBox(label="Device", choices=device_choices(), value="auto")
        self.show_advanced = CheckBox(text="Show advanced settings", value=False)
        self.save = CheckBox(text="Save result as TIFF", value=False)
        self.save_path = FileEdit(label="Save to", mode="w", filter="TIFF (*.tif *.tiff)", visible=False,
                                  tooltip="A .tif file, an .ome.zarr folder name, or a folder (the file is named after "
                                          "the new layer)")
        self.model_box = Container(widgets=[self.model_path, self.model_info])
        self.layer_box = Container(widgets=[self.input_layer, self.channel_axis])
        self.device_box = Container(widgets=[self.device])
        self.save_box = Container(widgets=[self.save_path])
        # the apply settings of each family's apply_settings class (added as families are met)
        self.image_box = Container(labels=False, widgets=[self.layer_box])
        self.noise_box = Container(labels=False, widgets=[], visible=False)
        self.advanced = Container(labels=False, widgets=[], visible=False)
        self.form = Container(labels=False, widgets=[self.model_box, self.image_box, self.noise_box, self.device_box,
                                                      self.show_advanced, self.advanced, self.save, self.save_box])
        for c in (self.model_box, self.layer_box, self.device_box, self.save_box, self.image_box,
                  self.noise_box, self.advanced, self.class_box):
            c.margins = (0, 0, 0, 0)
        self._fields: dict[type, SettingFields] = {}
        self._current: SettingFields | None = None
        from ..core.generation import GenerateSettings
        from ..core.inference import PredictSettings

        self._add_fields(PredictSettings, "image")
        self._add_fields(GenerateSettings, "noise")
        self.noise_box.append(self.class_box)

        self.run_button = PushButton(text="Generate")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        self.status = Label(value="")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.relay = ProgressRelay()
        from ._export import ExportPanel

        self.export_panel = ExportPanel(self._path)

        layout = QVBoxLayout(self)
        for w in (self.form.native, self.buttons.native, self.progress_bar, self.status.native,
                  self.export_panel.native):
            layout.addWidget(w)
        layout.addStretch(1)
        for label in (self.model_info, self.status):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        self.model_path.changed.connect(self._detect)
        self.input_layer.changed.connect(self._on_layer_changed)
        self.save.changed.connect(lambda v: setattr(self.save_path, "visible", bool(v)))
        self.show_advanced.changed.connect(lambda v: setattr(self.advanced, "visible", bool(v)))
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.relay.progressed.connect(self._on_progress)
        self.lazy = LazyResults(self.viewer)
        self.relay.progressed.connect(self.lazy.refresh)
        self.live = LivePreview(self)          # the "Live" toggle: follows the view (image models)
        self.image_box.insert(1, self.live.toggle)
        self.destroyed.connect(lambda *_args, cancel=self._cancel: cancel.set())   # widget closed: stop work
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self.reset_choices)
        self._show_sections(None, None)

    # ------------------------------------------------------------------ settings
    def _add_fields(self, cls: type, mode: str) -> SettingFields:
        fields = SettingFields(cls)
        for c in (fields.basic, fields.advanced):
            c.margins = (0, 0, 0, 0)
            c.visible = False
        (self.noise_box if mode == "noise" else self.image_box).append(fields.basic)
        self.advanced.append(fields.advanced)
        self._fields[cls] = fields
        align_labels(self.model_box, self.layer_box, *(f.basic for f in self._fields.values()), self.device_box,
                     *(f.advanced for f in self._fields.values()), self.save_box, self.class_box)
        return fields

    def fields_for(self, family: "Family") -> SettingFields:
        """The setting fields of applying a model of ``family`` (its ``apply_settings``)."""
        cls = family.apply_settings
        return self._fields[cls] if cls in self._fields else self._add_fields(cls, family.apply_mode)

    @property
    def settings(self) -> SettingFields:
        """The setting fields shown now (those of the chosen model's family)."""
        return self._current

    def field(self, name: str):
        """The widget of one of the shown apply settings, by its declared name."""
        return self._current.widget(name)

    def values(self) -> dict[str, Any]:
        """The shown apply settings (automatic ones None), with the class of a class-conditional model."""
        values = self._current.values()
        if self.class_names:
            values["class_name"] = self.class_name.value
        return values

    @property
    def takes_labels(self) -> bool:
        """Whether the chosen model makes images from label images (Pix2Pix task "labels")."""
        from ..core.families import stored_config

        return self.header is not None and stored_config(self.header).get("task") == "labels"

    def _class_choices(self, _widget=None) -> list[tuple[str, str | None]]:
        return [(MIXED_CLASSES, None)] + [(n, n) for n in self.class_names]

    def _show_classes(self, header: "Header | None") -> None:
        """The class picker of a class-conditional model: its stored class names, and a mix."""
        from ..core.families import stored_config

        names = [str(n) for n in (stored_config(header).get("class_names") or [])] if header is not None else []
        kept = self.class_name.value if self.class_name.value in names else None
        self.class_names = names
        self.class_name.reset_choices()
        self.class_name.value = kept
        self.class_box.visible = bool(names)

    @property
    def tile(self):
        return self._shared_field("tile")

    @property
    def overlap(self):
        return self._shared_field("overlap")

    def _shared_field(self, name: str):
        from ..core.inference import PredictSettings

        fields = self._current if name in self._current else self._fields[PredictSettings]
        return fields.widget(name)

    def _show_fields(self, fields: SettingFields) -> None:
        """Show ``fields`` (hiding the others); values the user set for settings they share
        with the fields shown before (tile size, overlap, ...) carry over."""
        previous = self._current
        if previous is not None and previous is not fields:
            fields.set_values({k: v for k, v in previous.values().items() if k in fields})
        self._current = fields
        for f in self._fields.values():
            f.basic.visible = f is fields
            f.advanced.visible = f is fields
        self.show_advanced.visible = len(fields.advanced) > 0

    # ------------------------------------------------------------------ choices
    def reset_choices(self, *_args) -> None:
        """New, removed or moved layers: the input's choices in their order (a labels model lists
        Labels layers first), then the other pickers."""
        refresh_choices(self.input_layer)
        self.form.reset_choices()

    def _channel_axis_choices(self, _widget=None) -> list[tuple[str, int]]:
        """auto, then each axis of the input layer before Y and X, with its length (and label)."""
        from napari.layers import Image

        choices = [("auto", AUTO_AXIS)]
        layer = self.input_layer.value if hasattr(self, "input_layer") else None
        if not isinstance(layer, Image):
            return choices
        shape = tuple((layer.data[0] if layer.multiscale else layer.data).shape)
        lead = len(shape) - (3 if layer.rgb else 2)
        labels = list(getattr(layer, "axis_labels", ()))
        for i in range(max(lead, 0)):
            text = f"axis {i} (length {shape[i]})"
            if len(labels) == len(shape) - layer.rgb and labels[i] != str(i - len(labels)):
                text = f"axis {i}: {labels[i]} (length {shape[i]})"
            choices.append((text, i))
        return choices

    def _on_layer_changed(self, layer) -> None:
        """A new input layer: its axes are the choices; an axis labelled C is the default."""
        self.channel_axis.reset_choices()
        labelled = labelled_channel_axis(layer) if layer is not None else None
        self.channel_axis.value = labelled if labelled in self.channel_axis.choices else AUTO_AXIS

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
        from ..core.inference import PredictSettings

        self.header, self.family = header, family
        if family is not None and header is not None:
            self.model_info.value = describe_model(family, header)
        mode = family.apply_mode if family is not None else None
        self.image_box.visible = mode != "noise"
        self.noise_box.visible = mode == "noise"
        self._show_fields(self.fields_for(family) if family is not None else self._fields[PredictSettings])
        self.export_panel.show_family(family)
        self._show_classes(header if mode == "noise" else None)
        refresh_choices(self.input_layer)       # a labels model lists Labels layers first
        self.channel_axis.visible = header is not None and _model_channels(stored_config(header)) > 1
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

    def _save_target(self, layer_name: str, header: "Header", layer=None) -> Path | None:
        """The checked file to save to: never the model, its run's files or the input layer's own
        file, and never a file napari-gan did not write (the same rules as the command line)."""
        from ..core import checkpoint
        from ..core.io import check_output
        from ..core.zarr_io import check_zarr_output, is_zarr_path

        if not self.save.value:
            return None
        value = str(self.save_path.value).strip()
        if value in ("", "."):
            raise InputError("'Save result as TIFF' is ticked but no file or folder is given in 'Save to'.")
        target = Path(value).expanduser()
        if target.suffix.lower() not in TIFF_SUFFIXES and not is_zarr_path(target):
            if target.suffix:
                raise InputError(f"'{target.name}' is not a TIFF name (nor an OME-Zarr one); use .tif or "
                                 ".ome.zarr, or give a folder.")
            target = target / f"{safe_filename(layer_name)}.tif"
        run = Path(header.path).parent
        protected = [(header.path, "the model file")]
        protected += [(run / name, "a file of the model's run") for name in
                      (checkpoint.MODEL_FILENAME, checkpoint.LAST_FILENAME, checkpoint.STATE_FILENAME)]
        source = getattr(getattr(layer, "source", None), "path", None)
        if source:
            protected.append((source, f"the file of the layer '{layer.name}'"))
        if is_zarr_path(target):
            return check_zarr_output(target, protected, option="'Save to'")
        return check_output(target, protected, option="'Save to'")

    def _checked_values(self, family: "Family") -> dict[str, Any]:
        """The shown apply settings, checked against their declarations (and relations, such
        as a tile larger than twice the overlap) before anything starts."""
        values = self.values()
        family.apply_settings(**values)          # raises a clear NapariGanError
        return values

    def _resolve_channel_axis(self, layer, shape: tuple[int, ...], channels: int) -> int | None:
        """The axis of ``layer`` holding the model's channels: the chosen one, else the axis
        labelled C, else the only axis of the right length. Two axes of that length (an
        ImageJ TZCYX stack whose Z equals its channel count) are never guessed between."""
        if channels == 1 or layer.rgb:        # RGB: the samples are the channels
            return None
        lead = len(shape) - 2
        axis = self.channel_axis.value
        if axis is None or axis < 0:
            axis = labelled_channel_axis(layer)
        if axis is None or axis < 0:
            candidates = [i for i in range(lead) if shape[i] == channels]
            if not candidates:
                raise InputError(
                    f"'{layer.name}' has shape {shape} but the model expects {channels} channels and no axis "
                    f"before Y and X has length {channels}. If napari opened the channels as separate layers, "
                    "stack them into one layer first (select them, right-click > Merge to Stack; the channels "
                    "are then axis 0).")
            if len(candidates) > 1:
                which = ", ".join(str(i) for i in candidates[:-1]) + f" and {candidates[-1]}"
                raise InputError(
                    f"'{layer.name}' (shape {shape}) has {len(candidates)} axes of length {channels} (axes "
                    f"{which}), the model's channel count; choose the one that holds the channels in "
                    "'Channel axis'.")
            axis = candidates[0]
        if not 0 <= axis < lead:
            raise InputError(f"'{layer.name}' has no axis {axis} before Y and X to hold the channels (shape {shape}).")
        if shape[axis] != channels:
            raise InputError(f"Axis {axis} of '{layer.name}' has length {shape[axis]} but the model expects "
                             f"{channels} channels; choose the axis holding the channels in 'Channel axis'.")
        return axis

    def _plan_image(self, header: "Header", family: "Family") -> GenerationPlan:
        from ..core.axes import guess_axes
        from ..core.errors import NapariGanError
        from ..core.families import stored_config

        stored = stored_config(header)
        channels = _model_channels(stored)
        layer = self.input_layer.value
        labels = self.takes_labels
        image = image_layer_data(layer, "input", grayscale=channels == 1, labels=labels)
        if labels and isinstance(image, np.ndarray) and not image.any():   # (cheap in memory; lazy: in the job)
            raise InputError(f"'{layer.name}' has no objects (every pixel is 0, background); draw or choose a "
                             "label image with at least one object.")
        shape = tuple(int(n) for n in image.shape)
        channel_axis = self._resolve_channel_axis(layer, shape, channels)
        values = self._checked_values(family)
        try:     # the layer's axes by name (None: more axes than T, Z, C, Y, X can name)
            axes = guess_axes(shape, channels, channel_axis, f"'{layer.name}'")
        except NapariGanError:
            axes = None
        factor = family.output_scale(family.config_from_header(header))
        what = f"x{factor}" if factor > 1 else "denoised" if stored.get("task") == "denoise" else family.name
        what = "image" if labels else what
        own = _split_values(family, values, _shared_names(family))[1]
        what += "".join(f" {v}" for v in own.values() if isinstance(v, str))     # e.g. CycleGAN's direction
        name = f"{layer.name} {what}"
        kwargs: dict[str, Any] = {"metadata": {"napari_gan_model": str(header.path), "napari_gan_settings": values}}
        kwargs["colormap"] = result_colormap(layer, labels)
        save_path = self._save_target(name, header, layer)
        save = None
        if save_path is not None:
            pixel_size, unit = physical_pixel_size(layer, axes, factor) if axes else ({}, None)
            save = SaveTarget(save_path, pixel_size, unit)
        if axes is not None:
            planes = math.prod(n for n, a in zip(shape, axes) if a not in "CYXS")
        else:
            planes = math.prod(shape[:-2]) // channels
        return GenerationPlan(
            job=lazy_predict_job if is_lazy_layer(layer) and not labels else _predict_job,
            args=(family, header, self.device.value, image, channel_axis, axes, values, self._cancel.is_set,
                  self.relay, save, f"'{layer.name}'"),
            layer_name=name, layer_kwargs=kwargs, save_path=save_path, total=max(1, planes),
            description=f"Loading {family.title} and predicting '{layer.name}'{_axes_note(axes, channel_axis)} ...",
            place=_placer(layer, axes, factor))

    def _plan_noise(self, header: "Header", family: "Family") -> GenerationPlan:
        values = self._checked_values(family)
        n, seed, psi = int(values["n"]), int(values["seed"]), float(values["truncation"])
        name = f"{header.path.parent.name or family.name} generated (seed {seed})"
        if values.get("class_name"):
            name = name.replace(" (seed", f" {values['class_name']} (seed")
        kwargs: dict[str, Any] = {"metadata": {"napari_gan_model": str(header.path), "seed": seed,
                                               "truncation": psi, "napari_gan_settings": values},
                                  "colormap": "gray"}
        save_path = self._save_target(name, header)
        return GenerationPlan(
            job=_generate_job,
            args=(family, header, self.device.value, values, self._cancel.is_set, self.relay, save_path),
            layer_name=name, layer_kwargs=kwargs, save_path=save_path, total=n,
            description=f"Loading {family.title} and generating {n} image(s) ...")

    # ------------------------------------------------------------------ progress
    def _open_progress(self, total: int) -> None:
        total = total if total > 1 else 0     # one plane: an indeterminate (busy) bar
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(0)
        self._pbar = activity_progress(self.viewer, total, "napari-gan: generating")

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
        if isinstance(message, LazyStore):
            self.lazy.show(message, self._plan)
        elif isinstance(message, Notice):
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
        if plan is not None and plan.job is lazy_predict_job:
            finish_lazy(self, result)
            return
        if isinstance(result, Failure):
            report_failure(self.status, result.error, "Generation", "no layer was added")
            self.progress_bar.setValue(0)
            return
        kwargs = dict(plan.layer_kwargs, contrast_limits=result.contrast)
        if plan.place is not None:
            kwargs.update(plan.place(result))
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


def result_colormap(layer, labels: bool = False) -> str:
    """The colormap of a one-channel result of ``layer``: the layer's own (grey for a label or
    RGB input), so that a restored image looks like its input."""
    if labels or getattr(layer, "rgb", False) or getattr(layer, "colormap", None) is None:
        return "gray"
    return layer.colormap.name


def _model_channels(stored: dict) -> int:
    """Input channels of a model from its stored configuration (``in_channels``, or
    ``channels`` for families whose images have the same channels in and out); one label
    image for a model of images from label images (its encoding is the model's business)."""
    if stored.get("task") == "labels":
        return 1
    for key in ("in_channels", "channels"):
        if key in stored:
            try:
                return max(1, int(stored[key]))
            except (TypeError, ValueError):
                return 1
    return 1


def _axes_note(axes: str | None, channel_axis: int | None) -> str:
    """' (axes TZCYX, channels on axis 2)' for the status line."""
    if axes is None:
        return ""
    return f" (axes {axes}" + (f", channels on axis {channel_axis})" if channel_axis is not None else ")")


def _placer(layer, axes: str | None, factor: int) -> Callable[[Outcome], dict]:
    """What places a result on top of ``layer`` (read now, on the GUI thread): each axis of
    the result keeps the scale and translate of the layer's axis of the same name."""
    scale, translate = spatial_scale(layer)
    units, labels = getattr(layer, "units", None), getattr(layer, "axis_labels", None)

    def place(outcome: Outcome) -> dict:
        if axes is not None and outcome.axes is not None:
            try:
                return placement_by_axes(scale, translate, axes, outcome.axes, factor, units, labels)
            except ValueError:
                pass
        if len(scale) == np.ndim(outcome.data):     # unnamed axes: the same dimensions, Y and X last
            out_scale, out_translate = placement(scale, translate, factor)
            return {"scale": out_scale, "translate": out_translate}
        return {}

    return place


def _predicted_axes(axes: str | None, channel_axis: int | None, out_channels: int | None,
                    ndim: int) -> str | None:
    """The axes of what ``Predictor.predict`` returns for an input with ``axes``: one output
    channel drops the channel axis; several keep it where it was (``channel_axis``) or put
    it before Y and X. None when that does not match the result's ``ndim``."""
    if axes is None:
        return None
    lead = "".join(a for a in axes if a not in "CSYX")
    if out_channels is None:
        out_channels = 1 if ndim == len(lead) + 2 else None
    if out_channels == 1:
        out = lead + "YX"
    elif channel_axis is not None and "C" in axes:
        out = axes
    else:
        out = lead + "CYX"
    return out if len(out) == ndim else None


def _looks_constant(image) -> float | None:
    """The value of an image whose every (subsampled) pixel is the same, else None."""
    step_y, step_x = (max(1, n // 256) for n in image.shape[-2:])
    sample = np.asarray(image[..., ::step_y, ::step_x])
    if sample.size == 0 or (sample.dtype.kind == "f" and not np.isfinite(sample).all()):
        return None
    lo, hi = float(sample.min()), float(sample.max())
    return lo if lo == hi else None


# ------------------------------------------------------------------------ the workers
def _shared_names(family) -> tuple[str, ...]:
    """The apply settings every family of ``family``'s apply mode has (PredictSettings or
    GenerateSettings); the others are the family's own, passed to its load_applier."""
    from ..core import settings
    from ..core.families import Family

    return tuple(d.name for d in settings.declared(Family.apply_settings.fget(family)))


def _split_values(family, values: dict, shared: tuple[str, ...]) -> tuple[dict, dict]:
    """(the shared apply settings, the ones ``family`` adds: passed to its load_applier)."""
    from ..core.families import applier_options

    values = dict(values)
    common = {k: values.pop(k) for k in shared if k in values}
    return common, applier_options(family, values)


def _predict_job(family, header, device, image, channel_axis, axes, values, cancel, relay, save, name):
    """Worker: load the model, tiled prediction, then (optionally) the TIFF file."""
    common, own = _split_values(family, values, _shared_names(family))
    predictor = family.load_applier(header, device, amp=common.get("amp", True), **own)
    constant = _looks_constant(image)
    if constant is not None:
        yield Notice(f"{name} looks constant (every pixel is {constant:g}); the result will carry no information.")
    yield f"Predicting on {predictor.device_name} ..."
    result = predictor.predict(image, channel_axis, common.get("tile"), common.get("overlap"), cancel=cancel,
                               progress=relay.progressed.emit, name=name)
    out_axes = _predicted_axes(axes, channel_axis, getattr(predictor, "out_channels", None), np.ndim(result))
    if save is not None:
        yield f"Writing '{save.path}' ..."
        _write(save, result, out_axes)
    return Outcome(result, contrast_limits(result), axes=out_axes)


def _write(save: SaveTarget, result: np.ndarray, axes: str | None) -> None:
    """The result as TIFF: with its axes (an ImageJ hyperstack or OME-TIFF) where known."""
    from ..core.axes import write_image
    from ..core.io import write_tiff

    if axes is None:
        write_tiff(save.path, result)
    else:
        write_image(save.path, result, axes=axes, pixel_size=save.pixel_size, unit=save.unit)


def _generate_job(family, header, device, values, cancel, relay, save_path):
    """Worker: load the model, images in batches (progress, Cancel between batches), then the TIFF."""
    from ..core.io import write_tiff

    common, own = _split_values(family, values, _shared_names(family) + ("amp",))
    amp = {"amp": common["amp"]} if "amp" in common else {}
    n, seed, truncation = int(common["n"]), int(common["seed"]), float(common["truncation"])
    generator = family.load_applier(header, device, **amp, **own)
    latents = generator.latents(n, seed)
    classes = _image_classes(generator, n, common.get("class_name"))
    yield (f"Generating {n} image(s) of {generator.resolution}x{generator.resolution} "
           f"on {generator.device_name} ...")
    chunks, step = [], max(1, generator.batch)
    for start in range(0, n, step):
        if cancel():
            raise InterruptedError("generation cancelled")
        chunk_classes = None if classes is None else classes[start:start + step]
        chunks.append(generator.generate_from_latents(latents[start:start + step], truncation, chunk_classes))
        relay.progressed.emit(min(start + step, n), n)
    images = np.concatenate(chunks)
    if save_path is not None:
        yield f"Writing '{save_path}' ..."
        write_tiff(save_path, images)
    if generator.channels > 1:
        return Outcome(images, [contrast_limits(c) for c in np.moveaxis(images, 1, 0)], channel_axis=1)
    return Outcome(images, contrast_limits(images))


def _image_classes(generator, n: int, class_name: str | None) -> list[str] | None:
    """The class of each of ``n`` images (all ``class_name``, or the mix of
    ``ImageGenerator.class_indices``), so that batches do not restart the mix; None for an
    unconditional model (which refuses a class)."""
    indices = generator.class_indices(n, class_name)
    return None if indices is None else [generator.class_names[int(k)] for k in indices]
