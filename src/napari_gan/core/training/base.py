"""The training loop shared by every model family.

A trainer is driven by iterating :meth:`Trainer.run`, which yields
:class:`~napari_gan.core.events.TrainEvent` objects: the CLI prints them, the napari
widget forwards them from a ``thread_worker``. :meth:`Trainer.request_stop` ends the
loop after the current step; the model and the full training state are then saved so
that a later run resumes exactly (weights, optimiser state, step, RNG state).

Subclasses implement the family-specific parts (``train_step``, ``validate``,
``model_networks``, ``normalization``, ``training_state``/``load_training_state``).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .. import checkpoint, distributed, settings
from ..device import distributed_info
from ..errors import NapariGanError
from ..events import TrainEvent
from ..settings import setting

MAX_ROLLBACKS = 3
#: the step budget when neither a time limit nor kimg is given
DEFAULT_STEPS = 2000
#: after a NaN rollback the learning rates are multiplied by this (and the random streams change)
ROLLBACK_LR_FACTOR = 0.5


@dataclass
class RunSettings:
    """Settings of a training run that every family shares (declared once)."""

    steps: int | None = setting(None, "total optimisation steps; a resumed run continues up to this number",
                                min=1, max=10**9, auto=f"{DEFAULT_STEPS} unless a time limit or kimg is given",
                                label="Steps")
    minutes: float | None = setting(None, "wall-clock training time of this run", min=0, min_exclusive=True,
                                    max=10**7, auto="no time limit", label="Time limit (min)")
    kimg: float | None = setting(None, "thousands of training images to show (StyleGAN2's usual budget)",
                                 min=0, min_exclusive=True, max=10**7, auto="no limit", advanced=True,
                                 label="Budget (kimg)")
    val_every: int = setting(200, "validate, update the preview and save the best model every N steps",
                             min=1, max=10**9, label="Validate every")
    log_every: int = setting(20, "report the losses every N steps", min=1, max=10**9, advanced=True,
                             label="Plot every")
    seed: int = setting(0, "random seed: the same seed repeats a run on the same device", min=0,
                        max=2**31 - 1, advanced=True)

    def __post_init__(self):
        settings.check(self)

    def budget(self) -> "Budget":
        steps = self.steps
        if steps is None and self.minutes is None and self.kimg is None:
            steps = DEFAULT_STEPS
        return Budget(steps, self.minutes, self.kimg)


@dataclass
class Budget:
    """Train until ``steps`` total steps, for ``minutes`` of wall-clock time in this run, or
    until ``kimg`` thousand images in total have been seen (whichever comes first).

    ``images_per_step`` (batch x processes) is set by the trainer; it converts kimg to steps.
    """

    steps: int | None = None
    minutes: float | None = None
    kimg: float | None = None
    images_per_step: int = field(default=1, repr=False)

    def __post_init__(self):
        if self.steps is None and self.minutes is None and self.kimg is None:
            raise NapariGanError("Give a training budget: a number of steps or of minutes "
                                 "(or of thousands of images, kimg).")
        if self.steps is not None and self.steps <= 0:
            raise NapariGanError("The number of steps must be positive.")
        if self.minutes is not None and not self.minutes > 0:
            raise NapariGanError("The number of minutes must be positive.")
        if self.kimg is not None and not self.kimg > 0:
            raise NapariGanError("The number of kimg (thousands of images) must be positive.")

    def step_limits(self) -> list[int]:
        limits = [self.steps] if self.steps is not None else []
        if self.kimg is not None:
            limits.append(max(1, math.ceil(1000 * self.kimg / max(1, self.images_per_step))))
        return limits

    def fraction(self, step: int, start_step: int, run_seconds: float) -> float:
        parts = [step / limit for limit in self.step_limits()]
        if self.minutes is not None:
            parts.append(run_seconds / (60 * self.minutes))
        return min(1.0, max(parts))

    def eta(self, step: int, start_step: int, run_seconds: float) -> float | None:
        done = step - start_step
        etas = []
        if done > 0:
            etas += [run_seconds / done * max(0, limit - step) for limit in self.step_limits()]
        if self.minutes is not None:
            etas.append(max(0.0, 60 * self.minutes - run_seconds))
        return min(etas) if etas else None


class Trainer:
    """Common loop: budget, logging, validation, best/last model files, NaN rollback."""

    kind = ""
    state_parts: tuple[str, ...] = ()     # top-level entries of training_state() (checked on resume)

    def __init__(self, out_dir: str | Path, budget: Budget, device: torch.device, seed: int = 0,
                 log_every: int = 10, val_every: int = 100, batch: int = 1):
        self.out_dir = Path(out_dir)
        self.budget, self.device, self.seed, self.batch = budget, device, seed, batch
        self.log_every, self.val_every = max(1, log_every), max(1, val_every)
        self.dist = distributed_info()
        budget.images_per_step = batch * self.dist.world_size
        self.step = 0
        self.elapsed_total = 0.0          # seconds over all runs, including resumed ones
        self.best_score = -math.inf
        self.rng = np.random.default_rng([seed, self.dist.rank])
        torch.manual_seed(seed)
        # The learning-rate schedule and the adversarial warm-up follow steps. With a step (or
        # kimg) budget the schedule ends at its last step; with a time budget at the step the
        # run will reach at its measured speed. That end is saved with the training state and
        # kept on resume, so a run stopped and resumed follows the schedule of an
        # uninterrupted one and does not warm up again.
        self.schedule_steps: float | None = None
        self._schedule_fixed = False
        self.cfg = None                   # the family's configuration (set by the subclass)
        #: where the preview sits in the first validation image, (row, column) in input
        #: pixels; None when the preview is not a crop of an input (e.g. generated samples)
        self.preview_origin: tuple[int, int] | None = None
        self.notes: list[str] = []       # things the user should know before training starts
        self.lr_scale = 1.0               # lowered by each NaN rollback
        self.rollbacks_total = 0          # changes the random streams of a replay
        self._stop = False
        self._good_state: dict | None = None
        self.run_lock = None              # the run folder's lock (runs.start), released when run() ends

    # ------------------------------------------------------------ family-specific parts
    def train_step(self, progress: float) -> dict[str, float]:
        """One optimisation step at ``progress`` (0..1) of the schedule; return its losses."""
        raise NotImplementedError

    def validate(self) -> tuple[dict[str, float], np.ndarray | None]:
        """Metrics (the first one is maximised to pick the best model) and a preview image."""
        raise NotImplementedError

    def model_networks(self) -> dict[str, torch.nn.Module]:
        """The networks a model file holds, by name (e.g. ``{"generator": G}``)."""
        raise NotImplementedError

    def normalization(self) -> dict:
        """The normalisation objects of the data, as stored in file headers."""
        return {}

    def data_record(self) -> dict:
        """What the model was trained on, for its model file's training record."""
        return {}

    def training_state(self) -> dict:
        """Everything besides the common counters needed to resume exactly."""
        raise NotImplementedError

    def load_training_state(self, state: dict) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """What is being trained, in a few words (for the first line a face prints)."""
        return self.kind

    def score(self, metrics: dict[str, float]) -> float:
        """Higher is better; default: the first metric."""
        return next(iter(metrics.values())) if metrics else -math.inf

    # ------------------------------------------------------------------ files
    @property
    def paths(self) -> dict[str, Path]:
        return {
            "best": self.out_dir / checkpoint.MODEL_FILENAME,
            "last": self.out_dir / checkpoint.LAST_FILENAME,
            "state": self.out_dir / checkpoint.STATE_FILENAME,
        }

    def _stored_config(self) -> tuple[dict, dict]:
        from ..families import get

        return get(self.kind).split_config(self.cfg)

    def save_model(self, path: Path, metrics: dict | None = None) -> Path:
        architecture, training = self._stored_config()
        finite = {k: v for k, v in (metrics or {}).items() if math.isfinite(v)}
        record = {"steps": self.step, "elapsed_s": round(self.elapsed_total, 1), **self.data_record()}
        return checkpoint.save_model(path, self.kind, architecture, self.model_networks(), self.normalization(),
                                     step=self.step, metrics=finite, training=training, record=record)

    def full_state(self) -> dict:
        state = {
            "step": self.step,
            "elapsed_total": self.elapsed_total,
            "best_score": self.best_score if math.isfinite(self.best_score) else None,
            "rng_numpy": self.rng.bit_generator.state,
            "rng_torch": torch.get_rng_state(),
            "schedule_steps": self.schedule_steps,
            "lr_scale": self.lr_scale,
            "rollbacks_total": self.rollbacks_total,
        }
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        state.update(self.training_state())
        return state

    def save_state(self) -> Path:
        architecture, training = self._stored_config()
        return checkpoint.save_state(self.paths["state"], self.kind, architecture, self.normalization(),
                                     self.full_state(), step=self.step, training=training)

    def restore_state(self, state: dict) -> None:
        self.step = int(state["step"])
        self.elapsed_total = float(state["elapsed_total"])
        best = state.get("best_score")
        self.best_score = -math.inf if best is None else float(best)
        self.rng.bit_generator.state = state["rng_numpy"]
        stored = state.get("schedule_steps")
        self.schedule_steps = float(stored) if stored else None
        self._schedule_fixed = bool(stored)
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.rollbacks_total = int(state.get("rollbacks_total", 0))
        torch.set_rng_state(state["rng_torch"])
        if "rng_cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.load_training_state(state)

    def resume_from(self, path: str | Path | None = None) -> None:
        """Load the training state saved by an earlier (stopped or finished) run."""
        path = Path(path) if path else self.paths["state"]
        if path.is_dir():
            path = path / checkpoint.STATE_FILENAME
        if not path.is_file():
            raise NapariGanError(f"Nothing to resume: '{path}' does not exist.")
        header = checkpoint.read_header(path, expect_role="training_state")
        if header.family != self.kind:
            raise NapariGanError(f"'{path}' is the training state of a {header.family} run, not {self.kind}.")
        common = ("step", "elapsed_total", "rng_numpy", "rng_torch")
        self.restore_state(checkpoint.load_state(header, require=common + self.state_parts))

    # ------------------------------------------------------------------ control
    def request_stop(self) -> None:
        """Ask the loop to end after the current step (thread-safe: a flag)."""
        self._stop = True

    @property
    def stopped(self) -> bool:
        return self._stop

    def release_folder(self) -> None:
        """Give the run folder back (its :class:`~napari_gan.core.runs.RunLock`); :meth:`run`
        does this when it ends, however it ends. Idempotent."""
        lock, self.run_lock = self.run_lock, None
        if lock is not None:
            lock.release()

    def _snapshot(self) -> None:
        self._good_state = copy.deepcopy(self.full_state())

    def _rollback(self) -> bool:
        """Back to the last good state, then replay differently: lower learning rates and
        fresh random streams (a fault tied to the same data would otherwise recur)."""
        if self._good_state is None:
            return False
        fixed, horizon = self._schedule_fixed, self.schedule_steps
        self.restore_state(copy.deepcopy(self._good_state))
        self._schedule_fixed, self.schedule_steps = fixed, horizon
        self.rollbacks_total += 1
        self.lr_scale *= ROLLBACK_LR_FACTOR
        self.reseed([self.seed, self.dist.rank, self.step, 1_000 + self.rollbacks_total])
        return True

    def reseed(self, entropy: list[int]) -> None:
        """New random streams (numpy and torch) from ``entropy``; families that keep more
        generators (samplers) extend this."""
        self.rng.bit_generator.state = np.random.default_rng(entropy).bit_generator.state
        torch.manual_seed(int(np.random.default_rng(entropy).integers(2**62)))

    def schedule_progress(self, start_step: int, run_seconds: float) -> float:
        """Where the run is in its schedule, 0..1, by steps (see ``schedule_steps``)."""
        limits = self.budget.step_limits()
        if limits:
            self.schedule_steps = float(min(limits))
        elif not self._schedule_fixed:
            done = self.step - start_step
            if done <= 0 or run_seconds <= 0:
                return min(1.0, self.step / self.schedule_steps) if self.schedule_steps else 0.0
            self.schedule_steps = start_step + done * 60 * self.budget.minutes / run_seconds
        return min(1.0, self.step / max(1.0, self.schedule_steps))

    # ------------------------------------------------------------------ the loop
    def run(self) -> Iterator[TrainEvent]:
        """Train to the end of the budget or a stop request, yielding events. The run folder's
        lock is released when the loop ends: after the final save, on an error, or when the
        caller closes the generator."""
        try:
            yield from self._loop()
        finally:
            self.release_folder()

    def _loop(self) -> Iterator[TrainEvent]:
        main = self.dist.is_main
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        start_step, t0 = self.step, time.perf_counter()
        elapsed_before = self.elapsed_total
        images, rollbacks, losses = 0, 0, {}
        self._snapshot()

        def event(kind: str, **kw) -> TrainEvent:
            run_s = time.perf_counter() - t0
            return TrainEvent(
                kind=kind, step=self.step,
                fraction=self.budget.fraction(self.step, start_step, run_s),
                elapsed_s=elapsed_before + run_s,
                eta_s=self.budget.eta(self.step, start_step, run_s),
                images_per_s=images / run_s if run_s > 0 else 0.0, **kw)

        end_message = "budget reached"
        while True:
            run_s = time.perf_counter() - t0
            fraction = self.budget.fraction(self.step, start_step, run_s)
            progress = self.schedule_progress(start_step, run_s)
            # Under DDP every process takes rank 0's clock and anyone's stop request.
            (fraction, progress), stop = distributed.agree((fraction, progress), self._stop, self.device)
            if fraction >= 1.0:
                break
            if stop:
                end_message = "stopped"
                break
            losses = self.train_step(progress)
            if not all(math.isfinite(v) for v in losses.values()):
                rollbacks += 1
                if rollbacks > MAX_ROLLBACKS or not self._rollback():
                    raise NapariGanError(
                        f"Training diverged (non-finite loss at step {self.step}) and did not "
                        "recover; try a lower learning rate. The last good model files are kept."
                    )
                yield event("warning", losses=losses,
                            message=f"non-finite loss; rolled back to step {self.step}")
                continue
            self.step += 1
            images += self.batch * self.dist.world_size
            self.elapsed_total = elapsed_before + time.perf_counter() - t0
            if self.step % self.val_every == 0:
                yield self._validation_event(event, losses, main)
                rollbacks = 0
            elif self.step % self.log_every == 0 and main:
                yield event("progress", losses=losses)

        self.elapsed_total = elapsed_before + time.perf_counter() - t0
        final = self._validation_event(event, losses, main) if self.step > 0 else None
        if main:
            self.save_model(self.paths["last"], final.metrics if final else None)
            if not self.paths["best"].exists():
                self.save_model(self.paths["best"], final.metrics if final else None)
            if final is None:  # the final validation has already saved the state
                self.save_state()
        distributed.barrier()   # the files exist for every process once it is done
        self.release_folder()
        yield event("done", losses=losses, metrics=final.metrics if final else {},
                    preview=final.preview if final else None, message=end_message,
                    paths={k: str(v) for k, v in self.paths.items()})

    def _validation_event(self, event, losses, main: bool) -> TrainEvent:
        metrics, preview = self.validate()
        message = ""
        score = self.score(metrics)
        if main and score > self.best_score:
            self.best_score = score
            self.save_model(self.paths["best"], metrics)
            message = "best so far, saved"
        if main:
            self.save_state()
        self._snapshot()
        return event("validation", losses=losses, metrics=metrics, preview=preview, message=message)
