"""Pieces every sub-command shares: budget and device options, running a trainer."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from ..core.events import TrainEvent, format_seconds


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or mps")


def add_axes_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--axes", help="axes of the input TIFFs, e.g. TZCYX or CYX (default: from the files' "
                                  "ImageJ/OME metadata, else Y and X last with Z/T before them)")


def run_trainer(trainer, quiet: bool = False, out=None) -> TrainEvent:
    """Drive a trainer to the end, printing its events. Ctrl-C stops it cleanly
    (the model and the resumable state are saved); a second Ctrl-C aborts."""
    out = out or sys.stdout
    last = None

    def on_sigint(signum, frame):
        if trainer.stopped:
            raise KeyboardInterrupt
        print("\nstopping after this step (Ctrl-C again to abort) ...", file=sys.stderr)
        trainer.request_stop()

    previous = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
    try:
        t0 = time.perf_counter()
        for event in trainer.run():
            last = event
            if event.kind == "done":
                break
            if (not quiet or event.kind == "warning") and trainer.dist.is_main:
                print(event.summary(), file=out, flush=True)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        from ..core import distributed

        distributed.shutdown()   # under torchrun: leave the process group
    if trainer.dist.is_main:
        print(f"training {last.message} after {last.step} steps in {format_seconds(time.perf_counter() - t0)}"
              + (" | " + " | ".join(f"{k} {v:.4g}" for k, v in last.metrics.items()) if last.metrics else ""),
              file=out)
        print(f"model saved to {last.paths['best']} (last: {last.paths['last']}; resume with --resume)", file=out)
    return last


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
