"""``napari-gan train pix2pix`` and ``napari-gan predict``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_budget_args, add_device_arg, add_run_args, run_trainer


def add_train_parser(sub) -> None:
    p = sub.add_parser("pix2pix", help="train a Pix2Pix model (denoising or super-resolution)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", required=True, type=Path, help="input TIFF or folder of TIFFs")
    p.add_argument("--target", required=True, type=Path, help="target TIFF or folder (pairs matched by name)")
    p.add_argument("--task", choices=("denoise", "sr"), default="denoise")
    p.add_argument("--scale", type=int, choices=(2, 4), help="super-resolution factor (task sr)")
    p.add_argument("--channels", type=int, default=1, help="channels per image")
    add_budget_args(p)
    add_run_args(p)
    g = p.add_argument_group("data")
    g.add_argument("--val-fraction", type=float, default=0.1, help="rows of each image held out for validation")
    g.add_argument("--patch", type=int, default=96, help="training patch size (input pixels)")
    g.add_argument("--batch", type=int, default=8)
    g.add_argument("--normalize", choices=("auto", "dataset", "image"), default="auto",
                   help="input intensity range: one for the whole data set, or each image its own "
                        "(images scaled one by one, e.g. autoscaled 8-bit exports); auto measures "
                        "which makes the input-target relation consistent")
    g = p.add_argument_group("model and losses")
    g.add_argument("--depth", type=int, default=3, help="uNet levels")
    g.add_argument("--width", type=int, default=32, help="uNet channels at the first level")
    g.add_argument("--gan-loss", dest="gan_mode", default="lsgan", choices=("vanilla", "lsgan", "hinge", "wgan-gp"))
    g.add_argument("--adv-weight", type=float, default=1.0, help="0 trains a plain uNet with L1 only")
    g.add_argument("--l1-weight", type=float, default=100.0)
    g.add_argument("--adv-warmup", type=float, default=0.3, help="fraction of the budget trained with L1 only")
    g.add_argument("--lr", type=float, default=2e-4)
    g.add_argument("--disc-width", type=int, default=32)
    g.add_argument("--no-spectral-norm", dest="spectral_norm", action="store_false")
    g.add_argument("--no-amp", dest="amp", action="store_false",
                   help="float32 throughout (default: bf16 autocast on CUDA and on CPUs with native bf16)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks (faster steps on a GPU after a minute of compiling)")
    p.set_defaults(func=train)


def train(args) -> int:
    from ..core.data import paired_set_from_files
    from ..core.device import describe_device, resolve_device
    from ..core.errors import NapariGanError
    from ..core.training.base import Budget
    from ..core.families.pix2pix import Pix2PixConfig, Pix2PixTrainer, stored_config_and_norms
    from ..core import checkpoint

    budget = Budget(args.steps, args.minutes)
    device = resolve_device(args.device)
    if args.task == "sr" and args.scale is None:
        raise NapariGanError("--task sr needs --scale 2 or 4.")
    norms = (None, None)
    if args.resume:
        cfg, *norms = stored_config_and_norms(args.out / checkpoint.STATE_FILENAME) \
            if (args.out / checkpoint.STATE_FILENAME).is_file() else _nothing_to_resume(args.out)
    else:
        cfg = Pix2PixConfig(
            task=args.task, scale=args.scale or 1 if args.task == "sr" else 1, depth=args.depth,
            width=args.width, gan_mode=args.gan_mode, adv_weight=args.adv_weight,
            l1_weight=args.l1_weight, adv_warmup=args.adv_warmup, lr=args.lr, lr_d=args.lr,
            disc_width=args.disc_width, spectral_norm=args.spectral_norm, patch=args.patch,
            batch=args.batch, val_fraction=args.val_fraction, amp=args.amp)
        _refuse_overwrite(args.out)
    data = paired_set_from_files(args.input, args.target, cfg.scale, args.channels, *norms,
                                 normalization=args.normalize)
    trainer = Pix2PixTrainer(cfg, data, args.out, budget, device, args.seed,
                             log_every=args.log_every, val_every=args.val_every, compile=args.compile)
    if args.resume:
        trainer.resume_from(args.out)
    if trainer.dist.is_main:
        procs = f" x {trainer.dist.world_size} processes" if trainer.dist.enabled else ""
        print(f"pix2pix {cfg.task}{' x' + str(cfg.scale) if cfg.scale > 1 else ''}: "
              f"{len(data.inputs)} image(s), device {describe_device(device)}{procs}, "
              f"inputs normalised {'per image' if data.input_norm.per_image else 'over the data set'}, "
              f"starting at step {trainer.step}", flush=True)
    run_trainer(trainer, args.quiet)
    return 0


def _nothing_to_resume(out: Path):
    from ..core.errors import NapariGanError

    raise NapariGanError(f"Nothing to resume in '{out}': it holds no training_state.safetensors.")


def _refuse_overwrite(out: Path) -> None:
    from ..core import checkpoint
    from ..core.errors import NapariGanError

    if (out / checkpoint.STATE_FILENAME).exists():
        raise NapariGanError(
            f"'{out}' already holds a training run; add --resume to continue it or choose another --out."
        )


def add_predict_parser(sub) -> None:
    p = sub.add_parser("predict", help="apply a Pix2Pix model to a TIFF or a folder of TIFFs",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="model file or run folder")
    p.add_argument("--input", required=True, type=Path, help="TIFF or folder of TIFFs")
    p.add_argument("--output", required=True, type=Path, help="output TIFF (for a file) or folder")
    add_device_arg(p)
    p.add_argument("--tile", type=int, help="tile size in input pixels (default: 256 CPU, 512 GPU)")
    p.add_argument("--overlap", type=int, default=48, help="tile overlap in input pixels")
    p.add_argument("--channel-axis", type=int, help="axis of the channels for multi-channel models")
    p.set_defaults(func=predict)


def predict(args) -> int:
    from ..core.inference import load_predictor
    from ..core.io import check_writable, expand_paths, read_tiff, write_tiff

    predictor = load_predictor(args.model, args.device)
    files = expand_paths(args.input)
    if args.input.is_dir():
        if args.output.suffix.lower() in (".tif", ".tiff"):
            from ..core.errors import NapariGanError
            raise NapariGanError("--input is a folder, so --output must be a folder too.")
        outputs = [args.output / f.name for f in files]
    else:
        outputs = [args.output if args.output.suffix else args.output / files[0].name]
    for out in outputs:
        check_writable(out)
    print(f"predicting {len(files)} file(s) on {predictor.device_name}", flush=True)
    for f, out in zip(files, outputs):
        image = read_tiff(f, memmap=True)
        result = predictor.predict(image, args.channel_axis, args.tile, args.overlap, name=f.name,
                                   progress=lambda i, n: print(f"  {f.name}: {100 * i // n:3d}%", end="\r",
                                                               file=sys.stderr, flush=True))
        write_tiff(out, result)
        print(f"{f.name}: {image.shape} {image.dtype} -> {out} {result.shape} float32", flush=True)
    return 0
