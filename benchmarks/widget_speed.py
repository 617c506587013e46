"""Training speed in napari against the command line, side by side in one run.

The sample pair (File > Open Sample > napari-gan > noisy/clean pair) is trained with the same
settings and steps twice over, alternately:

* ``cli``: what ``napari-gan train pix2pix`` does (``runs.start`` + the CLI's event loop,
  :func:`napari_gan.cli.common.run_trainer`), in a process of its own;
* ``gui``: the Train widget in a real napari viewer (under Xvfb), its Train button pressed,
  with everything the widget does while training (the worker thread, progress bar, activity
  dock, live plot, preview layer), in a process of its own.

Each reports the trainer's own images/s (images over the training loop's wall time,
validations included) and the wall time of the run. Runs alternate (cli, gui, cli, gui, ...)
so that a change of machine load hits both alike.

    flock /tmp/napari-gan-bench.lock python benchmarks/widget_speed.py            # ~4 min
    python benchmarks/widget_speed.py --steps 6 --rounds 1                         # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_info, cpu_line, machine, save_json  # noqa: E402

XVFB = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"]


def sample_images():
    from napari_gan.core.samples import noisy_clean_pair

    return noisy_clean_pair()


def settings(steps: int, val_every: int) -> dict:
    return {"steps": steps, "val_every": val_every, "seed": 0}


def run_cli(spec: dict) -> dict:
    from napari_gan.cli.common import run_trainer
    from napari_gan.core import families, runs
    from napari_gan.core.data import to_planes
    from napari_gan.core.device import resolve_device
    from napari_gan.core.families import Images

    noisy, clean = sample_images()
    family = families.get("pix2pix")
    values = {**settings(spec["steps"], spec["val_every"])}

    def read_images(cfg):
        out = {}
        for key, data, name in (("input", noisy, "noisy"), ("target", clean, "clean")):
            planes, _ = to_planes(data, 1, None, name)
            out[key] = Images(list(planes), [f"'{name}'"])
        return out

    cpu0 = thread_cpu()
    t0 = time.perf_counter()
    trainer = runs.start(family, values, spec["out"], False, resolve_device("cpu"), read_images)
    with open(os.devnull, "w") as sink:
        last = run_trainer(trainer, quiet=False, out=sink)
    return {"images_per_s": last.images_per_s, "steps": last.step, "train_seconds": last.elapsed_s,
            "wall_seconds": time.perf_counter() - t0, "thread_cpu_seconds": thread_cpu(cpu0)}


def thread_cpu(since: dict | None = None) -> dict:
    """CPU seconds of this process's threads by thread name (minus ``since``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    if since:
        out = {k: round(v - since.get(k, 0.0), 2) for k, v in out.items() if v - since.get(k, 0.0) > 0.05}
    return out


def run_gui(spec: dict) -> dict:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_gan._widgets import TrainWidget

    noisy, clean = sample_images()
    viewer = napari.Viewer(show=True)
    viewer.add_image(noisy, name="noisy", colormap="gray")
    viewer.add_image(clean, name="clean", colormap="gray")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    widget.model.value = "pix2pix"
    for name, value in settings(spec["steps"], spec["val_every"]).items():
        widget.field(name).value = value
    widget.device.value = "cpu"
    widget.out_dir.value = spec["out"]
    app = QApplication.instance()
    result: dict = {}
    paints = {"n": 0}
    plot_paint = widget.plot.paintEvent

    def counted_paint(event):
        paints["n"] += 1
        plot_paint(event)

    widget.plot.paintEvent = counted_paint
    draws = {"n": 0}
    try:    # napari's canvas redraws (each one a software-GL frame under Xvfb)
        viewer.window._qt_viewer.canvas._scene_canvas.events.draw.connect(
            lambda _e: draws.__setitem__("n", draws["n"] + 1))
    except AttributeError:
        draws["n"] = None
    cpu0 = thread_cpu()
    t0 = time.perf_counter()

    def poll():
        if widget.running:
            return
        timer.stop()
        ev = widget.last_event
        result.update(images_per_s=ev.images_per_s, steps=ev.step, train_seconds=ev.elapsed_s,
                      wall_seconds=time.perf_counter() - t0, plot_paints=paints["n"], canvas_draws=draws["n"],
                      thread_cpu_seconds=thread_cpu(cpu0),
                      preview=any(layer.name.endswith("preview") for layer in viewer.layers))
        app.quit()

    # The viewer is shown and drawn before Train is pressed, as a user's is (the first frames
    # compile the layers' shaders: seconds of CPU with software GL).
    settle = time.perf_counter()
    while time.perf_counter() - settle < 3.0 or (draws["n"] is not None and draws["n"] < 1 and
                                                   time.perf_counter() - settle < 60):
        app.processEvents()
        time.sleep(0.01)
    draws["n"] = 0 if draws["n"] is not None else None
    cpu0.update(thread_cpu())
    t0 = time.perf_counter()
    assert widget.start(resume=False), "the widget refused to start"
    timer = QTimer()
    timer.setInterval(100)
    timer.timeout.connect(poll)
    timer.start()
    app.exec_() if hasattr(app, "exec_") else app.exec()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--val-every", type=int, default=50, help="validation and preview every N steps (both)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        import torch

        torch.set_num_threads(2)
        res = run_cli(spec) if spec["face"] == "cli" else run_gui(spec)
        Path(spec["result"]).write_text(json.dumps(res))
        os._exit(0)      # (no teardown of the viewer: the Qt application has quit)

    results = {"machine": machine(), "cpu": cpu_info(), "steps": args.steps, "val_every": args.val_every,
               "runs": []}
    print(cpu_line(results["cpu"]), flush=True)
    env = dict(os.environ, NAPARI_GAN_SYNC_WORKERS="0", QT_QPA_PLATFORM="xcb")
    with tempfile.TemporaryDirectory(prefix="widget-speed-") as tmp:
        for r in range(args.rounds):
            for face in ("cli", "gui"):
                spec = {"face": face, "steps": args.steps, "val_every": args.val_every,
                        "out": str(Path(tmp) / f"{face}{r}"), "result": str(Path(tmp) / f"{face}{r}.json")}
                cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
                if face == "gui":
                    cmd = XVFB + cmd
                load0 = os.getloadavg()[0]
                subprocess.run(cmd, env=env, check=True)
                res = json.loads(Path(spec["result"]).read_text())
                res.update(face=face, round=r, load=[load0, os.getloadavg()[0]])
                results["runs"].append(res)
                print(f"  threads (CPU s): {res.get('thread_cpu_seconds')}; canvas draws {res.get('canvas_draws')}, "
                      f"plot paints {res.get('plot_paints')}", flush=True)
                print(f"{face} round {r}: {res['images_per_s']:.2f} img/s, {res['steps']} steps, "
                      f"train {res['train_seconds']:.1f} s, wall {res['wall_seconds']:.1f} s, load "
                      f"{res['load'][0]:.1f} -> {res['load'][1]:.1f}", flush=True)
    mean = {f: sum(x["images_per_s"] for x in results["runs"] if x["face"] == f) / args.rounds
            for f in ("cli", "gui")}
    results["mean_images_per_s"] = mean
    results["gui_over_cli"] = mean["gui"] / mean["cli"]
    print(f"mean: cli {mean['cli']:.2f} img/s, gui {mean['gui']:.2f} img/s, gui/cli {results['gui_over_cli']:.3f}")
    path = save_json(f"widget_speed{args.tag}.json", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
