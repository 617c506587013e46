"""Live preview latency: how soon the first pixels and the full view of a 1024x1024 view appear.

A synthetic uint16 slide (8192 x 8192 by default, the pattern of benchmarks/streaming.py) is
written once as OME-Zarr (chunks of 512) and read lazily, as napari's layer would be. A
default-size Pix2Pix generator (uNet depth 3, width 32; random weights: this measures time,
not quality) predicts the view in the middle of the slide through the code the Live toggle
runs (:class:`napari_gan.core.regions.RegionPrediction`: tiles of the whole slide that touch
the view, centre first), headless. Reported per tile size: time to the first tile (first
pixels), to the full view, and the number of tiles. The model is loaded and warmed up before
timing (Live keeps it loaded); the Zarr chunks are read cold by the first timed repeat only.

    python benchmarks/live_preview.py --smoke                  # seconds: 1024 slide, 256 view
    flock /tmp/napari-gan-bench.lock python benchmarks/live_preview.py          # 2 threads, CPU
    python benchmarks/live_preview.py --device cuda             # when a GPU is lent

GUI mode (``--gui``): the Live toggle of Generate Data in a real napari viewer, run in a child
process under Xvfb (software OpenGL), with the slide as a lazy layer (dask over the zarr
array, as napari-ome-zarr opens it), the same generator saved as a model file, and the view
about 1024 pixels across. A 5 ms timer on the GUI thread records the gaps between its ticks
(the GUI's responsiveness) through these phases: idle; camera moves with Live off (napari's
own drawing); Live turned on (the model is loaded in the worker, the first view predicted);
the same camera moves with Live on (:data:`GESTURES`: pans, drags and zooms, some steps
quicker than the debounce, some slower so that each cancels the one before; after each the
view rests until it is predicted); and predictions of an unchanged view (the preview layer's
updates and their drawing, no camera change). Reported: per phase the largest gap, the 99th
percentile and the gaps over 100 ms, and for each of those what filled it (napari-gan's own
GUI-thread calls, timed one by one; the Qt events of 2 ms or more by kind, such as the canvas
paint; the scripted camera changes); per gesture the time from its last camera change to the
first pixels and to the full view in the preview layer.

    flock /tmp/napari-gan-bench.lock python benchmarks/live_preview.py --gui    # ~2 min
    python benchmarks/live_preview.py --gui --smoke

Results: benchmarks/out/live_preview[_gui][_smoke].json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_info, load_json, machine, save_json  # noqa: E402
from streaming import SyntheticSlide  # noqa: E402


def make_slide(scratch: Path, size: int) -> Path:
    from napari_gan.core.axes import AxesImage
    from napari_gan.core.zarr_io import LazyArray, write_ome_zarr

    path = scratch / f"slide{size}.ome.zarr"
    if not path.exists():
        write_ome_zarr(path, AxesImage(LazyArray(SyntheticSlide(size)), "YX"), chunk=512, levels=1)
    return path


def scratch_dir(args) -> Path:
    scratch = args.scratch or Path(tempfile.gettempdir()) / "napari-gan-live-bench"
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


def make_predictor(device: str, width: int, depth: int):
    import torch

    from napari_gan.core.device import resolve_device
    from napari_gan.core.families.pix2pix import build_generator
    from napari_gan.core.inference import Predictor
    from napari_gan.core.normalization import Normalizer

    cfg = predictor_config(width, depth)
    torch.manual_seed(0)
    norm = Normalizer([1000.0], [4000.0])
    return Predictor(build_generator(cfg), cfg.to_dict(), norm, norm, resolve_device(device))


def time_view(predictor, plane, view: int, tile: int, centre: tuple[int, int]) -> dict:
    from napari_gan.core.regions import Region, RegionPrediction

    y, x = centre
    region = Region(y - view // 2, x - view // 2, y + view // 2, x + view // 2)
    sync = (lambda: __import__("torch").cuda.synchronize()) if predictor.device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    job = RegionPrediction(predictor, plane, region, tile)
    job.step()
    sync()
    first = time.perf_counter() - start
    while job.done < job.total:
        job.step()
    job.partial()
    sync()
    full = time.perf_counter() - start
    return {"tile": job.tile, "overlap": job.overlap, "tiles": job.total, "first_s": first, "full_s": full,
            "mpix_per_s": view * view / full / 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a 1024 slide, a 256 view, a tiny network")
    ap.add_argument("--size", type=int, default=8192, help="slide side in pixels")
    ap.add_argument("--view", type=int, default=1024, help="view side in pixels")
    ap.add_argument("--tiles", type=int, nargs="+", default=[256, 512], help="preview tile sizes to time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scratch", type=Path, default=None, help="where the slide is written (kept)")
    ap.add_argument("--gui", action="store_true", help="the GUI thread's responsiveness in a real viewer (Xvfb)")
    ap.add_argument("--xvfb-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    width, depth = 32, 3
    if args.smoke:
        args.size, args.view, args.tiles, args.repeats, width, depth = 1024, 256, [128], 1, 8, 2
    if args.gui:
        gui_main(args, width, depth)
        return

    import torch

    torch.set_num_threads(args.threads)
    from napari_gan.core.zarr_io import read_ome_zarr

    t0 = time.perf_counter()
    slide = make_slide(scratch_dir(args), args.size)
    made_s = time.perf_counter() - t0
    image = read_ome_zarr(slide)
    plane = image.data[None]                          # (C, H, W), lazy
    predictor = make_predictor(args.device, width, depth)
    centre = (args.size // 2, args.size // 2)
    time_view(predictor, plane, 256, args.tiles[0], (128, 128))      # warm up (a corner, not the view)
    rows = []
    for tile in args.tiles:
        for r in range(args.repeats):
            row = time_view(predictor, plane, args.view, tile, centre)
            row["repeat"] = r
            rows.append(row)
            print(f"tile {row['tile']:4d} (overlap {row['overlap']}, {row['tiles']} tiles), repeat {r}: first "
                  f"pixels {row['first_s']:.3f} s, full {args.view}x{args.view} view {row['full_s']:.2f} s "
                  f"({row['mpix_per_s']:.2f} Mpix/s)", flush=True)
    result = {"machine": machine(), "cpu": cpu_info(), "load_average": os.getloadavg(),
              "slide": {"size": args.size, "path": str(slide), "made_s": made_s},
              "view": args.view, "device": predictor.device_name, "threads": args.threads,
              "network": {"width": width, "depth": depth, "params": sum(p.numel() for p in predictor.G.parameters())},
              "rows": rows}
    path = save_json("live_preview_smoke.json" if args.smoke else "live_preview.json", result)
    print(f"load average {os.getloadavg()[0]:.2f}; written {path}")


# ---------------------------------------------------------------------------- GUI mode
XVFB = ["xvfb-run", "-a", "-s", "-screen 0 1920x1200x24"]
TICK_MS = 5
STALL_MS = 100
#: napari-gan's GUI-thread entry points of the Live toggle (timed in GUI mode)
OWN_CALLS = ("schedule", "_start", "_show", "_done", "_on_ndisplay")


@dataclass
class Gesture:
    """Camera changes a user makes in one go: ``steps`` of (dy, dx as fractions of the view,
    zoom factor), ``interval_ms`` apart; the view then rests."""

    name: str
    steps: list
    interval_ms: int


GESTURES = (
    Gesture("pan by 0.4 view", [(0.0, 0.4, 1.0)], 0),
    Gesture("drag: 12 steps of 0.03 view, 30 ms apart", [(0.03, 0.0, 1.0)] * 12, 30),
    Gesture("zoom in x1.6: 4 steps, 40 ms apart", [(0.0, 0.0, 1.6 ** 0.25)] * 4, 40),
    Gesture("pan twice, 600 ms apart (the second cancels the first)", [(0.0, -0.3, 1.0)] * 2, 600),
    Gesture("slow drag: 4 steps, 250 ms apart (each cancels the one before)", [(0.05, 0.05, 1.0)] * 4, 250),
    Gesture("zoom out x2.5: 5 steps, 60 ms apart", [(0.0, 0.0, 2.5 ** -0.2)] * 5, 60),
)


class MainThreadLog:
    """What the GUI thread did: timer ticks, napari-gan's calls, long Qt events, camera changes,
    and the Live requests and updates (perf_counter seconds)."""

    def __init__(self):
        self.ticks: list[float] = []
        self.calls: list[tuple] = []        # (name, start, end, this thread's CPU seconds)
        self.events: list[tuple] = []       # (kind, start, end): top-level Qt events >= 2 ms
        self.camera: list[tuple] = []       # (start, end) of one scripted camera change
        self.requests: dict = {}            # id(request) -> (when it was measured, the request: kept alive)
        self.shows: list[tuple] = []        # (start, end, id(request), done, total, shape)
        self.phases: list[tuple] = []       # (name, start, end)


def timed_app(log: MainThreadLog):
    """A QApplication that logs the top-level events that take 2 ms or more (made before napari's)."""
    from qtpy.QtWidgets import QApplication

    class TimedApp(QApplication):
        depth = 0

        def notify(self, receiver, event):
            kind = f"{event.type().name}/{type(receiver).__name__}"
            TimedApp.depth += 1
            start = time.perf_counter()
            try:
                return super().notify(receiver, event)
            finally:
                TimedApp.depth -= 1
                end = time.perf_counter()
                if TimedApp.depth == 0 and end - start >= 0.002:
                    log.events.append((kind, start, end))

    return TimedApp([sys.argv[0]])


def instrument(live, log: MainThreadLog) -> None:
    """Time napari-gan's GUI-thread calls of the Live toggle (before it is turned on)."""
    for name in OWN_CALLS:
        setattr(live, name, _timed_call(getattr(live, name), name, log))
    live.timer.timeout.disconnect()
    live.timer.timeout.connect(live._start)
    request, show = live._request, live._show

    def logged_request():
        req = request()
        if req is not None:
            log.requests[id(req)] = (time.perf_counter(), req)
        return req

    def logged_show(update):
        start = time.perf_counter()
        show(update)
        log.shows.append((start, time.perf_counter(), id(update.request), update.done, update.total,
                          tuple(update.data.shape)))

    live._request, live._show = logged_request, logged_show


def _timed_call(function, name: str, log: MainThreadLog):
    def call(*args):
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args)
        finally:
            log.calls.append((name, start, time.perf_counter(), time.thread_time() - cpu))

    return call


def pump(ms: float) -> None:
    """Run Qt's event loop for ``ms`` milliseconds."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(max(0, int(ms)), loop.quit)
    loop.exec()


def pump_until(condition, timeout_s: float) -> bool:
    end = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > end:
            return False
        pump(10)
    return True


def full_view_after(log: MainThreadLog, since: float):
    """The finished update of a request measured after ``since`` (None while there is none)."""
    return next((s for s in log.shows if s[3] == s[4] and log.requests.get(s[2], (0.0,))[0] > since), None)


def play(viewer, gesture: Gesture, view: int, log: MainThreadLog) -> float:
    """The gesture's camera changes; returns when the last one was made."""
    from napari_gan._widgets._live import camera

    last = time.perf_counter()
    for k, (dy, dx, zoom) in enumerate(gesture.steps):
        if k:
            pump(gesture.interval_ms)
        start = time.perf_counter()
        cam = camera(viewer)
        cy, cx = cam.center[-2:]
        cam.center = (cy + dy * view, cx + dx * view)
        if zoom != 1.0:
            cam.zoom = cam.zoom * zoom
        last = time.perf_counter()
        log.camera.append((start, last))
    return last


def gesture_row(viewer, live, gesture: Gesture, view: int, log: MainThreadLog, timeout_s: float) -> dict:
    """Play a gesture with Live on; the time from its last camera change to the first and to
    all the pixels of the view it rests on."""
    started = live.started
    last = play(viewer, gesture, view, log)
    pump_until(lambda: full_view_after(log, last) is not None and not live.running, timeout_s)
    full = full_view_after(log, last)
    row = {"gesture": gesture.name, "predictions_started": live.started - started}
    if full is None:
        return dict(row, timed_out=True)
    first = next(s for s in log.shows if s[2] == full[2])
    return dict(row, first_pixels_s=first[1] - last, full_view_s=full[1] - last, tiles=full[4],
                view_pixels=list(full[5][1:]), level=live.last_update.request.level)


def phase(log: MainThreadLog, name: str, action) -> object:
    start = time.perf_counter()
    try:
        return action()
    finally:
        log.phases.append((name, start, time.perf_counter()))


def save_model(folder: Path, width: int, depth: int) -> Path:
    """A default-size Pix2Pix model file with random weights (this measures time, not quality)."""
    from napari_gan.core import checkpoint, families

    predictor = make_predictor("cpu", width, depth)
    family = families.get("pix2pix")
    architecture, training = family.split_config(predictor_config(width, depth))
    norm = predictor.input_norm.to_dict()
    return checkpoint.save_model(folder / "model.safetensors", "pix2pix", architecture,
                                 {"generator": predictor.G}, {"input": norm, "target": norm}, training=training)


def predictor_config(width: int, depth: int):
    from napari_gan.core.families.pix2pix import Pix2PixConfig

    return Pix2PixConfig(width=width, depth=depth)


def open_viewer(args, slide: Path, model: Path, log: MainThreadLog):
    """A shown viewer with the slide as a lazy (dask over zarr) layer and Generate Data docked."""
    import dask.array as da
    import napari

    from napari_gan._widgets import GenerateWidget

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1800, 1150)
    layer = viewer.add_image(da.from_zarr(str(slide), component="0"), name="slide", contrast_limits=(0, 6000))
    widget = GenerateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Generate Data")
    widget.device.value = args.device
    widget.model_path.value = model
    widget.input_layer.value = layer
    instrument(widget.live, log)
    pump(3000)                                       # the first frames (software GL compiles shaders)
    home(viewer, args)
    return viewer, widget


def home(viewer, args) -> None:
    """The camera on the middle of the slide, the view ``args.view`` pixels across; then rest."""
    from napari_gan._widgets._live import camera

    height, width = viewer.canvas.size
    camera(viewer).center = (args.size / 2, args.size / 2)
    camera(viewer).zoom = max(height, width) / args.view
    pump(1000)


class GuiRun:
    """The phases of the GUI mode in one viewer, with Generate Data docked (see the docstring)."""

    TIMEOUT_S = 120.0

    def __init__(self, args, viewer, widget, log: MainThreadLog):
        self.args, self.viewer, self.live, self.log = args, viewer, widget.live, log
        self.gestures = GESTURES[:3] if args.smoke else GESTURES

    def predicted(self, since: float) -> bool:
        return full_view_after(self.log, since) is not None and not self.live.running

    def wait_predicted(self, since: float) -> None:
        pump_until(lambda: self.predicted(since), self.TIMEOUT_S)

    def camera_only(self) -> None:
        for gesture in self.gestures:
            play(self.viewer, gesture, self.args.view, self.log)
            pump(1000)

    def first_view(self) -> None:
        home(self.viewer, self.args)
        since = time.perf_counter()
        self.live.toggle.value = True
        self.wait_predicted(since)

    def camera_live(self) -> list[dict]:
        rows = []
        for gesture in self.gestures:
            rows.append(gesture_row(self.viewer, self.live, gesture, self.args.view, self.log, self.TIMEOUT_S))
            pump(300)
        return rows

    def back_home(self) -> None:
        since = time.perf_counter()
        home(self.viewer, self.args)
        self.wait_predicted(since)

    def same_view(self) -> None:
        for _ in range(self.args.repeats + 1):
            since = time.perf_counter()
            self.live.schedule()
            self.wait_predicted(since)
            pump(300)

    def run(self) -> list[dict]:
        """The phases, in order; returns the gesture rows."""
        log = self.log
        phase(log, "idle", lambda: pump(2000))
        phase(log, "camera moves, Live off", self.camera_only)
        phase(log, "Live turned on (model loaded, first view)", self.first_view)
        rows = phase(log, "camera moves, Live on", self.camera_live)
        phase(log, "back to the first view, Live on", self.back_home)
        phase(log, "Live on, no camera moves (the preview updated only)", self.same_view)
        self.live.toggle.value = False
        return rows


def run_gui(args, width: int, depth: int) -> dict:
    """The Live toggle in a real viewer: the GUI thread's timer gaps while the view moves."""
    from qtpy.QtCore import Qt, QTimer

    log = MainThreadLog()
    app = timed_app(log)
    scratch = scratch_dir(args)
    slide = make_slide(scratch, args.size)
    model = save_model(scratch / f"pix2pix-w{width}-d{depth}", width, depth)
    viewer, widget = open_viewer(args, slide, model, log)
    ticker = QTimer()
    ticker.setTimerType(Qt.TimerType.PreciseTimer)
    ticker.timeout.connect(lambda: log.ticks.append(time.perf_counter()))
    ticker.start(TICK_MS)
    rows = GuiRun(args, viewer, widget, log).run()
    ticker.stop()
    result = {"gl_renderer": gl_renderer(viewer), "canvas": list(viewer.canvas.size), "tick_ms": TICK_MS,
              "gestures": rows, "phases": [phase_report(log, *p) for p in log.phases],
              "own_calls": call_report(log.calls), "show_ms": show_report(log.shows),
              "preview_layers": [layer.name for layer in widget.live.layers]}
    viewer.close()
    app.quit()
    return result


def phase_report(log: MainThreadLog, name: str, start: float, end: float) -> dict:
    """The timer gaps of one phase, and what the GUI thread did during those over STALL_MS."""
    ticks = np.array([t for t in log.ticks if start <= t <= end])
    gaps = np.diff(ticks) * 1000 if len(ticks) > 1 else np.zeros(1)
    stalls = [(a, b) for a, b in zip(ticks[:-1], ticks[1:]) if (b - a) * 1000 > STALL_MS]
    return {"phase": name, "seconds": end - start, "ticks": len(ticks), "max_gap_ms": float(gaps.max()),
            "p99_gap_ms": float(np.percentile(gaps, 99)), "median_gap_ms": float(np.median(gaps)),
            "gaps_over_100ms": int((gaps > 100).sum()), "gaps_over_50ms": int((gaps > 50).sum()),
            "own_calls_ms": _busy_ms(log.calls, start, end), "stalls": [stall_report(log, a, b) for a, b in stalls]}


def stall_report(log: MainThreadLog, a: float, b: float) -> dict:
    """One gap: napari-gan's own calls inside it, the Qt events and scripted camera changes
    that overlap it (what is left is waiting: other threads, other processes)."""
    events: dict = {}
    for kind, s, e in log.events:
        events[kind] = events.get(kind, 0.0) + _overlap(s, e, a, b)
    events = {k: round(v * 1000, 1) for k, v in sorted(events.items(), key=lambda kv: -kv[1]) if v > 0.001}
    own = {}
    for name, s, e, _cpu in log.calls:
        if _overlap(s, e, a, b) > 0:
            own[name] = round(own.get(name, 0.0) + _overlap(s, e, a, b) * 1000, 1)
    camera = sum(_overlap(s, e, a, b) for s, e in log.camera) * 1000
    return {"at_s": a - log.ticks[0], "gap_ms": round((b - a) * 1000, 1), "napari_gan_ms": own,
            "qt_events_ms": events, "camera_change_ms": round(camera, 1)}


def call_report(calls: list) -> dict:
    """napari-gan's GUI-thread calls by name: wall time, and the thread's CPU time (less than
    the wall time where the thread waited: for the GIL, or for a core)."""
    out = {}
    for name in OWN_CALLS:
        rows = [(e - s, cpu) for n, s, e, cpu in calls if n == name]
        if rows:
            wall, cpu = np.array(rows).T * 1000
            out[name] = {"n": len(rows), "max_ms": float(wall.max()), "p99_ms": float(np.percentile(wall, 99)),
                         "median_ms": float(np.median(wall)), "max_cpu_ms": float(cpu.max()),
                         "cpu_of_slowest_ms": float(cpu[wall.argmax()])}
    return out


def show_report(shows: list) -> dict:
    """The preview updates' GUI-thread time: the first (napari adds the layer), the first of
    each later view (a new array and placement), and the partial results of a view shown."""
    seen, kinds = set(), {"adds the layer": [], "new view": [], "same view": []}
    for k, (start, end, request, *_rest) in enumerate(shows):
        kind = "adds the layer" if k == 0 else "same view" if request in seen else "new view"
        seen.add(request)
        kinds[kind].append((end - start) * 1000)
    return {kind: {"n": len(d), "max": float(np.max(d)), "median": float(np.median(d))}
            for kind, d in kinds.items() if d}


def _busy_ms(calls: list, start: float, end: float) -> float:
    return float(sum(_overlap(s, e, start, end) for _n, s, e, _cpu in calls) * 1000)


def _overlap(s: float, e: float, a: float, b: float) -> float:
    return max(0.0, min(e, b) - max(s, a))


def gl_renderer(viewer) -> str:
    try:
        from vispy.gloo import gl

        viewer.window._qt_viewer.canvas._scene_canvas.set_current()
        return str(gl.glGetParameter(gl.GL_RENDERER))
    except Exception as exc:  # noqa: BLE001 - informative only
        return f"unknown ({exc})"


def lscpu() -> list[str]:
    """``lscpu | grep -E "Model name|Flags"``."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in text.splitlines() if line.startswith(("Model name", "Flags"))]


def gui_main(args, width: int, depth: int) -> None:
    """Run the GUI mode in a child under Xvfb; the load average is read around it."""
    name = "live_preview_gui_smoke.json" if args.smoke else "live_preview_gui.json"
    if args.xvfb_child:
        save_json(name, gui_result(args, width, depth))
        return
    load_before = os.getloadavg()
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", NAPARI_GAN_SYNC_WORKERS="0")
    subprocess.run(XVFB + [sys.executable, __file__, *sys.argv[1:], "--xvfb-child"], env=env, check=True)
    result = load_json(name)
    result["load_average"] = {"before": load_before, "after": os.getloadavg()}
    path = save_json(name, result)
    print_gui(result)
    print(f"load average {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}; written {path}")


def gui_result(args, width: int, depth: int) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    result = {"machine": machine(), "cpu": cpu_info(), "lscpu": lscpu(), "slide": args.size, "view": args.view,
              "threads": args.threads, "device": args.device, "network": {"width": width, "depth": depth}}
    result.update(run_gui(args, width, depth))
    return result


def print_gui(result: dict) -> None:
    print(f"{result['cpu'].get('model')}; GL {result['gl_renderer']}; canvas {result['canvas']}")
    for row in result["gestures"]:
        if row.get("timed_out"):
            print(f"  {row['gesture']}: timed out")
            continue
        print(f"  {row['gesture']}: first pixels {row['first_pixels_s']:.2f} s, full view {row['full_view_s']:.2f} s "
              f"({row['tiles']} tiles, {row['view_pixels'][1]}x{row['view_pixels'][0]}, "
              f"{row['predictions_started']} prediction(s) started)")
    for p in result["phases"]:
        print(f"  {p['phase']}: max gap {p['max_gap_ms']:.0f} ms, p99 {p['p99_gap_ms']:.0f} ms, "
              f"{p['gaps_over_100ms']} gaps > 100 ms, napari-gan's calls {p['own_calls_ms']:.0f} ms in "
              f"{p['seconds']:.1f} s")
    print("  preview updates (ms): " + "; ".join(f"{kind}: {d['n']}, median {d['median']:.1f}, max {d['max']:.1f}"
                                                 for kind, d in result["show_ms"].items()))
    for name, c in result["own_calls"].items():
        print(f"  {name}: {c['n']} calls, max {c['max_ms']:.1f} ms (CPU {c['cpu_of_slowest_ms']:.1f} ms), "
              f"p99 {c['p99_ms']:.1f} ms, median {c['median_ms']:.1f} ms")


if __name__ == "__main__":
    main()
