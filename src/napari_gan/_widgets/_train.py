"""The "Train" dock widget: train Pix2Pix or StyleGAN2 from napari layers.

A thin face over the same core calls as ``napari-gan train``: the layers become numpy
planes, the core builds the data set and the trainer, and the trainer's generator of
events runs in a napari thread worker. Each event updates the progress (widget and
napari's activity dock), the live plot and the preview layer. Stop asks the trainer to
finish after the current step; it then saves the model and the resumable state.
"""

from __future__ import annotations

import datetime as _dt
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from magicgui.widgets import (
    CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox,
)
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from ._common import (
    InputError, PREVIEW_SUFFIX, contrast_limits, device_choices, layer_array, layer_choices,
    notify_error, notify_info, notify_warning, upscaled_placement, user_message,
)
from ._plot import TrainingPlot
from ._workers import Failure, start_job

if TYPE_CHECKING:
    import napari

PIX2PIX_DENOISE = "pix2pix-denoise"
PIX2PIX_SR2 = "pix2pix-sr2"
PIX2PIX_SR4 = "pix2pix-sr4"
STYLEGAN2 = "stylegan2"
MODEL_KINDS = [
    ("Pix2Pix denoising", PIX2PIX_DENOISE),
    ("Pix2Pix super-resolution x2", PIX2PIX_SR2),
    ("Pix2Pix super-resolution x4", PIX2PIX_SR4),
    ("StyleGAN2 from noise", STYLEGAN2),
]
PROGRESS_TOTAL = 1000
REFRESH_MS = 250   # display refresh while training
MIN_TRAIN_SIZE = 16
INPUT_HINTS = ("noisy", "low", "input", "raw", "source")
TARGET_HINTS = ("clean", "high", "target", "gt", "ground")


def default_run_folder(kind: str = "run") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path.home() / "napari-gan-runs" / f"{kind}-{stamp}"


@dataclass
class TrainingPlan:
    """Everything a training run needs, checked on the GUI thread before it starts."""

    trainer: Any
    kind: str
    description: str
    preview_name: str
    preview_scale: list[float] | None = None
    preview_translate: list[float] | None = None
    preview_contrast: tuple[float, float] | None = None
    metric_names: list[str] = field(default_factory=list)   # plotted validation metrics
    loss_names: list[str] = field(default_factory=list)     # plotted losses
    status_names: list[str] = field(default_factory=list)   # other values shown in the status line


class TrainWidget(QWidget):
    """Dock widget: choose a model kind and layers, then Train / Stop / Resume."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._trainer = None
        self._worker = None
        self._pbar = None
        self._plan: TrainingPlan | None = None
        self._preview_layer = None
        self.last_event = None
        self.last_result: dict | None = None   # paths of the last finished run

        choices: Callable = lambda _w: layer_choices(self.viewer)
        self.model_kind = ComboBox(label="Model", choices=MODEL_KINDS, value=PIX2PIX_DENOISE,
                                   tooltip="What to train: restoration from image pairs, or generation from noise")
        self.input_layer = ComboBox(label="Input", choices=choices, nullable=True,
                                    tooltip="Degraded images (Pix2Pix) or the images to learn from (StyleGAN2)")
        self.target_layer = ComboBox(label="Target", choices=choices, nullable=True,
                                     tooltip="Clean / high-resolution images matching the input")
        self.val_input_layer = ComboBox(label="Validation input", choices=choices, nullable=True,
                                        tooltip="Optional; by default the bottom rows of the input are held out")
        self.val_target_layer = ComboBox(label="Validation target", choices=choices, nullable=True)
        self.steps = SpinBox(label="Steps", value=2000, min=1, max=10_000_000, step=100,
                             tooltip="Total optimisation steps (Resume continues up to this number)")
        self.minutes = FloatSpinBox(label="Time limit (min)", value=0.0, min=0.0, max=100_000.0, step=5.0,
                                    tooltip="Stop after this many minutes; 0 = no time limit")
        self.patch = SpinBox(label="Patch size", value=96, min=16, max=1024, step=16,
                             tooltip="Training patch size in input pixels")
        self.batch = SpinBox(label="Batch size", value=8, min=1, max=512)
        self.preview_every = SpinBox(label="Preview every", value=100, min=1, max=1_000_000, step=50,
                                     tooltip="Validate, update the preview layer and save the best model every N steps")
        self.resolution = ComboBox(label="Resolution", choices=[8, 16, 32, 64, 128, 256, 512, 1024], value=64,
                                   tooltip="Size of the generated images (random crops of this size are learnt)")
        self.sg_batch = SpinBox(label="Batch size", value=0, min=0, max=512,
                                tooltip="Images per step; 0 = automatic (4096 / resolution, at most 32)")
        self.sg_batch.native.setSpecialValueText("auto")
        self.device = ComboBox(label="Device", choices=device_choices(), value="auto")
        self._auto_out = default_run_folder()
        self.out_dir = FileEdit(label="Save to", mode="d", value=self._auto_out,
                                tooltip="Run folder: model.safetensors (best), last.safetensors, training state")
        self.show_advanced = CheckBox(text="Show advanced settings", value=False)
        # advanced
        self.width = SpinBox(label="Width", value=32, min=4, max=512, tooltip="Generator channels at the first level")
        self.depth = SpinBox(label="Depth", value=3, min=1, max=6, tooltip="uNet levels")
        self.adv_weight = FloatSpinBox(label="Adversarial weight", value=1.0, min=0.0, max=1000.0, step=0.1,
                                       tooltip="0 trains a plain uNet with the L1 loss only")
        self.gan_mode = ComboBox(label="GAN loss", choices=["lsgan", "vanilla", "hinge", "wgan-gp"], value="lsgan")
        self.lr = FloatSpinBox(label="Learning rate", value=2e-4, min=1e-6, max=1.0, step=1e-5)
        self.normalization = ComboBox(
            label="Input normalisation", value="auto",
            choices=[("auto", "auto"), ("whole data set", "dataset"), ("each image", "image")],
            tooltip="each image: for images scaled one by one (e.g. 8-bit exports with automatic "
                    "contrast); auto measures which one the pairs need")
        self.val_fraction = FloatSpinBox(label="Validation fraction", value=0.1, min=0.0, max=0.5, step=0.05,
                                         tooltip="Bottom fraction of each image held out when no validation layers are chosen")
        self.log_every = SpinBox(label="Plot every", value=10, min=1, max=100_000, tooltip="Plot the losses every N steps")
        self.seed = SpinBox(label="Seed", value=0, min=0, max=2**31 - 1)
        self.sg_size = ComboBox(label="Network size", choices=["auto", "small", "medium", "full"], value="auto",
                                tooltip="auto: small on the CPU, full on a GPU")
        self.augment = ComboBox(label="Augmentation", choices=[("adaptive (ADA)", "ada"), ("none", "none")],
                                value="ada", tooltip="Adaptive discriminator augmentation makes small data sets work")
        self.advanced = Container(widgets=[self.width, self.depth, self.adv_weight, self.gan_mode, self.lr,
                                           self.normalization, self.val_fraction, self.sg_size, self.augment, self.log_every,
                                           self.seed], visible=False)
        self.form = Container(widgets=[
            self.model_kind, self.input_layer, self.target_layer, self.val_input_layer,
            self.val_target_layer, self.steps, self.minutes, self.patch, self.batch, self.resolution,
            self.sg_batch, self.preview_every, self.device, self.out_dir, self.show_advanced, self.advanced,
        ])
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
        self._pending_preview = None
        # If the widget is deleted (dock closed, viewer closed) while training, the trainer
        # stops after its step and saves: nothing is lost and no thread outlives its window.
        self._active = {"trainer": None}
        self.destroyed.connect(functools.partial(_stop_active, self._active))
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._refresh)

        layout = QVBoxLayout(self)
        for w in (self.form.native, self.buttons.native, self.progress_bar, self.status.native, self.plot):
            layout.addWidget(w)
        layout.addStretch(1)
        self.status.native.setWordWrap(True)
        self.status.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        self.model_kind.changed.connect(self._on_kind_changed)
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
        # layers chosen by the user (in the GUI or by code) are never replaced by name guesses
        self._chosen_by_user: set[str] = set()
        self._guessing = False
        self.input_layer.changed.connect(lambda *_: self._mark_chosen("input"))
        self.target_layer.changed.connect(lambda *_: self._mark_chosen("target"))
        self.reset_choices()
        self._on_kind_changed(self.model_kind.value)

    def event(self, event) -> bool:
        """napari closes a dock widget by taking it out of its dock (parent -> None): a
        training that runs then is stopped cleanly (model saved, notification)."""
        if event.type() == QEvent.Type.ParentChange and self.parent() is None and self.running:
            self.stop()
            notify_info("The Train widget was closed, so training stops after the current step; "
                        "a notification will say where the model is saved.")
        return super().event(event)

    # ------------------------------------------------------------------ choices
    def _watch_name(self, event) -> None:
        event.value.events.name.connect(self.reset_choices)

    def _mark_chosen(self, which: str) -> None:
        if not self._guessing:
            self._chosen_by_user.add(which)

    def reset_choices(self, *_args) -> None:
        self._guessing = True
        try:
            self.form.reset_choices()
            self._guess_layers()
        finally:
            self._guessing = False

    def _guess_layers(self) -> None:
        """Pick sensible defaults from layer names (e.g. 'noisy' -> input, 'clean' -> target)."""
        layers = [layer for _, layer in layer_choices(self.viewer)]
        if not layers:
            return

        def find(hints):
            for layer in layers:
                if any(h in layer.name.lower() for h in hints):
                    return layer
            return None

        inp = self.input_layer
        if "input" not in self._chosen_by_user:
            guess = find(INPUT_HINTS)
            if guess is not None:
                inp.value = guess
            elif inp.value is None:
                inp.value = layers[0]
        tgt = self.target_layer
        if "target" not in self._chosen_by_user or tgt.value is inp.value:
            guess = find(TARGET_HINTS)
            others = [layer for layer in layers if layer is not inp.value]
            if guess is not None and guess is not inp.value:
                tgt.value = guess
            elif others and (tgt.value is None or tgt.value is inp.value):
                tgt.value = others[0]

    @property
    def kind(self) -> str:
        return self.model_kind.value

    def _on_kind_changed(self, kind: str) -> None:
        pix2pix = kind != STYLEGAN2
        self.input_layer.label = "Input" if pix2pix else "Images"
        for w in (self.target_layer, self.val_input_layer, self.val_target_layer, self.val_fraction,
                  self.adv_weight, self.gan_mode, self.depth, self.width, self.lr, self.patch, self.batch,
                  self.normalization):
            w.visible = pix2pix
        for w in (self.resolution, self.sg_batch, self.sg_size, self.augment):
            w.visible = not pix2pix
        if not self.running and str(self.out_dir.value) == str(self._auto_out):
            self._auto_out = default_run_folder(kind)      # the user's own folder is kept
            self.out_dir.value = self._auto_out

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self._trainer is not None

    def _set_running(self, running: bool) -> None:
        self.train_button.enabled = not running
        self.resume_button.enabled = not running
        self.stop_button.enabled = running
        self.model_kind.enabled = not running

    # ------------------------------------------------------------------ actions
    def start(self, resume: bool = False) -> bool:
        """Check every input, build the trainer and start it in a worker; False on bad input."""
        if self.running:
            notify_warning("A training run is already in progress; stop it first.")
            return False
        try:
            plan = self._plan_pix2pix(resume) if self.kind != STYLEGAN2 else self._plan_stylegan2(resume)
        except Exception as exc:  # noqa: BLE001 - every problem becomes a notification
            notify_error(user_message(exc, "Cannot start training"))
            return False
        self._plan, self._trainer = plan, plan.trainer
        self._active["trainer"] = plan.trainer
        self.last_event = None
        self.plot.reset()
        self.progress_bar.setValue(0)
        self.status.value = f"Starting: {plan.description}"
        self._set_running(True)
        self._pending_preview = None
        self._open_progress(plan)
        self._timer.start()
        self._worker = start_job(_train_job, plan.trainer, on_yield=self._on_event, on_finish=self._on_finish)
        return True

    def stop(self) -> None:
        if self._trainer is not None:
            self._trainer.request_stop()
            self.stop_button.enabled = False
            self.status.value = "Stopping after the current step; the model will be saved ..."

    # ------------------------------------------------------------------ planning
    def _common(self):
        from ..core.device import describe_device, resolve_device
        from ..core.training.base import Budget

        budget = Budget(steps=int(self.steps.value), minutes=float(self.minutes.value) or None)
        device = resolve_device(self.device.value)
        out = Path(self.out_dir.value).expanduser()
        if str(self.out_dir.value).strip() in ("", "."):
            raise InputError("Choose a folder to save the model in ('Save to').")
        return budget, device, describe_device(device), out

    def _check_folder(self, out: Path, resume: bool) -> Path:
        from ..core import checkpoint
        from ..core.io import check_writable

        state = out / checkpoint.STATE_FILENAME
        if resume and not state.is_file():
            raise InputError(f"Nothing to resume: '{out}' holds no saved training run "
                             f"({checkpoint.STATE_FILENAME}). Choose the run's folder in 'Save to'.")
        if not resume and state.exists():
            raise InputError(f"'{out}' already holds a training run; press Resume to continue it, "
                             "or choose another folder in 'Save to'.")
        if out.exists() and not out.is_dir():
            raise InputError(f"'{out}' is a file; choose a folder in 'Save to'.")
        check_writable(out / checkpoint.MODEL_FILENAME)
        return state

    def _planes(self, layer, role: str) -> tuple[np.ndarray, tuple]:
        from ..core.data import to_planes

        planes, lead = to_planes(layer_array(layer, role), 1, None, f"'{layer.name}' ({role})")
        return planes, lead

    def _plan_pix2pix(self, resume: bool) -> TrainingPlan:
        from ..core.data import PairedSet
        from ..core.families.pix2pix import Pix2PixConfig, Pix2PixTrainer, stored_config_and_norms

        task, scale = {PIX2PIX_DENOISE: ("denoise", 1), PIX2PIX_SR2: ("sr", 2), PIX2PIX_SR4: ("sr", 4)}[self.kind]
        inp_layer, tgt_layer = self.input_layer.value, self.target_layer.value
        x, _ = self._planes(inp_layer, "input")
        y, _ = self._planes(tgt_layer, "target")
        if inp_layer is tgt_layer:
            raise InputError("The input and the target are the same layer; choose the clean or "
                             "high-resolution image as the target.")
        budget, device, device_name, out = self._common()
        state = self._check_folder(out, resume)
        norms = (None, None)
        if resume:
            cfg, *norms = stored_config_and_norms(state)
            if (cfg.task, cfg.scale) != (task, scale):
                stored = "denoising" if cfg.task == "denoise" else f"super-resolution x{cfg.scale}"
                raise InputError(f"The run in '{out}' is Pix2Pix {stored}; choose that model kind to resume it.")
        else:
            cfg = Pix2PixConfig(task=task, scale=scale, patch=int(self.patch.value), batch=int(self.batch.value),
                                width=int(self.width.value), depth=int(self.depth.value),
                                adv_weight=float(self.adv_weight.value), gan_mode=self.gan_mode.value,
                                lr=float(self.lr.value), lr_d=float(self.lr.value),
                                val_fraction=float(self.val_fraction.value))
        names = [f"'{inp_layer.name}'" + (f" plane {i + 1}" if len(x) > 1 else "") for i in range(len(x))]
        data = PairedSet.build(list(x), list(y), cfg.scale, names, *norms, min_size=MIN_TRAIN_SIZE,
                               normalization=self.normalization.value)
        val_data, origin_layer = None, inp_layer
        vin, vtg = self.val_input_layer.value, self.val_target_layer.value
        if (vin is None) != (vtg is None):
            raise InputError("Choose both a validation input and a validation target, or neither.")
        if vin is not None:
            vx, _ = self._planes(vin, "validation input")
            vy, _ = self._planes(vtg, "validation target")
            val_data = PairedSet.build(list(vx), list(vy), cfg.scale, [f"'{vin.name}'"] * len(vx),
                                       data.input_norm, data.target_norm, min_size=MIN_TRAIN_SIZE)
            origin_layer = vin
        trainer = Pix2PixTrainer(cfg, data, out, budget, device, int(self.seed.value), val_data=val_data,
                                 log_every=int(self.log_every.value), val_every=int(self.preview_every.value))
        if resume:
            trainer.resume_from(out)
            self._check_not_finished(trainer, budget, out)
        if trainer.val_data is None:
            notify_warning("The images are too small to hold out a validation region, so the metrics and "
                           "the preview come from training crops; choose validation layers or larger images.")
        row_offset = trainer.preview_origin[0]
        scale_, translate = upscaled_placement(origin_layer, cfg.scale, ndim=2)
        translate[0] += row_offset * np.asarray(origin_layer.scale, float)[-2]
        what = "denoising" if task == "denoise" else f"super-resolution x{scale}"
        return TrainingPlan(
            trainer=trainer, kind=self.kind,
            description=(f"Pix2Pix {what} on {len(data.inputs)} image(s) of '{inp_layer.name}', "
                         f"{device_name}, from step {trainer.step}"),
            preview_name=f"{inp_layer.name}{PREVIEW_SUFFIX}", preview_scale=scale_,
            preview_translate=translate,
            preview_contrast=tuple(tgt_layer.contrast_limits) if tgt_layer is not None else None,
            metric_names=[f"{trainer.val_prefix}_psnr", f"{trainer.val_prefix}_ssim"], loss_names=["l1", "d", "g_adv"])

    def _plan_stylegan2(self, resume: bool) -> TrainingPlan:
        from ..core.families.stylegan2 import (
            ImageSet, StyleGAN2Config, StyleGAN2Trainer, stored_config_and_norm,
        )

        layer = self.input_layer.value
        planes, _ = self._planes(layer, "images")
        budget, device, device_name, out = self._common()
        state = self._check_folder(out, resume)
        norm = None
        if resume:
            cfg, norm = stored_config_and_norm(state)
        else:
            size = self.sg_size.value
            if size == "auto":
                size = "small" if device.type == "cpu" else "full"
            cfg = StyleGAN2Config(resolution=int(self.resolution.value), size=size,
                                  batch=int(self.sg_batch.value) or None, augment=self.augment.value)
        names = [f"'{layer.name}'" + (f" plane {i + 1}" if len(planes) > 1 else "") for i in range(len(planes))]
        data = ImageSet.build(list(planes), cfg.resolution, names, norm)
        trainer = StyleGAN2Trainer(cfg, data, out, budget, device, int(self.seed.value),
                                   log_every=int(self.log_every.value), val_every=int(self.preview_every.value))
        if resume:
            trainer.resume_from(out)
            self._check_not_finished(trainer, budget, out)
        scale = list(np.asarray(layer.scale, float)[-2:])
        return TrainingPlan(
            trainer=trainer, kind=self.kind,
            description=(f"StyleGAN2 {cfg.resolution}x{cfg.resolution} ({cfg.size}, batch {cfg.batch}) on "
                         f"{len(planes)} image(s) of '{layer.name}', {device_name}, from step {trainer.step}"),
            preview_name=f"{layer.name} samples{PREVIEW_SUFFIX}", preview_scale=scale,
            preview_translate=[0.0, 0.0], preview_contrast=tuple(layer.contrast_limits),
            metric_names=["swd"], loss_names=["g", "d", "r1", "pl"], status_names=["kimg", "aug_p"])

    def _check_not_finished(self, trainer, budget, out: Path) -> None:
        if budget.steps is not None and trainer.step >= budget.steps:
            raise InputError(f"The run in '{out}' already reached step {trainer.step}; raise 'Steps' "
                             "above that to train further.")

    # ------------------------------------------------------------------ progress
    def _open_progress(self, plan: TrainingPlan) -> None:
        from napari.utils import progress

        self._pbar = progress(total=PROGRESS_TOTAL, desc=f"napari-gan: training {plan.kind}")

    def _close_progress(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None

    def _on_event(self, event) -> None:
        """Record an event; the display catches up in :meth:`_refresh` (a few times a second),
        so a fast trainer never floods the GUI thread."""
        self.last_event = event
        plan = self._plan
        losses = {k: v for k, v in event.losses.items() if k in plan.loss_names}
        metrics = {k: v for k, v in event.metrics.items() if k in plan.metric_names}
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
        plan = self._plan
        parts += [f"{k} {event.losses[k]:.3g}" for k in plan.status_names if k in event.losses]
        parts += [f"{k} {v:.4g}" for k, v in event.metrics.items() if k in plan.metric_names]
        self.status.value = " | ".join(parts)
        self.plot.redraw()
        if self._pending_preview is not None:
            preview, self._pending_preview = self._pending_preview, None
            self._show_preview(preview)
        pbar = self._pbar   # last: napari's activity dock processes pending events on update
        if pbar is not None and done > pbar.n:
            pbar.set_description(f"napari-gan: training, step {event.step}")
            pbar.update(done - pbar.n)

    def _show_preview(self, preview: np.ndarray) -> None:
        plan = self._plan
        layer = self._preview_layer
        if layer is None or layer not in self.viewer.layers:
            kwargs = {"name": plan.preview_name, "metadata": {"napari_gan_preview": True}, "colormap": "gray"}
            if plan.preview_scale is not None and preview.ndim == len(plan.preview_scale):
                kwargs.update(scale=plan.preview_scale, translate=plan.preview_translate)
            kwargs["contrast_limits"] = plan.preview_contrast or contrast_limits(preview)
            self._preview_layer = self.viewer.add_image(preview, **kwargs)
        else:
            layer.data = preview

    def _on_finish(self, result) -> None:
        self._timer.stop()
        pbar, self._pbar = self._pbar, None
        self._refresh()
        self._pbar = pbar
        self._close_progress()
        self._trainer, self._worker = None, None
        self._active["trainer"] = None
        self._set_running(False)
        event = self.last_event
        if isinstance(result, Failure):
            where = f" Model files saved so far are kept in '{self.out_dir.value}'."
            message = user_message(result.error, "Training failed")
            notify_error(message + where)
            self.status.value = message
            return
        if event is None or event.kind != "done":
            return
        self.last_result = dict(event.paths)
        best = event.paths.get("best", "")
        how = "stopped" if event.message == "stopped" else "finished"
        self.status.value = f"{self.status.value}\nTraining {how} at step {event.step}. Model: {best}"
        notify_info(f"Training {how} at step {event.step}; the model is saved in '{best}' "
                    f"(resume with the Resume button, folder '{Path(best).parent}').")


def _stop_active(active: dict, *_args) -> None:
    trainer = active.get("trainer")
    if trainer is not None:
        trainer.request_stop()


def _train_job(trainer):
    """The worker: forward every event of the trainer to the GUI thread."""
    yield from trainer.run()
    return "done"

