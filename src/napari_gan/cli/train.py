"""``napari-gan train FAMILY``: one sub-command per registered family, built from its
declarations (inputs, settings) and the shared run settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_axes_arg, add_device_arg, add_series_arg, check_early, exit_status, run_trainer


def add_parsers(sub) -> None:
    from ..core import families, settings
    from ..core.training.base import RunSettings

    train_parser = sub.add_parser("train", help="train a model: " + ", ".join(f.name for f in families.all_families()))
    fam_sub = train_parser.add_subparsers(dest="family", required=True, metavar="FAMILY")
    for family in families.all_families():
        p = fam_sub.add_parser(family.name, help=family.summary, description=f"{family.title}: {family.summary}.")
        g = p.add_argument_group("images")
        for inp in family.inputs:
            g.add_argument(inp.flag, dest=inp.name, type=Path, required=not inp.optional, help=inp.help)
        add_axes_arg(g)
        add_series_arg(g)
        g = p.add_argument_group("run")
        g.add_argument("--out", required=True, type=Path, help="run folder for the model files")
        g.add_argument("--resume", action="store_true", help="continue the run saved in --out")
        add_device_arg(g)
        g.add_argument("--quiet", action="store_true", help="print only the final summary")
        settings.add_arguments(g, RunSettings)
        settings.add_arguments(p, family.config_class, "model and training")
        p.set_defaults(func=train)


def train(args: argparse.Namespace) -> int:
    import warnings

    from ..core import families, runs
    from ..core.device import describe_device, resolve_device

    family = families.get(args.family)
    check_early(args)
    device = resolve_device(args.device)
    paths = {inp.name: getattr(args, inp.name) for inp in family.inputs}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", runs.RunLockWarning)
        trainer = runs.start(family, vars(args), args.out, args.resume, device,
                             lambda cfg: families.images_from_files(family, paths, getattr(cfg, "channels", 1),
                                                                    args.axes, args.series))
    try:
        for w in caught:
            if issubclass(w.category, runs.RunLockWarning):
                print(f"warning: {w.message}", file=sys.stderr, flush=True)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if trainer.dist.is_main:
            procs = f" x {trainer.dist.world_size} processes" if trainer.dist.enabled else ""
            print(f"{family.name}: {trainer.describe()}, device {describe_device(device)}{procs}, "
                  f"starting at step {trainer.step}", flush=True)
        return exit_status(run_trainer(trainer, args.quiet))
    finally:
        trainer.release_folder()
