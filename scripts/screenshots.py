"""Screenshots of the napari widgets in use, for the docs (run under a virtual display):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

Opens a real napari viewer, loads the built-in sample data, trains through the widgets'
own buttons (short runs on the CPU), applies the models with Generate Data, Project Image
and Synthetic Data Set and saves docs/images/widget_*.png. Models go to a temporary folder
(or --work: a later ``--only project synthesize`` with the same --work reuses its StyleGAN2
and labels models instead of training them again).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
SHOTS = ("pix2pix", "stylegan2", "project", "synthesize")
NUCLEI_RESOLUTION = 32          # of the StyleGAN2 model of the nuclei sample (64x64 images)


def wait(widget, timeout: float = 900.0) -> None:
    from qtpy.QtWidgets import QApplication

    t0 = time.time()
    while widget.running:
        QApplication.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > timeout:
            raise TimeoutError("the widget did not finish in time")
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)


def wait_until(condition, timeout: float = 900.0) -> None:
    from qtpy.QtWidgets import QApplication

    t0 = time.time()
    while not condition():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > timeout:
            raise TimeoutError("condition not reached in time")


def activity_dock(viewer, visible: bool) -> None:
    """Show napari's activity dock (its progress bars); private API, so best effort."""
    try:
        viewer.window._status_bar._toggle_activity_dock(visible)
    except AttributeError:
        pass


def settle(seconds: float = 0.5) -> None:
    from qtpy.QtWidgets import QApplication

    t0 = time.time()
    while time.time() - t0 < seconds:
        QApplication.processEvents()
        time.sleep(0.02)


def shot(viewer, name: str) -> Path:
    from skimage.io import imsave

    settle()
    path = OUT / name
    imsave(path, viewer.screenshot(canvas_only=False, flash=False), check_contrast=False)
    print(f"wrote {path.relative_to(ROOT)}", flush=True)
    return path


def pix2pix(viewer, work: Path, steps: int) -> None:
    viewer.open_sample("napari-gan", "noisy_clean")
    dock, train = viewer.window.add_plugin_dock_widget("napari-gan", "Train")
    train.field("steps").value = steps
    train.field("patch").value = 64
    train.field("batch").value = 4
    train.field("width").value = 16
    train.field("val_every").value = max(10, steps // 6)
    train.field("log_every").value = 5
    train.device.value = "cpu"
    train.out_dir.value = str(work / "denoise")
    train.train_button.native.click()
    # mid-training: progress (widget and activity dock), live plot, preview on the held-out rows
    wait_until(lambda: train.last_event is not None and train.last_event.fraction >= 0.7
               and "noisy preview" in viewer.layers)
    viewer.layers["clean"].visible = False
    viewer.layers.selection.active = viewer.layers["noisy preview"]
    viewer.reset_view()                  # the preview lies on the held-out bottom rows
    activity_dock(viewer, True)
    shot(viewer, "widget_train.png")
    activity_dock(viewer, False)
    wait(train)

    viewer.window.remove_dock_widget(dock)
    _, gen = viewer.window.add_plugin_dock_widget("napari-gan", "Generate Data")
    gen.model_path.value = work / "denoise"
    gen.input_layer.value = viewer.layers["noisy"]
    gen.device.value = "cpu"
    gen.run_button.native.click()
    wait(gen)
    viewer.layers.remove(viewer.layers["noisy preview"])
    viewer.layers["clean"].visible = True
    # grid order follows the layer list from the bottom: noisy | denoised | clean
    viewer.layers.move(viewer.layers.index(viewer.layers["clean"]), len(viewer.layers))
    viewer.canvas.grid.enabled = True
    viewer.canvas.grid.shape = (1, 3)
    viewer.reset_view()
    shot(viewer, "widget_generate.png")
    viewer.canvas.grid.enabled = False


def clear(viewer) -> None:
    """No layers, no dock widgets: the start of a new scene."""
    viewer.layers.clear()
    viewer.canvas.grid.enabled = False
    for dock in list(viewer.window.dock_widgets.values()):
        viewer.window.remove_dock_widget(dock)


def train_nuclei(viewer, work: Path, steps: int):
    """Train StyleGAN2 on the 'nuclei' layer through the Train widget, into work/nuclei; the
    widget's dock stays."""
    dock, train = viewer.window.add_plugin_dock_widget("napari-gan", "Train")
    train.model.value = "stylegan2"
    train.field("resolution").value = NUCLEI_RESOLUTION
    train.field("batch").value = 8
    train.field("steps").value = steps
    train.field("val_every").value = max(10, steps // 5)
    train.field("log_every").value = 5
    train.device.value = "cpu"
    train.out_dir.value = str(work / "nuclei")
    train.train_button.native.click()
    wait(train)
    return dock


def stylegan2(viewer, work: Path, steps: int) -> None:
    clear(viewer)
    viewer.open_sample("napari-gan", "nuclei")
    dock = train_nuclei(viewer, work, steps)
    viewer.layers["nuclei"].visible = False
    viewer.reset_view()
    shot(viewer, "widget_train_stylegan2.png")

    viewer.window.remove_dock_widget(dock)
    _, gen = viewer.window.add_plugin_dock_widget("napari-gan", "Generate Data")
    gen.model_path.value = work / "nuclei"
    gen.field("n").value = 16
    gen.field("seed").value = 1
    gen.field("truncation").value = 0.8
    gen.device.value = "cpu"
    gen.run_button.native.click()
    wait(gen)
    # show the generated stack alone, its first image filling the canvas (the other layers
    # are only hidden: removing layers before a screenshot crashes Mesa's software GL here)
    for name in ("nuclei samples preview", "nuclei"):
        viewer.layers[name].visible = False
    viewer.dims.set_point(0, 0)
    size = gen.last_layer.data.shape[-1]
    viewer.reset_view()
    settle()                             # reset_view completes asynchronously
    viewer.scene.camera.center = ((size - 1) / 2, (size - 1) / 2)
    viewer.scene.camera.zoom *= viewer.layers["nuclei samples preview"].data.shape[-1] / size
    shot(viewer, "widget_generate_stylegan2.png")


def trained(folder: Path) -> bool:
    return (folder / "model.safetensors").is_file()


def side_by_side(viewer, names: list[str]) -> None:
    """Only the layers ``names`` shown (the others hidden: removing layers before a screenshot
    crashes Mesa here), side by side in napari's grid mode at their first plane, filling the
    canvas. By name: a plugin widget holds proxies of the layers it adds, not the layers."""
    for layer in viewer.layers:
        layer.visible = layer.name in names
    layers = [viewer.layers[name] for name in names]
    viewer.dims.set_point(0, 0)
    viewer.canvas.grid.enabled = True
    viewer.canvas.grid.shape = (1, len(layers))
    viewer.reset_view(layers=layers)


def nucleus_crops(stack):
    """One crop of the model's resolution per image, around its brightest nucleus (as Project
    Image asks: "crop a region around one cell")."""
    import numpy as np
    from scipy import ndimage

    size, half = NUCLEI_RESOLUTION, NUCLEI_RESOLUTION // 2
    crops = []
    for plane in stack:
        inside = ndimage.gaussian_filter(plane.astype(np.float32), 3)[half:-half, half:-half]  # centres that fit
        y, x = np.unravel_index(np.argmax(inside), inside.shape)       # the crop's corner
        crops.append(plane[y:y + size, x:x + size])
    return np.stack(crops)


def project(viewer, work: Path, steps: int, stylegan2_steps: int) -> None:
    """Project Image: three crops of the nuclei sample found in the StyleGAN2 model, with a
    morph through them; nuclei crops | projected | morph."""
    clear(viewer)
    viewer.open_sample("napari-gan", "nuclei")
    nuclei = viewer.layers["nuclei"]
    if not trained(work / "nuclei"):          # --only project, without --work of an earlier run
        viewer.window.remove_dock_widget(train_nuclei(viewer, work, stylegan2_steps))
    crops = viewer.add_image(nucleus_crops(nuclei.data[:3]), name="nuclei crops", colormap="gray")
    nuclei.visible = False
    _, widget = viewer.window.add_plugin_dock_widget("napari-gan", "Project Image")
    widget.model_path.value = work / "nuclei"
    widget.image_layer.value = crops
    widget.field("steps").value = steps
    widget.morph.value = True
    widget.frames.value = 8
    widget.device.value = "cpu"
    widget.latents_path.value = work / "nuclei crops.npy"
    widget.run_button.native.click()
    wait(widget)
    side_by_side(viewer, [crops.name, widget.last_layer.name, widget.last_sequence.name])
    shot(viewer, "widget_project.png")


def nuclei_masks(stack):
    """Instance masks of the nuclei, one per image (Otsu threshold, connected components): the
    segmentation a user would have."""
    import numpy as np
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    return np.stack([label(plane > threshold_otsu(plane)) for plane in stack]).astype(np.uint16)


def synthesize(viewer, work: Path, steps: int) -> None:
    """Synthetic Data Set: a Pix2Pix model of nuclei images from their masks (task labels),
    then 8 new 128x128 (mask, image) pairs; synthetic images | synthetic masks."""
    clear(viewer)
    viewer.open_sample("napari-gan", "nuclei")
    nuclei = viewer.layers["nuclei"]
    masks = viewer.add_labels(nuclei_masks(nuclei.data), name="nuclei masks")
    if not trained(work / "masks2nuclei"):
        train_masks2nuclei(viewer, work, steps, masks, nuclei)
    _, widget = viewer.window.add_plugin_dock_widget("napari-gan", "Synthetic Data Set")
    widget.model_path.value = work / "masks2nuclei"
    widget.masks_layer.value = masks
    widget.same_size.value = False
    widget.height.value = widget.width.value = 128
    widget.n.value = 8
    widget.device.value = "cpu"
    widget.folder.value = work / "synthetic"
    widget.run_button.native.click()
    wait(widget)
    side_by_side(viewer, [layer.name for layer in viewer.layers if layer.name.startswith("synthetic")])
    shot(viewer, "widget_synthesize.png")


def train_masks2nuclei(viewer, work: Path, steps: int, masks, nuclei) -> None:
    """Train Pix2Pix (task labels) from the masks to the nuclei through the Train widget, into
    work/masks2nuclei."""
    dock, train = viewer.window.add_plugin_dock_widget("napari-gan", "Train")
    train.field("task").value = "labels"
    train.picker("input").value = masks
    train.picker("target").value = nuclei
    for name, value in dict(steps=steps, patch=32, batch=4, width=16, val_fraction=0.2,
                            val_every=max(10, steps // 3), log_every=5).items():
        train.field(name).value = value
    train.device.value = "cpu"
    train.out_dir.value = str(work / "masks2nuclei")
    train.train_button.native.click()
    wait(train)
    viewer.window.remove_dock_widget(dock)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="folder for the trained models (default: temporary)")
    parser.add_argument("--pix2pix-steps", type=int, default=300)
    parser.add_argument("--stylegan2-steps", type=int, default=200)
    parser.add_argument("--project-steps", type=int, default=100, help="projection steps per image")
    parser.add_argument("--labels-steps", type=int, default=150,
                        help="training steps of the Pix2Pix labels model (Synthetic Data Set)")
    parser.add_argument("--only", nargs="+", choices=SHOTS, default=SHOTS, help="the scenes to shoot")
    args = parser.parse_args()

    import napari

    OUT.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="napari-gan-shots-"))
    viewer = napari.Viewer(show=True, title="napari-gan")
    viewer.window.resize(1500, 950)
    settle(1.0)
    if "pix2pix" in args.only:
        pix2pix(viewer, work, args.pix2pix_steps)
    if "stylegan2" in args.only:
        stylegan2(viewer, work, args.stylegan2_steps)
    if "project" in args.only:
        project(viewer, work, args.project_steps, args.stylegan2_steps)
    if "synthesize" in args.only:
        synthesize(viewer, work, args.labels_steps)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
