"""Run folders: the one set of rules both faces follow, and starting a training run.

A run folder holds ``model.safetensors`` (best validation score), ``last.safetensors`` and
``training_state.safetensors`` (everything needed to resume exactly). A new run never
overwrites an earlier one; ``resume`` continues the one that is there.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import checkpoint
from .errors import NapariGanError
from .io import check_writable

if TYPE_CHECKING:
    import torch

    from .families import Family, Images
    from .training.base import Trainer

RUNS_HOME = Path.home() / "napari-gan-runs"


def default_folder(family: str = "run") -> Path:
    """A new folder name for a run started without one: ~/napari-gan-runs/FAMILY-DATE-TIME."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return RUNS_HOME / f"{family}-{stamp}"


def check_folder(out: str | Path, resume: bool) -> Path | None:
    """Check ``out`` for a new run (nothing of an earlier run in it) or for resuming (its
    training state is there); return the state file when resuming."""
    out = Path(out).expanduser()
    state = out / checkpoint.STATE_FILENAME
    if out.exists() and not out.is_dir():
        raise NapariGanError(f"'{out}' is a file; give a folder for the run.")
    if resume:
        if not state.is_file():
            raise NapariGanError(f"Nothing to resume in '{out}': it holds no saved training run "
                                 f"({checkpoint.STATE_FILENAME}).")
        check_writable(state)
        return state
    if state.exists():
        raise NapariGanError(f"'{out}' already holds a training run; resume it (--resume, or Resume in "
                             "napari) or choose another folder.")
    models = [out / name for name in (checkpoint.MODEL_FILENAME, checkpoint.LAST_FILENAME)]
    if any(m.exists() for m in models):
        raise NapariGanError(f"'{out}' already holds a model; choose another folder so that it is not "
                             "overwritten.")
    check_writable(out / checkpoint.MODEL_FILENAME)
    return None


def start(family: "Family", values: dict, out: str | Path, resume: bool, device: "torch.device",
          read_images: Callable[[object], dict[str, "Images"]]) -> "Trainer":
    """Check the folder, make (or, resuming, read back) the configuration, read the images
    with ``read_images(cfg)`` and return the trainer, restored when resuming."""
    from .training.base import RunSettings

    out = Path(out).expanduser()
    state = check_folder(out, resume)
    run = RunSettings(**{k: v for k, v in values.items() if k in RunSettings.__dataclass_fields__})
    normalization = None
    if state is not None:
        header = checkpoint.read_header(state, expect_role="training_state")
        if header.family != family.name:
            raise NapariGanError(f"The run in '{out}' is a {header.family} run, not {family.name}.")
        cfg = family.config_from_header(header)
        normalization = header.normalization
    else:
        cfg = family.make_config(values, device)
    images = read_images(cfg)
    trainer = family.make_trainer(cfg, images, out, run.budget(), device, run.seed, normalization,
                                  log_every=run.log_every, val_every=run.val_every)
    if state is not None:
        trainer.resume_from(state)
        if run.steps is not None and trainer.step >= run.steps:
            raise NapariGanError(f"The run in '{out}' already reached step {trainer.step}; ask for more "
                                 "steps than that to train further.")
    return trainer
