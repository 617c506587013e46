"""The "Train" dock widget: train any registered model family from napari layers.

A thin face over the same core calls as ``napari-gan train FAMILY``: the model list, the
layer pickers and the setting fields are built from the family registry and the setting
declarations. On Train the GUI thread only gathers references to the layers' data, the
setting values, the folder and the device; everything heavy (reading the layers, checks,
normalisers, networks, the saved state of a resumed run) happens in a napari thread
worker, which then forwards the trainer's events. Each event updates the progress
(widget and napari's activity dock), the live plot and the preview layer. Stop asks the
trainer to finish after the current step (it then saves the model and the resumable
state); pressed while the run is still being prepared, it cancels the run.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton, Select
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from ._common import (
    InputError, PREVIEW_SUFFIX, activity_progress, contrast_limits, device_choices, image_layer_data,
    import_training_modules, is_labels_layer, layer_choices, notify_error, notify_info, notify_warning, placement, refresh_choices,
    spatial_scale, user_message,
)
from ._fields import SettingFields, align_labels
from ._plot import TrainingPlot
from ._workers import Failure, start_job

if TYPE_CHECKING:
    import napari

    from ..core.families import DataInput, Family

PROGRESS_TOTAL = 1000
REFRESH_MS = 250   # display refresh while training
#: least seconds between two preview updates: each one redraws napari's canvas, which costs
#: seconds of CPU where OpenGL is software (remote desktops, Xvfb) and slowed training 2x
PREVIEW_INTERVAL_S = 30.0
INPUT_HINTS = ("noisy", "low", "input", "raw", "source")
TARGET_HINTS = ("clean", "high", "target", "gt", "ground")
LABELS_TASK = "labels"      # a family's "task" setting with this value takes label images as input
CLASSES_SETTING = "classes"  # a family with this setting trains class-conditional models (StyleGAN2)
CLASS_LIST_HEIGHT = 90
CANCELLED = "cancelled"


# ------------------------------------------------------------------ what travels to the worker
@dataclass
class LayerInput:
    """A layer chosen for one of the family's inputs: its data as napari holds it (never
    converted on the GUI thread) and the words to name it in messages."""

    name: str
    role: str
    data: Any
    class_name: str | None = None      # class-conditional training: the class of this layer's images


@dataclass
class PreviewPlace:
    """Where the preview layer goes, taken from the layers when Train is pressed."""

    name: str
    scale: np.ndarray              # of the layer the preview lies on
    translate: np.ndarray
    contrast: tuple[float, float] | None
    grid: bool                     # a grid of generated samples, not a crop of the layer


@dataclass
class TrainRequest:
    family: "Family"
    values: dict
    out: Path
    resume: bool
    device: str
    layers: dict[str, LayerInput | list[LayerInput]]   # a list: layers chosen as classes


@dataclass
class Prepared:
    """The job's first message, once the trainer exists: what is trained, and where in the
    preview's layer its crop comes from (input pixels) at which output scale."""

    description: str
    preview_origin: tuple[int, int] | None
    output_scale: int
    warning: str = ""


class RunControl:
    """Stop requests for a job, valid before and after its trainer exists (thread-safe:
    each side writes its flag before reading the other's)."""

    def __init__(self):
        self.stop_requested = False
        self.trainer = None

    def request_stop(self) -> None:
        self.stop_requested = True
        if self.trainer is not None:
            self.trainer.request_stop()

    def attach(self, trainer) -> bool:
        """Hand over the trainer; False when a stop was requested meanwhile."""
        self.trainer = trainer
        if self.stop_requested:
            trainer.request_stop()
        return not self.stop_requested


# ------------------------------------------------------------------------ per family
class FamilyForm:
    """The layer pickers and the setting fields of one family. ``choices(labels_first)`` lists
    the layers a picker offers."""

    def __init__(self, family: "Family", choices: Callable[[bool], list]):
        self.family = family
        self.settings = SettingFields(family.config_class)     # first: the task decides the pickers' choices
        self.pickers: dict[str, ComboBox] = {}
        for inp in family.inputs:
            tooltip = inp.help + (" (optional)" if inp.optional else "")
            offered = functools.partial(self._choices, choices, inp.name)
            self.pickers[inp.name] = ComboBox(name=inp.name, label=inp.title, choices=offered, nullable=True,
                                              tooltip=tooltip)
        self.class_layers = self._class_picker(family, choices)
        extra = [self.class_layers] if self.class_layers is not None else []
        self.inputs = Container(widgets=[*self.pickers.values(), *extra])
        self.chosen_by_user: set[str] = set()      # never replaced by name guesses
        self.guessing = False
        for name, picker in self.pickers.items():
            picker.changed.connect(functools.partial(self._mark_chosen, name))

    @property
    def sections(self) -> tuple[Container, Container]:
        return self.inputs, self.settings.basic

    @staticmethod
    def _class_picker(family: "Family", choices: Callable[[bool], list]) -> Select | None:
        """For a family that learns classes: a list of layers, one per class (the layer names
        are the class names), which then replace the family's first input."""
        from ..core import settings

        if CLASSES_SETTING not in {d.name for d in settings.declared(family.config_class)}:
            return None
        first = family.inputs[0].title
        picker = Select(label="Classes", choices=lambda _w: [c for c in choices(False) if not is_labels_layer(c[1])],
                        tooltip=f"Class-conditional model: select 2 or more layers, one per class (each layer's "
                                f"name is its class name; Ctrl-click to select several). They replace "
                                f"'{first}'. Leave empty for a model without classes.")
        picker.native.setMaximumHeight(CLASS_LIST_HEIGHT)
        return picker

    def chosen_classes(self) -> list:
        """The layers chosen as classes (in the viewer's order); empty: no classes."""
        return list(self.class_layers.value) if self.class_layers is not None else []

    def label_inputs(self) -> set[str]:
        """The inputs that take label images now: with the task "labels" (Pix2Pix), the inputs
        that are not the images they are paired with (the input and the validation input)."""
        task = self.settings.fields.get("task")
        if task is None or task.get() != LABELS_TASK:
            return set()
        return {inp.name for inp in self.family.inputs if not inp.paired_with}

    def _choices(self, choices: Callable[[bool], list], name: str, _widget=None) -> list:
        return choices(name in self.label_inputs())

    def show(self, visible: bool) -> None:
        for section in (*self.sections, self.settings.advanced):
            section.visible = visible

    def _mark_chosen(self, name: str, *_args) -> None:
        if not self.guessing:
            self.chosen_by_user.add(name)

    def guess_layers(self, layers: list) -> None:
        """Pick the required inputs from layer names ('noisy' -> input, 'clean' -> target),
        one layer each; the user's own choices stay."""
        taken: list = []
        label_inputs = self.label_inputs()
        for inp in self.family.inputs:
            if inp.optional:
                continue
            picker = self.pickers[inp.name]
            if inp.name in self.chosen_by_user and picker.value is not None and picker.value not in taken:
                taken.append(picker.value)
                continue
            hints = TARGET_HINTS if inp.paired_with else INPUT_HINTS
            free = [layer for layer in layers if not any(layer is t for t in taken)]
            wants_labels = inp.name in label_inputs
            fitting = [layer for layer in free if is_labels_layer(layer) == wants_labels]
            free = fitting or free      # label inputs: Labels layers; images: image layers
            guess = next((layer for layer in free if any(h in layer.name.lower() for h in hints)), None)
            if guess is not None:
                picker.value = guess
            elif free and (picker.value is None or any(picker.value is t for t in taken)
                           or (fitting and is_labels_layer(picker.value) != wants_labels)):
                picker.value = free[0]
            if picker.value is not None:
                taken.append(picker.value)


class TrainWidget(QWidget):
    """Dock widget: choose a model family, its layers and settings, then Train / Stop / Resume."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent: QWidget | None = None):
        from ..core import runs
        from ..core.training.base import RunSettings

        super().__init__(parent)
        self.viewer = napari_viewer
        self._control: RunControl | None = None
        self._worker = None
        self._pbar = None
        self._request: TrainRequest | None = None
        self._place: PreviewPlace | None = None
        self._prepared: Prepared | None = None
        self._preview_layer = None
        self._pending_preview = None
        self._preview_shown_at: float | None = None
        self.last_event = None
        self.last_result: dict | None = None   # paths of the last finished run

        from ..core import families

        choices: Callable = lambda labels_first: layer_choices(self.viewer, labels_first=labels_first)
        self.forms = {f.name: FamilyForm(f, choices) for f in families.all_families()}
        first = next(iter(self.forms))
        self.model = ComboBox(label="Model", choices=[(f.family.title, name) for name, f in self.forms.items()],
                              value=first, tooltip="What to train")
        self.summary = Label(value="")
        self.run_settings = SettingFields(RunSettings)
        self.device = ComboBox(label="Device", choices=device_choices(), value="auto")
        import_training_modules()
        self._auto_out = runs.default_folder(first)
        self.out_dir = FileEdit(label="Save to", mode="d", value=self._auto_out,
                                tooltip="Run folder: model.safetensors (best), last.safetensors, training state")
        self.show_advanced = CheckBox(text="Show advanced settings", value=False)
        header = Container(widgets=[self.model, self.summary])
        where = Container(widgets=[self.device, self.out_dir])
        labelled = [header, *(s for f in self.forms.values() for s in f.sections), self.run_settings.basic, where]
        self.advanced = Container(labels=False, visible=False, widgets=[
            *(f.settings.advanced for f in self.forms.values()), self.run_settings.advanced])
        self.form = Container(labels=False, widgets=[*labelled, self.show_advanced, self.advanced])
        for c in (*labelled, self.advanced, *self.advanced):
            c.margins = (0, 0, 0, 0)
        align_labels(*labelled, *self.advanced)

        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.resume_button = PushButton(text="Resume")
        self.buttons = Container(widgets=[self.train_button, self.stop_button, self.resume_button],
                                 layout="horizontal", labels=False)
        self.status = Label(value="Ready.")
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, PROGRESS_TOTAL)
        self.progress_bar.setValue(0)
        self.plot = TrainingPlot()
        # If the widget is deleted (dock closed, viewer closed) while training, the trainer
        # stops after its step and saves: nothing is lost and no thread outlives its window.
        self._active: dict[str, RunControl | None] = {"control": None}
        self.destroyed.connect(functools.partial(_stop_active, self._active))
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._refresh)

        layout = QVBoxLayout(self)
        for w in (self.form.native, self.buttons.native, self.progress_bar, self.status.native, self.plot):
            layout.addWidget(w)
        layout.addStretch(1)
        for label in (self.status, self.summary):
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        self.model.changed.connect(self._on_family_changed)
        for form in self.forms.values():
            if "task" in form.settings:      # the task decides which inputs take label images
                form.settings.widget("task").changed.connect(self.reset_choices)
        self.show_advanced.changed.connect(lambda v: setattr(self.advanced, "visible", bool(v)))
        self.train_button.changed.connect(lambda: self.start(resume=False))
        self.resume_button.changed.connect(lambda: self.start(resume=True))
        self.stop_button.changed.connect(self.stop)
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self.reset_choices)
        events.inserted.connect(self._watch_name)
        for layer in self.viewer.layers:
            layer.events.name.connect(self.reset_choices)
        self.reset_choices()
        self._on_family_changed(first)

    def event(self, event) -> bool:
        """napari closes a dock widget by taking it out of its dock (parent -> None): a
        training that runs then is stopped cleanly (model saved, notification)."""
        if event.type() == QEvent.Type.ParentChange and self.parent() is None and self.running:
            self.stop()
            notify_info("The Train widget was closed, so training stops after the current step; "
                        "a notification will say where the model is saved.")
        return super().event(event)

    # ------------------------------------------------------------------ access
    @property
    def family(self) -> "Family":
        return self.forms[self.model.value].family

    @property
    def current(self) -> FamilyForm:
        return self.forms[self.model.value]

    def field(self, name: str):
        """The widget of a setting of the chosen family (or a run setting), by its name."""
        settings = self.current.settings
        return settings.widget(name) if name in settings else self.run_settings.widget(name)

    def picker(self, name: str) -> ComboBox:
        """The layer picker of one of the chosen family's inputs, by the input's name."""
        return self.current.pickers[name]

    def values(self) -> dict:
        """Every setting value of the chosen family and of the run (automatic ones None)."""
        return {**self.run_settings.values(), **self.current.settings.values()}

    @property
    def trainer(self):
        return self._control.trainer if self._control is not None else None

    # ------------------------------------------------------------------ choices
    def _watch_name(self, event) -> None:
        event.value.events.name.connect(self.reset_choices)

    def reset_choices(self, *_args) -> None:
        layers = [layer for _, layer in layer_choices(self.viewer)]
        for form in self.forms.values():
            form.guessing = True
            try:
                for picker in form.pickers.values():
                    refresh_choices(picker)
                if form.class_layers is not None:
                    form.class_layers.reset_choices()
                if layers:
                    form.guess_layers(layers)
            finally:
                form.guessing = False

    def _on_family_changed(self, name: str) -> None:
        from ..core import runs

        for key, form in self.forms.items():
            form.show(key == name)
        self.summary.value = self.family.summary[:1].upper() + self.family.summary[1:] + "."
        if not self.running and str(self.out_dir.value) == str(self._auto_out):
            self._auto_out = runs.default_folder(name)      # the user's own folder is kept
            self.out_dir.value = self._auto_out

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self._control is not None

    def _set_running(self, running: bool) -> None:
        self.train_button.enabled = not running
        self.resume_button.enabled = not running
        self.stop_button.enabled = running
        self.model.enabled = not running

    # ------------------------------------------------------------------ actions
    def start(self, resume: bool = False) -> bool:
        """Gather the request (cheap checks only) and start the job; False on bad input."""
        if self.running:
            notify_warning("A training run is already in progress; stop it first.")
            return False
        try:
            request, place = self._gather(resume)
        except Exception as exc:  # noqa: BLE001 - every problem becomes a notification
            notify_error(user_message(exc, "Cannot start training"))
            return False
        self._request, self._place, self._prepared = request, place, None
        self._control = RunControl()
        self._active["control"] = self._control
        self.last_event = None
        self._pending_preview = None
        self._preview_shown_at = None
        self.plot.reset()
        self.progress_bar.setValue(0)
        self.status.value = f"Preparing {request.family.title} training: reading and checking the layers ..."
        self._set_running(True)
        self._open_progress(request.family)
        self._timer.start()
        self._worker = start_job(_train_job, request, self._control, on_yield=self._on_message,
                                 on_finish=self._on_finish)
        return True

    def stop(self, *_args) -> None:
        control = self._control
        if control is None or control.stop_requested:
            return
        control.request_stop()
        self.stop_button.enabled = False
        if control.trainer is not None:
            self.status.value = "Stopping after the current step; the model will be saved ..."
        else:
            self.status.value = "Stopping: the run is cancelled as soon as its preparation ends ..."

    # ------------------------------------------------------------------ gathering
    def _gather(self, resume: bool) -> tuple[TrainRequest, PreviewPlace]:
        """What the job needs, from the widgets and layers; only cheap checks here."""
        from ..core import settings

        family, form = self.family, self.current
        values = self.values()
        channels = values.get("channels", settings.defaults(family.config_class).get("channels", 1))
        chosen = {inp.name: form.pickers[inp.name].value for inp in family.inputs}
        label_inputs = form.label_inputs()
        layers = {}
        classes = form.chosen_classes()
        if classes:
            values[CLASSES_SETTING] = True
            layers[family.inputs[0].name] = _class_layer_inputs(classes, family.inputs[0].title.lower(),
                                                                channels)
            chosen[family.inputs[0].name] = classes[0]
        for inp in family.inputs:
            if (chosen[inp.name] is None and inp.optional) or inp.name in layers:
                continue
            data = image_layer_data(chosen[inp.name], inp.title.lower(), grayscale=channels == 1,
                                    labels=inp.name in label_inputs)
            layers[inp.name] = LayerInput(chosen[inp.name].name, inp.title.lower(), data)
        _check_distinct(family.inputs, chosen)
        _check_partners(family.inputs, chosen)
        text = str(self.out_dir.line_edit.value).strip()   # (its value would be the working folder)
        if text in ("", "."):
            raise InputError("Choose a folder to save the model in ('Save to').")
        request = TrainRequest(family, values, Path(text).expanduser(), resume, self.device.value, layers)
        return request, self._preview_place(family, chosen)

    def _preview_place(self, family: "Family", chosen: dict) -> PreviewPlace:
        """The preview lies on the validation layer of the first input when there is one
        (``val_`` + its name), else on the first input; its contrast is the partner's."""
        first = family.inputs[0]
        origin = chosen.get("val_" + first.name)
        origin = chosen[first.name] if origin is None else origin
        partners = [chosen[i.name] for i in family.inputs if i.paired_with == first.name]
        partner = next((layer for layer in partners if layer is not None), chosen[first.name])
        grid = family.apply_mode == "noise"
        scale, translate = spatial_scale(origin)
        name = f"{chosen[first.name].name}{' samples' if grid else ''}{PREVIEW_SUFFIX}"
        return PreviewPlace(name, scale, translate, tuple(partner.contrast_limits), grid)

    # ------------------------------------------------------------------ progress
    def _open_progress(self, family: "Family") -> None:
        self._pbar = activity_progress(self.viewer, PROGRESS_TOTAL, f"napari-gan: training {family.name}")

    def _close_progress(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    def _on_message(self, message) -> None:
        if isinstance(message, Prepared):
            self._prepared = message
            self.status.value = f"Training {message.description}"
            if message.warning:
                notify_warning(message.warning)
        else:
            self._on_event(message)

    def _on_event(self, event) -> None:
        """Record an event; the display catches up in :meth:`_refresh` (a few times a second),
        so a fast trainer never floods the GUI thread."""
        self.last_event = event
        plot = self._request.family.plot
        losses = {k: v for k, v in event.losses.items() if k in plot.losses}
        metrics = {k: v for k, v in event.metrics.items() if k in plot.metrics}
        if losses or metrics:
            self.plot.add(event.step, losses, metrics, redraw=False)
        if event.preview is not None:
            self._pending_preview = event.preview
        if event.kind == "warning" and event.message:
            notify_warning(f"Training: {event.message}")

    def _refresh(self) -> None:
        from ..core.events import format_seconds

        event = self.last_event
        if event is None:
            return
        done = int(round(event.fraction * PROGRESS_TOTAL))
        self.progress_bar.setValue(done)
        parts = [f"step {event.step}", f"{100 * event.fraction:.0f}%"]
        if event.images_per_s:
            parts.append(f"{event.images_per_s:.1f} images/s")
        if event.eta_s is not None and event.kind != "done":
            parts.append(f"ETA {format_seconds(event.eta_s)}")
        plot = self._request.family.plot
        parts += [f"{k} {event.losses[k]:.3g}" for k in plot.status if k in event.losses]
        parts += [f"{k} {v:.4g}" for k, v in event.metrics.items() if k in plot.metrics]
        if self._control is not None and self._control.stop_requested and event.kind != "done":
            parts.append("stopping after this step")
        self.status.value = " | ".join(parts)
        self.plot.redraw()
        if self._pending_preview is not None and self._preview_due(event.kind == "done"):
            preview, self._pending_preview = self._pending_preview, None
            self._show_preview(preview)
            self._preview_shown_at = time.monotonic()
        pbar = self._pbar   # last: napari's activity dock processes pending events on update
        if pbar is not None and done > pbar.n:
            pbar.set_description(f"napari-gan: training, step {event.step}")
            pbar.update(done - pbar.n)

    def _preview_due(self, final: bool) -> bool:
        """The first preview, the last one, and the others at most every PREVIEW_INTERVAL_S."""
        shown = self._preview_shown_at
        return final or shown is None or time.monotonic() - shown >= PREVIEW_INTERVAL_S

    def _show_preview(self, preview: np.ndarray) -> None:
        layer = self._preview_layer
        if layer is not None and layer in self.viewer.layers:
            layer.data = preview
            return
        place, prepared = self._place, self._prepared
        kwargs = {"name": place.name, "metadata": {"napari_gan_preview": True}, "colormap": "gray",
                  "contrast_limits": place.contrast or contrast_limits(preview)}
        if preview.ndim == 2:
            if place.grid or prepared is None or prepared.preview_origin is None:
                kwargs.update(scale=list(place.scale[-2:]), translate=[0.0, 0.0])
            else:
                scale, translate = placement(place.scale, place.translate, prepared.output_scale, ndim=2)
                row, col = prepared.preview_origin
                translate[0] += row * place.scale[-2]
                translate[1] += col * place.scale[-1]
                kwargs.update(scale=scale, translate=translate)
        self._preview_layer = self.viewer.add_image(preview, **kwargs)

    def _on_finish(self, result) -> None:
        self._timer.stop()
        pbar, self._pbar = self._pbar, None
        self._refresh()
        self._pbar = pbar
        self._close_progress()
        started = self._prepared is not None
        self._control, self._worker = None, None
        self._active["control"] = None
        self._set_running(False)
        event = self.last_event
        if isinstance(result, Failure):
            if not started:      # refused while preparing: nothing was written
                message = user_message(result.error, "Cannot start training")
                notify_error(message)
                self.status.value = message
                return
            message = user_message(result.error, "Training failed")
            notify_error(f"{message} Model files saved so far are kept in '{self._request.out}'.")
            self.status.value = message
            return
        if result == CANCELLED:
            self.status.value = "Training cancelled before it started; nothing was saved."
            notify_info(self.status.value)
            return
        if event is None or event.kind != "done":
            return
        self.last_result = dict(event.paths)
        best = event.paths.get("best", "")
        how = "stopped" if event.message == "stopped" else "finished"
        self.status.value = f"{self.status.value}\nTraining {how} at step {event.step}. Model: {best}"
        notify_info(f"Training {how} at step {event.step}; the model is saved in '{best}' "
                    f"(resume with the Resume button, folder '{Path(best).parent}').")


def _class_layer_inputs(classes: list, role: str, channels: int) -> list[LayerInput]:
    """The layers chosen as classes, each a class named after its layer."""
    if len(classes) < 2:
        raise InputError(f"Only '{classes[0].name}' is selected in 'Classes'; a class-conditional model needs at "
                         "least 2 layers there (one per class), or none for a model without classes.")
    return [LayerInput(layer.name, f"{role} of class '{layer.name}'",
                       image_layer_data(layer, role, grayscale=channels == 1), layer.name) for layer in classes]


def _check_distinct(inputs: tuple["DataInput", ...], chosen: dict) -> None:
    picked = [(inp, chosen[inp.name]) for inp in inputs if chosen[inp.name] is not None]
    for i, (a, layer) in enumerate(picked):
        for b, other in picked[i + 1:]:
            if layer is other:
                raise InputError(f"The {a.title.lower()} and the {b.title.lower()} are the same layer "
                                 f"('{layer.name}'); choose a different layer for each.")


def _check_partners(inputs: tuple["DataInput", ...], chosen: dict) -> None:
    """Optional inputs that go in pairs (validation input and target): both or neither."""
    titles = {inp.name: inp.title.lower() for inp in inputs}
    for inp in inputs:
        if inp.optional and inp.paired_with and (chosen[inp.name] is None) != (chosen[inp.paired_with] is None):
            raise InputError(f"Choose both the {titles[inp.paired_with]} and the {titles[inp.name]}, or neither.")


def _stop_active(active: dict, *_args) -> None:
    control = active.get("control")
    if control is not None:
        control.request_stop()


# ------------------------------------------------------------------------ the worker
def layer_images(layers: dict[str, LayerInput | list[LayerInput]], channels: int) -> dict:
    """The chosen layers as the core's training images: (C, H, W) planes and their names (and
    their classes, for layers chosen as classes)."""
    from ..core.data import to_planes
    from ..core.families import Images

    images = {}
    for key, chosen in layers.items():
        images[key] = Images()
        for layer in chosen if isinstance(chosen, list) else [chosen]:
            planes, _ = to_planes(layer.data, channels, None, f"'{layer.name}' ({layer.role})")
            images[key].planes += list(planes)
            images[key].names += [f"'{layer.name}'" + (f" plane {i + 1}" if len(planes) > 1 else "")
                                  for i in range(len(planes))]
            if layer.class_name is not None:
                images[key].classes += [layer.class_name] * len(planes)
    return images


def _train_job(request: TrainRequest, control: RunControl):
    """The worker: prepare the run (everything heavy), announce it, then forward every
    event of the trainer to the GUI thread."""
    from ..core import runs
    from ..core.device import describe_device, resolve_device

    device = resolve_device(request.device)
    def read_images(cfg):
        return layer_images(request.layers, getattr(cfg, "channels", 1))

    family = request.family
    trainer = runs.start(family, request.values, request.out, request.resume, device, read_images)
    if not control.attach(trainer):
        trainer.release_folder()        # stopped while preparing: the folder is free again
        return CANCELLED
    yield Prepared(f"{family.title}: {trainer.describe()}, {describe_device(device)}, from step {trainer.step}",
                   trainer.preview_origin, family.output_scale(trainer.cfg), " ".join(trainer.notes))
    yield from trainer.run()
    return "done"
