"""Pieces every sub-command shares: budget and device options, running a trainer, signals."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from pathlib import Path

from ..core.events import TrainEvent, format_seconds

#: signals that end a run the way Ctrl-C does (a cluster's time limit sends SIGTERM; closing
#: the terminal or an ssh session sends SIGHUP); the exit status is 128 + the signal number
STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
                     if s is not None)


class Terminated(BaseException):
    """A stop signal (SIGTERM, SIGHUP) arrived outside training: the command unwinds (so
    temporary files are removed and run folders released) and exits with 128 + signum.
    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal_name(self.signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_signals_raise():
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` (in the main thread; the
    previous handlers come back afterwards)."""
    if not _main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated(signum)

    previous = {s: signal.signal(s, raise_terminated) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or mps")


def add_axes_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--axes", help="axes of the input TIFFs, e.g. TZCYX or CYX (default: from the files' "
                                  "ImageJ/OME metadata, else Y and X last with Z/T before them)")


def add_series_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--series", type=int, metavar="N",
                   help="for TIFFs that hold several images (series, e.g. an OME-TIFF of several "
                        "positions): the one to use, counted from 0 (default: refuse such files "
                        "and list their series)")


def check_early(args) -> None:
    """Options checked before any file is read: --axes letters and --series."""
    from ..core.errors import NapariGanError

    axes = getattr(args, "axes", None)
    if axes is not None:
        from ..core.axes import parse_axes

        parse_axes(axes, len(axes.strip()))   # letters, repeats and the YX ending; the length later
    series = getattr(args, "series", None)
    if series is not None and series < 0:
        raise NapariGanError(f"--series must be 0 or more (the first series is 0), not {series}.")


def run_trainer(trainer, quiet: bool = False, out=None) -> TrainEvent:
    """Drive a trainer to the end, printing its events.

    Ctrl-C, SIGTERM and SIGHUP stop it cleanly: the current step finishes, the model and the
    resumable state are saved and the folder released. A second Ctrl-C aborts (the files of
    the last save are kept); a second SIGTERM/SIGHUP changes nothing. The returned event has
    ``signal`` set to the signal number that stopped the run (or None)."""
    out = out or sys.stdout
    last = None
    stopped_by: list[int] = []

    def on_signal(signum, frame):
        if trainer.stopped:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        stopped_by.append(signum)
        how = "Ctrl-C again to abort" if signum == signal.SIGINT else signal_name(signum)
        print(f"\nstopping after this step and saving the model and the training state ({how}) ...",
              file=sys.stderr, flush=True)
        trainer.request_stop()

    handled = (signal.SIGINT,) + STOP_SIGNALS
    previous = {s: signal.signal(s, on_signal) for s in handled} if _main_thread() else {}
    events = trainer.run()
    try:
        t0 = time.perf_counter()
        for event in events:
            last = event
            if event.kind == "done":
                break
            if (not quiet or event.kind == "warning") and trainer.dist.is_main:
                print(event.summary(), file=out, flush=True)
    finally:
        events.close()       # the trainer's loop ends here: its run folder is released
        for s, handler in previous.items():
            signal.signal(s, handler)
        from ..core import distributed

        distributed.shutdown()   # under torchrun: leave the process group
    last.signal = stopped_by[0] if stopped_by else None
    if trainer.dist.is_main:
        print(f"training {last.message} after {last.step} steps in {format_seconds(time.perf_counter() - t0)}"
              + (" | " + " | ".join(f"{k} {v:.4g}" for k, v in last.metrics.items()) if last.metrics else ""),
              file=out)
        print(f"model saved to {last.paths['best']} (last: {last.paths['last']}; resume with --resume)", file=out)
        if last.signal in STOP_SIGNALS:
            folder = Path(last.paths["state"]).parent
            print(f"napari-gan: stopped by {signal_name(last.signal)} at step {last.step}; the model and the "
                  f"training state are saved in '{folder}'; continue with --resume.", file=sys.stderr, flush=True)
    return last


def exit_status(event: TrainEvent) -> int:
    """0, or 128 + the number of the stop signal (SIGTERM, SIGHUP) that ended the run."""
    signum = getattr(event, "signal", None)
    return 128 + signum if signum in STOP_SIGNALS else 0
