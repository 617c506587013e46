"""Screenshots of the napari widgets in use, for the docs (run under a virtual display):

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshots.py

Opens a real napari viewer, loads the built-in sample data, trains through the widgets'
own buttons (short runs on the CPU), applies the models with Generate Data and saves
docs/images/widget_*.png. Models go to a temporary folder (or --work).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"


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


def stylegan2(viewer, work: Path, steps: int) -> None:
    viewer.layers.clear()
    for dock in list(viewer.window.dock_widgets.values()):
        viewer.window.remove_dock_widget(dock)
    viewer.open_sample("napari-gan", "nuclei")
    dock, train = viewer.window.add_plugin_dock_widget("napari-gan", "Train")
    train.model.value = "stylegan2"
    train.field("resolution").value = 32
    train.field("batch").value = 8
    train.field("steps").value = steps
    train.field("val_every").value = max(10, steps // 5)
    train.field("log_every").value = 5
    train.device.value = "cpu"
    train.out_dir.value = str(work / "nuclei")
    train.train_button.native.click()
    wait(train)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="folder for the trained models (default: temporary)")
    parser.add_argument("--pix2pix-steps", type=int, default=300)
    parser.add_argument("--stylegan2-steps", type=int, default=200)
    parser.add_argument("--only", choices=("pix2pix", "stylegan2"))
    args = parser.parse_args()

    import napari

    OUT.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="napari-gan-shots-"))
    viewer = napari.Viewer(show=True, title="napari-gan")
    viewer.window.resize(1500, 950)
    settle(1.0)
    if args.only in (None, "pix2pix"):
        pix2pix(viewer, work, args.pix2pix_steps)
    if args.only in (None, "stylegan2"):
        stylegan2(viewer, work, args.stylegan2_steps)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
