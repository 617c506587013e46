"""Running long computations off the GUI thread.

A job is a generator function: it runs in a napari ``thread_worker`` (so the canvas
stays responsive and the activity dock shows progress), its yields arrive on the GUI
thread, and it *returns* its outcome instead of raising, so that the widget shows one
clear notification rather than napari's traceback dialog.

``NAPARI_GAN_SYNC_WORKERS=1`` runs jobs synchronously on the calling thread (the same
callbacks, in the same order), which makes some tests and scripts deterministic.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Generator

from qtpy.QtCore import QObject, Signal

SYNC_ENV = "NAPARI_GAN_SYNC_WORKERS"


def sync_workers() -> bool:
    return os.environ.get(SYNC_ENV, "0").strip().lower() not in ("", "0", "false", "no")


@dataclass
class Failure:
    """What a job returns when it raised: the exception, kept for the message."""

    error: BaseException


class ProgressRelay(QObject):
    """Carries ``(done, total)`` from a worker thread to the GUI thread (queued signal)."""

    progressed = Signal(int, int)


def start_job(job: Callable[..., Generator], *args,
              on_yield: Callable[[Any], None] | None = None,
              on_finish: Callable[[Any], None] | None = None):
    """Start ``job(*args)``; ``on_finish`` receives its return value or a :class:`Failure`.

    Returns the napari worker (``None`` when running synchronously).
    """

    def guarded():
        try:
            result = yield from job(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the user by on_finish
            return Failure(exc)
        return result

    if sync_workers():
        gen = guarded()
        while True:
            try:
                value = next(gen)
            except StopIteration as stop:
                if on_finish is not None:
                    on_finish(stop.value)
                return None
            if on_yield is not None:
                on_yield(value)

    from napari.qt.threading import thread_worker

    worker = thread_worker(guarded, start_thread=False)()
    if on_yield is not None:
        worker.yielded.connect(on_yield)
    if on_finish is not None:
        worker.returned.connect(on_finish)
    worker.start()
    return worker
