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


class JobControls:
    """Run and Cancel buttons, a progress bar and a status line for one job at a time: what
    a dock widget that runs a job shows below its form."""

    def __init__(self, run_text: str):
        import threading

        from magicgui.widgets import Container, Label, PushButton
        from qtpy.QtWidgets import QProgressBar, QSizePolicy

        self.run_button = PushButton(text=run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.status.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.progress_bar = QProgressBar()
        self.idle_progress()
        self.relay = ProgressRelay()
        self.cancel_requested = threading.Event()
        self.running = False
        self.worker = None

    @property
    def natives(self) -> tuple:
        """The Qt widgets to add to the dock's layout, in order."""
        return self.buttons.native, self.progress_bar, self.status.native

    def idle_progress(self) -> None:
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)

    def start(self, job: Callable[..., Generator], request, total: int, on_finish: Callable[[Any], None],
              message: str = "Loading the model ...") -> None:
        """Run ``job(request, cancelled, relay)``; ``total`` 0 shows a busy bar until progress."""
        self.cancel_requested.clear()
        self.running = True
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(0)
        self.status.value = message
        self.worker = start_job(job, request, self.cancel_requested.is_set, self.relay,
                                on_yield=self.show_message, on_finish=lambda result: self._done(result, on_finish))

    def cancel(self, message: str = "Cancelling ...") -> None:
        if self.running:
            self.cancel_requested.set()
            self.cancel_button.enabled = False
            self.status.value = message

    def show_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)

    def show_message(self, message) -> None:
        if isinstance(message, str):
            self.status.value = message

    def _done(self, result, on_finish: Callable[[Any], None]) -> None:
        self.running = False
        self.worker = None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        on_finish(result)
