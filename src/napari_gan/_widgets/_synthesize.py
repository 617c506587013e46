"""The "Synthetic Data Set" dock widget: ``napari-gan synthesize`` from napari.

With a Pix2Pix model of images from label images (task "labels") and a layer of training
masks, it writes N (mask, image) pairs to a folder, ready for a segmentation tool:
FOLDER/masks/synthetic_0001.tif (uint16) and FOLDER/images/synthetic_0001.tif (float32),
the file names and formats of the command line. Each mask places the training masks'
objects at random positions, rotated, flipped and deformed
(:func:`..core.labels.synthetic_masks`); the model makes its image. The work runs in a
napari thread worker with progress and Cancel (pairs already written stay, whole); files
napari-gan did not write are never replaced. The pairs can also be shown as two layers.
The masks have the size of the first training mask, or another H x W (``--shape H W``).

It is a widget of its own, not a section of Generate Data or Project Image, because it
takes a different model (Pix2Pix, task labels) and writes a folder rather than a layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, SpinBox
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from ..cli.project import SYNTH_SIDES
from ._common import (
    InputError, contrast_limits, device_choices, image_layer_data, is_labels_layer, layer_choices, notify_error,
    notify_info, physical_pixel_size, read_model, refresh_choices, spatial_scale, user_message,
)
from ._fields import align_labels
from ._workers import Failure, JobControls

if TYPE_CHECKING:
    import napari


@dataclass
class SynthesizeRequest:
    family: Any
    header: Any
    device: str
    masks: Any                    # the layer's array (2-D, or a stack of masks), read in the worker
    name: str
    n: int
    seed: int
    elastic: float
    folder: Path
    pixel_size: dict
    unit: str | None
    shape: tuple[int, int] | None   # of the synthetic masks; None: that of the first mask
    keep: bool                    # return the pairs to show them as layers
    source: str | None = None     # the masks layer's own file (never written)


@dataclass
class Synthesized:
    masks: list
    images: list
    folder: Path
    written: int
    cancelled: bool = False


class SynthesizeWidget(QWidget):
    """Dock widget: a Pix2Pix labels model + training masks -> N (mask, image) pairs in a folder."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._request: SynthesizeRequest | None = None
        self._scale = None
        self.last_result: Synthesized | None = None

        self.model_path = FileEdit(label="Model", mode="r", filter="napari-gan model (*.safetensors)",
                                   tooltip="A Pix2Pix model trained with the task 'labels' (or its run folder)")
        self.model_info = Label(value="Choose a Pix2Pix model of images from label images.")
        self.masks_layer = ComboBox(label="Masks",
                                    choices=lambda _w: layer_choices(self.viewer, labels_first=True),
                                    tooltip="Label images whose objects are placed (e.g. the training masks): "
                                            "a Labels layer or an integer image, one mask or a stack")
        self.same_size = CheckBox(text="Same size as the masks", value=True,
                                  tooltip="Untick to choose the size of the synthetic masks and images "
                                          "(as 'napari-gan synthesize --shape H W')")
        self.height = SpinBox(label="Height", min=1, max=SYNTH_SIDES[1], value=256, tooltip="Pixels")
        self.width = SpinBox(label="Width", min=1, max=SYNTH_SIDES[1], value=256, tooltip="Pixels")
        self.size_box = Container(widgets=[self.height, self.width], visible=False)
        self.n = SpinBox(label="Number of pairs", min=1, max=100_000, value=16)
        self.seed = SpinBox(label="Seed", min=0, max=2**31 - 1, value=0,
                            tooltip="The same seed gives the same data set (as 'napari-gan synthesize --seed')")
        self.elastic = FloatSpinBox(label="Deformation", min=0.0, max=1.0, step=0.05, value=0.15,
                                    tooltip="Strength of the elastic deformation of each object, as a fraction "
                                            "of its size")
        self.device = ComboBox(label="Device", choices=device_choices(), value="auto")
        self.folder = FileEdit(label="Save to", mode="d",
                               tooltip="Folder for masks/ and images/ (synthetic_0001.tif, ...)")
        self.show_layers = CheckBox(text="Also show the pairs as layers", value=True)
        top = Container(widgets=[self.model_path, self.model_info, self.masks_layer])
        bottom = Container(widgets=[self.n, self.seed, self.elastic, self.device, self.folder])
        labelled = [top, self.size_box, bottom]
        for c in labelled:
            c.margins = (0, 0, 0, 0)
        align_labels(*labelled)
        self.form = Container(labels=False, widgets=[top, self.same_size, self.size_box, bottom, self.show_layers])
        self.job = JobControls("Write data set")
        self.run_button, self.cancel_button, self.status = self.job.run_button, self.job.cancel_button, self.job.status
        layout = QVBoxLayout(self)
        for w in (self.form.native, *self.job.natives):
            layout.addWidget(w)
        layout.addStretch(1)
        self.model_info.native.setWordWrap(True)
        self.model_info.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        self.model_path.changed.connect(self._detect)
        self.same_size.changed.connect(lambda v: setattr(self.size_box, "visible", not v))
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.job.relay.progressed.connect(self._on_progress)
        self.destroyed.connect(lambda *_args, cancel=self.job.cancel_requested: cancel.set())
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self.reset_choices)

    @property
    def running(self) -> bool:
        return self.job.running

    def reset_choices(self, *_args) -> None:
        """New layers: Labels layers stay first, and a Labels layer replaces an image as the masks."""
        refresh_choices(self.masks_layer)
        labels = [layer for layer in self.masks_layer.choices if is_labels_layer(layer)]
        if labels and not is_labels_layer(self.masks_layer.value):
            self.masks_layer.value = labels[0]

    # ------------------------------------------------------------------ the model
    def _read_model(self):
        from ..core.families import stored_config

        header, family = read_model(self.model_path.value)
        if stored_config(header).get("task") != "labels":
            raise InputError(f"'{header.path}' is a model of {family.describe(header)}; a synthetic data set "
                             "needs a Pix2Pix model trained with the task 'labels' (images from label images).")
        return header, family

    def _detect(self, *_args) -> None:
        try:
            header, family = self._read_model()
        except Exception as exc:  # noqa: BLE001 - shown in the info line; the button notifies
            self.model_info.value = user_message(exc)
            return
        self.model_info.value = family.describe(header)

    # ------------------------------------------------------------------ actions
    def run(self, *_args) -> bool:
        if self.job.running:
            return False
        try:
            request = self._gather()
        except Exception as exc:  # noqa: BLE001 - every problem becomes a notification
            notify_error(user_message(exc, "Cannot make the data set"))
            return False
        self._request = request
        self._scale = spatial_scale(self.masks_layer.value)
        self.job.start(_synthesize_job, request, request.n, self._on_finish)
        return True

    def cancel(self, *_args) -> None:
        self.job.cancel("Cancelling after the current pair ...")

    def _gather(self) -> SynthesizeRequest:
        header, family = self._read_model()
        self._detect()
        layer = self.masks_layer.value
        masks = image_layer_data(layer, "masks", labels=True)
        if masks.ndim not in (2, 3):
            raise InputError(f"'{layer.name}' has shape {tuple(masks.shape)}; the masks must be one label image "
                             "(Y, X) or a stack of them (N, Y, X).")
        if isinstance(masks, np.ndarray) and not masks.any():
            raise InputError(f"'{layer.name}' has no objects (every pixel is 0, background); synthetic masks "
                             "need objects to place.")
        text = str(self.folder.line_edit.value).strip()
        if text in ("", "."):
            raise InputError("Choose a folder for the data set ('Save to').")
        folder = Path(text).expanduser()
        if folder.suffix.lower() in (".tif", ".tiff") or folder.is_file():
            raise InputError(f"'Save to' '{folder}' must be a folder (it gets masks/ and images/).")
        pixel_size, unit = physical_pixel_size(layer, "YX" if masks.ndim == 2 else "ZYX")
        pixel_size = {k: v for k, v in pixel_size.items() if k in "YX"}
        return SynthesizeRequest(family, header, self.device.value, masks, layer.name, int(self.n.value),
                                 int(self.seed.value), float(self.elastic.value), folder, pixel_size, unit,
                                 self._shape(), bool(self.show_layers.value),
                                 getattr(getattr(layer, "source", None), "path", None))

    def _shape(self) -> tuple[int, int] | None:
        """The chosen size of the synthetic masks (None: the masks' own), in the command line's range."""
        if self.same_size.value:
            return None
        shape = (int(self.height.value), int(self.width.value))
        low, high = SYNTH_SIDES
        if min(shape) < low or max(shape) > high:
            raise InputError(f"The size of the synthetic masks must be from {low} to {high} pixels per side, "
                             f"not {shape[0]} x {shape[1]}; change Height and Width, or tick 'Same size as "
                             "the masks'.")
        return shape

    # ------------------------------------------------------------------ results
    def _on_progress(self, done: int, total: int) -> None:
        self.job.show_progress(done, total)
        self.status.value = f"{done}/{total} pairs written"

    def _on_finish(self, result) -> None:
        if isinstance(result, Failure):
            self.status.value = user_message(result.error, "Synthetic data set failed")
            notify_error(self.status.value + " Pairs written before the problem are kept.")
            return
        self.last_result = result
        how = "Cancelled" if result.cancelled else "Done"
        self.status.value = f"{how}: {result.written} pair(s) written to '{result.folder}' (masks/ and images/)."
        notify_info(self.status.value)
        if result.masks:
            self._show(result)

    def _show(self, result: Synthesized) -> None:
        scale, translate = self._scale
        place = {"scale": [1.0] + list(scale[-2:]), "translate": [0.0] + list(translate[-2:])}
        masks, images = np.stack(result.masks), np.stack(result.images)
        self.viewer.add_image(images, name=f"synthetic images ({self._request.name})", colormap="gray",
                              contrast_limits=contrast_limits(images), **place)
        self.viewer.add_labels(masks, name=f"synthetic masks ({self._request.name})", **place)


def _mask_planes(masks) -> list[np.ndarray]:
    array = np.asarray(masks)
    return [array] if array.ndim == 2 else list(array)


def _synthesize_job(request: SynthesizeRequest, cancel, relay):
    """Worker: check every output, load the model, then one pair at a time (the masks drawn
    from one random stream of the seed, as ``napari-gan synthesize`` draws them)."""
    from ..cli.apply import _check_finite, model_files
    from ..cli.project import SYNTH_NAME
    from ..core.axes import AxesImage, write_image
    from ..core.io import check_output
    from ..core.labels import synthetic_masks

    names = [SYNTH_NAME.format(i + 1) for i in range(request.n)]
    protected = model_files(request.header.path)
    if request.source:
        protected.append((request.source, f"the file of the layer '{request.name}'"))
    for name in names:
        check_output(request.folder / "masks" / name, protected)
        check_output(request.folder / "images" / name, protected)
    predictor = request.family.load_applier(request.header, request.device)
    planes = _mask_planes(request.masks)
    rng = np.random.default_rng(request.seed)
    yield f"Writing {request.n} pair(s) on {predictor.device_name} ..."
    kept_masks, kept_images = [], []
    for i, name in enumerate(names):
        if cancel():
            return Synthesized(kept_masks, kept_images, request.folder, i, cancelled=True)
        (mask,) = synthetic_masks(planes, 1, request.shape, rng, classes=predictor.label_classes,
                                  elastic=request.elastic)
        image = predictor.predict_plane(mask[None])
        _check_finite(image, f"synthetic mask {i + 1}", request.header.path)
        data = image[0] if image.shape[0] == 1 else image
        write_image(request.folder / "masks" / name, AxesImage(mask, "YX", dict(request.pixel_size), request.unit))
        write_image(request.folder / "images" / name,
                    AxesImage(data, "YX" if data.ndim == 2 else "CYX", dict(request.pixel_size), request.unit))
        if request.keep:
            kept_masks.append(mask)
            kept_images.append(data)
        relay.progressed.emit(i + 1, request.n)
    return Synthesized(kept_masks, kept_images, request.folder, request.n)
