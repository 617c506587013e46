"""The "Project Image" dock widget: the latent with which a StyleGAN2 model reproduces an
image layer (``napari-gan project`` from napari).

The user picks a StyleGAN2 model and an image layer of the model's resolution (one image,
or a stack of them: each is projected); the projection (:func:`..core.projection.project`)
runs in a napari thread worker with progress and Cancel. The reproduced image becomes a
layer on top of the input, the latents (per-layer styles, ``.npy``, as the command line
writes them) are saved when a file is given, and for a stack a morph through the projected
images in order can be added as a sequence layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, SpinBox
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from ._common import (
    InputError, device_choices, image_layer_data, layer_choices, notify_error, notify_info,
    read_model, report_failure, spatial_scale, user_message,
)
from ._fields import SettingFields, align_labels
from ._workers import Failure, JobControls

if TYPE_CHECKING:
    import napari

AVERAGE_CLASS = "average of all classes"


@dataclass
class ProjectRequest:
    """What the worker needs, gathered (and cheaply checked) on the GUI thread."""

    family: Any
    header: Any
    device: str
    data: Any                     # the layer's array, read in the worker
    how: Any                      # ProjectSettings
    class_name: str | None
    latents_path: Path | None
    frames: int | None            # a morph through the projected images: frames per step


@dataclass
class Projected:
    reconstruction: np.ndarray
    psnr: list
    sequence: np.ndarray | None


class ProjectWidget(QWidget):
    """Dock widget: choose a StyleGAN2 model and an image layer, then Project."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent: QWidget | None = None):
        from ..core.projection import ProjectSettings

        super().__init__(parent)
        self.viewer = napari_viewer
        self._request: ProjectRequest | None = None
        self._layer = None
        self.header = None
        self.last_layer = None
        self.last_sequence = None

        self.model_path = FileEdit(label="Model", mode="r", filter="napari-gan model (*.safetensors)",
                                   tooltip="A StyleGAN2 model.safetensors file, or its training run folder")
        self.model_info = Label(value="Choose a StyleGAN2 model file or a run folder.")
        self.image_layer = ComboBox(label="Image", choices=lambda _w: layer_choices(self.viewer), nullable=True,
                                    tooltip="One image of the model's resolution, or a stack of them (each is "
                                            "projected)")
        self.class_names: list[str] = []      # of the chosen model (class-conditional models)
        self.class_name = ComboBox(label="Class", choices=self._class_choices, value=None, visible=False,
                                   tooltip="Class-conditional models: the class of the image (the projection "
                                           "starts from that class's average)")
        self.settings = SettingFields(ProjectSettings)
        self.device = ComboBox(label="Device", choices=device_choices(), value="auto")
        self.morph = CheckBox(text="Morph through the projected images (a stack of 2 or more)", value=False)
        self.frames = SpinBox(label="Frames per step", min=2, max=10_000, value=30, visible=False,
                              tooltip="Frames of the sequence from one projected image to the next")
        self.latents_path = FileEdit(label="Save latents to", mode="w", filter="NumPy array (*.npy)",
                                     tooltip="Optional: a .npy file for the latents (per-layer styles, as "
                                             "'napari-gan project' writes them; 'napari-gan generate --latents' "
                                             "makes the images again)")
        self.show_advanced = CheckBox(text="Show advanced settings", value=False)
        self.settings.advanced.visible = False
        top = Container(widgets=[self.model_path, self.model_info, self.image_layer, self.class_name])
        bottom = Container(widgets=[self.frames, self.device, self.latents_path])
        labelled = [top, self.settings.basic, bottom, self.settings.advanced]
        self.form = Container(labels=False, widgets=[top, self.settings.basic, self.morph, bottom,
                                                      self.show_advanced, self.settings.advanced])
        for c in labelled:
            c.margins = (0, 0, 0, 0)
        align_labels(*labelled)

        self.job = JobControls("Project")
        self.run_button, self.cancel_button, self.status = self.job.run_button, self.job.cancel_button, self.job.status
        layout = QVBoxLayout(self)
        for w in (self.form.native, *self.job.natives):
            layout.addWidget(w)
        layout.addStretch(1)
        self.model_info.native.setWordWrap(True)
        self.model_info.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        self.model_path.changed.connect(self._detect)
        self.morph.changed.connect(lambda v: setattr(self.frames, "visible", bool(v)))
        self.show_advanced.changed.connect(lambda v: setattr(self.settings.advanced, "visible", bool(v)))
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.job.relay.progressed.connect(self.job.show_progress)
        self.destroyed.connect(lambda *_args, cancel=self.job.cancel_requested: cancel.set())   # closed: stop work
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self.reset_choices)

    # ------------------------------------------------------------------ access
    def field(self, name: str):
        """The widget of a projection setting, by its declared name."""
        return self.settings.widget(name)

    @property
    def running(self) -> bool:
        return self.job.running

    def reset_choices(self, *_args) -> None:
        self.form.reset_choices()

    # ------------------------------------------------------------------ the model
    def _read_model(self):
        header, family = read_model(self.model_path.value)
        if family.apply_mode != "noise":
            raise InputError(f"'{header.path}' is a model of {family.describe(header)}; projection needs a "
                             "StyleGAN2 model (one that generates images).")
        return header, family

    def _detect(self, *_args) -> None:
        """Show what the chosen file is and, for a class-conditional model, its classes."""
        from ..core.families import stored_config

        try:
            header, family = self._read_model()
        except Exception as exc:  # noqa: BLE001 - shown in the info line; Project notifies
            self.header = None
            self.model_info.value = user_message(exc)
            self._show_classes([])
            return
        self.header = header
        stored = stored_config(header)
        self.model_info.value = f"{family.describe(header)}: images of {stored.get('resolution')}x" \
                                f"{stored.get('resolution')} pixels are projected"
        self._show_classes([str(n) for n in (stored.get("class_names") or [])])

    def _class_choices(self, _widget=None) -> list[tuple[str, str | None]]:
        return [(AVERAGE_CLASS, None)] + [(n, n) for n in self.class_names]

    def _show_classes(self, names: list[str]) -> None:
        kept = self.class_name.value if self.class_name.value in names else None
        self.class_names = names
        self.class_name.reset_choices()
        self.class_name.value = kept
        self.class_name.visible = bool(names)

    # ------------------------------------------------------------------ actions
    def run(self, *_args) -> bool:
        """Check the inputs (cheaply), then start the projection; False on bad input."""
        if self.job.running:
            return False
        try:
            request = self._gather()
        except Exception as exc:  # noqa: BLE001 - every problem becomes a notification
            notify_error(user_message(exc, "Cannot project"))
            return False
        self._request, self._layer = request, self.image_layer.value
        self.job.start(_project_job, request, 0, self._on_finish)
        return True

    def cancel(self, *_args) -> None:
        self.job.cancel()

    def _gather(self) -> ProjectRequest:
        from ..core.families import stored_config
        from ..core.projection import ProjectSettings

        header, family = self._read_model()
        self._detect()
        stored = stored_config(header)
        resolution, channels = int(stored.get("resolution", 0)), int(stored.get("channels", 1))
        layer = self.image_layer.value
        data = image_layer_data(layer, "image to project", grayscale=channels == 1)
        count = _check_shape(layer.name, tuple(data.shape), resolution, channels)
        how = ProjectSettings(**self.settings.values())       # a clear error for a bad value
        frames = int(self.frames.value) if self.morph.value else None
        if frames is not None and count < 2:
            raise InputError(f"'{layer.name}' holds one image; a morph needs a stack of at least 2 images to "
                             "morph between (untick the morph, or stack images: select layers > right-click > "
                             "Merge to Stack).")
        class_name = self.class_name.value if self.class_names else None
        return ProjectRequest(family, header, self.device.value, data, how, class_name,
                              self._latents_target(header, layer), frames)

    def _latents_target(self, header, layer) -> Path | None:
        """The checked .npy file for the latents (None: not saved); never the model's files or
        the layer's own file, and only a latents file napari-gan could have written is replaced."""
        from ..cli.apply import LATENT_SUFFIXES, model_files
        from ..cli.project import is_styles_file
        from ..core.io import check_output

        text = str(self.latents_path.line_edit.value).strip()
        if text in ("", "."):
            return None
        protected = model_files(header.path)
        source = getattr(getattr(layer, "source", None), "path", None)
        if source:
            protected.append((source, f"the file of the layer '{layer.name}'"))
        return check_output(Path(text).expanduser(), protected, LATENT_SUFFIXES, "'Save latents to'",
                            replace=is_styles_file)

    # ------------------------------------------------------------------ results
    def _on_finish(self, result) -> None:
        self.job.idle_progress()
        if isinstance(result, Failure):
            report_failure(self.status, result.error, "Projection", "no layer was added and nothing was saved")
            return
        self.job.progress_bar.setValue(1)
        self._add_layers(result)

    def _add_layers(self, result: Projected) -> None:
        layer, request = self._layer, self._request
        scale, translate = spatial_scale(layer)
        contrast = tuple(layer.contrast_limits)
        metadata = {"napari_gan_model": str(request.header.path), "psnr": result.psnr,
                    "latents": str(request.latents_path) if request.latents_path else None}
        self.last_layer = self.viewer.add_image(result.reconstruction, name=f"{layer.name} projected",
                                                scale=list(scale), translate=list(translate), colormap="gray",
                                                contrast_limits=contrast, metadata=metadata)
        message = (f"Added '{self.last_layer.name}' (reconstruction PSNR "
                   + ", ".join(f"{p:.1f}" for p in result.psnr) + " dB)")
        if result.sequence is not None:
            self.last_sequence = self.viewer.add_image(
                result.sequence, name=f"{layer.name} morph", scale=[1.0] + list(scale[-2:]),
                translate=[0.0] + list(translate[-2:]), colormap="gray", contrast_limits=contrast,
                metadata=dict(metadata))
            message += f" and '{self.last_sequence.name}' ({len(result.sequence)} frames)"
        if request.latents_path is not None:
            message += f"; latents saved to '{request.latents_path}'"
            notify_info(f"Latents saved to '{request.latents_path}'.")
        self.status.value = message + "."


def _check_shape(name: str, shape: tuple[int, ...], resolution: int, channels: int) -> int:
    """The number of images in a layer of ``shape`` for a model of ``resolution`` and
    ``channels``, or one clear error."""
    if shape[-2:] != (resolution, resolution):
        raise InputError(f"'{name}' is {shape[-2]}x{shape[-1]} pixels but the model makes {resolution}x"
                         f"{resolution} images; crop a {resolution}x{resolution} region (e.g. around one cell) "
                         "to project.")
    base = 2 if channels == 1 else 3
    if len(shape) not in (base, base + 1) or (channels > 1 and shape[-3] != channels):
        want = "(Y, X) or a stack (N, Y, X)" if channels == 1 else f"({channels}, Y, X) or (N, {channels}, Y, X)"
        raise InputError(f"'{name}' has shape {shape}; this model projects images of shape {want}.")
    return 1 if len(shape) == base else shape[0]


def _project_job(request: ProjectRequest, cancel, relay):
    """Worker: load the model, project, check, save the latents, make the morph."""
    from ..cli.apply import _check_finite, _write_latents
    from ..core.projection import morph_latents, project

    generator = request.family.load_applier(request.header, request.device)
    if request.class_name is not None:
        generator.class_index(request.class_name)   # the known classes, before any work
    images = np.asarray(request.data, np.float32)
    yield f"Projecting ({request.how.steps} steps) on {generator.device_name} ..."
    result = project(generator, images, request.how, request.class_name,
                     progress=lambda step, total, _loss: relay.progressed.emit(step, total), cancel=cancel)
    if cancel():
        raise InterruptedError("projection cancelled")
    model = request.header.path
    _check_finite(result.reconstruction, "the projected image", model)
    sequence = None
    if request.frames is not None:
        yield "Making the morph ..."
        sequence = generator.generate_from_latents(morph_latents(generator, result.styles, request.frames),
                                                   1.0, request.class_name)
        _check_finite(sequence, "the morph", model)
    if request.latents_path is not None:
        yield f"Writing '{request.latents_path}' ..."
        _write_latents(request.latents_path, result.styles)
    return Projected(result.reconstruction, result.psnr, sequence)
