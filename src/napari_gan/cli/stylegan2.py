"""``napari-gan train stylegan2`` and ``napari-gan generate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_budget_args, add_device_arg, add_run_args, run_trainer

TIFF_SUFFIXES = (".tif", ".tiff")


def add_train_parser(sub) -> None:
    p = sub.add_parser("stylegan2", help="train a StyleGAN2 model that generates images like yours",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", required=True, type=Path,
                   help="TIFF stack, one large image (random crops are taken) or a folder of TIFFs")
    p.add_argument("--resolution", type=int, help="image size to generate: 64, 128, 256 ... (required unless --resume)")
    p.add_argument("--channels", type=int, default=1, help="channels per image")
    add_budget_args(p)
    budget = next(g for g in p._action_groups if g.title.startswith("budget"))
    budget.add_argument("--kimg", type=float, help="thousands of training images to show the discriminator")
    add_run_args(p)
    g = p.add_argument_group("model (unset values are derived from resolution and batch)")
    g.add_argument("--size", default="auto", choices=("auto", "small", "medium", "full"),
                   help="network width; auto: small on CPU, full on a GPU")
    g.add_argument("--batch", type=int, help="images per step, over all processes under torchrun (auto: 4096/resolution, at most 32; 4 for small)")
    g.add_argument("--channel-base", type=int, help="feature maps = channel_base / resolution ...")
    g.add_argument("--channel-max", type=int, help="... capped at channel_max")
    g.add_argument("--z-dim", type=int, help="latent (noise vector) length; also the w length")
    g.add_argument("--mapping-layers", type=int, default=2)
    g = p.add_argument_group("training")
    g.add_argument("--lr", type=float, help="Adam learning rate (auto: 0.0025)")
    g.add_argument("--gamma", type=float, help="R1 weight (auto: 0.0002 * resolution^2 / batch)")
    g.add_argument("--ema-kimg", type=float, help="EMA half-life in kimg (auto: batch * 10/32)")
    g.add_argument("--pl-weight", type=float,
                   help="path-length regularisation weight, 0: off (auto: 0 for small, else 2)")
    g.add_argument("--style-mixing", type=float, help="style-mixing probability (auto: 0 for small, else 0.9)")
    g.add_argument("--augment", choices=("ada", "none"), default="ada",
                   help="ada: adaptive discriminator augmentation; none: fixed probability --aug-p")
    g.add_argument("--aug-p", type=float, default=0.0, help="initial (or, with --augment none, fixed) probability")
    g.add_argument("--ada-target", type=float, default=0.6)
    g.add_argument("--ada-kimg", type=float, default=100.0, help="kimg for the probability to go from 0 to 1")
    g.add_argument("--no-mirror", dest="mirror", action="store_false",
                   help="no random flips/90-degree rotations of the training crops")
    g.add_argument("--eval-images", type=int, default=64, help="images generated for the SWD quality figure")
    g.add_argument("--no-amp", dest="amp", action="store_false",
                   help="float32 throughout (default: bf16 autocast on CUDA and on CPUs with native bf16)")
    g.add_argument("--compile", action="store_true", help="torch.compile the main passes (not the regularisers)")
    p.set_defaults(func=train)


def _config_from_args(args, device):
    from ..core.errors import NapariGanError
    from ..core.families.stylegan2 import StyleGAN2Config

    if args.resolution is None:
        raise NapariGanError("Give the image size to generate with --resolution (e.g. 64, 128 or 256).")

    size = args.size if args.size != "auto" else ("small" if device.type == "cpu" else "full")
    return StyleGAN2Config(
        resolution=args.resolution, channels=args.channels, size=size, batch=args.batch,
        z_dim=args.z_dim, w_dim=args.z_dim, mapping_layers=args.mapping_layers,
        channel_base=args.channel_base, channel_max=args.channel_max, lr=args.lr, gamma=args.gamma,
        ema_kimg=args.ema_kimg, pl_weight=args.pl_weight, style_mixing=args.style_mixing,
        augment=args.augment, aug_p=args.aug_p, ada_target=args.ada_target, ada_kimg=args.ada_kimg,
        mirror=args.mirror, eval_images=args.eval_images, amp=args.amp, compile=args.compile)


def train(args) -> int:
    from ..core import checkpoint
    from ..core.device import describe_device, resolve_device
    from ..core.training.base import Budget
    from ..core.families.stylegan2 import StyleGAN2Trainer, image_set_from_files, stored_config_and_norm
    from .pix2pix import _nothing_to_resume, _refuse_overwrite

    budget = Budget(args.steps, args.minutes, args.kimg)
    device = resolve_device(args.device)
    state_path = args.out / checkpoint.STATE_FILENAME
    norm = None
    if args.resume:
        cfg, norm = stored_config_and_norm(state_path) if state_path.is_file() else _nothing_to_resume(args.out)
    else:
        cfg = _config_from_args(args, device)
        _refuse_overwrite(args.out)
    data = image_set_from_files(args.images, cfg.resolution, args.channels, norm)
    trainer = StyleGAN2Trainer(cfg, data, args.out, budget, device, args.seed,
                               log_every=args.log_every, val_every=args.val_every)
    if args.resume:
        trainer.resume_from(args.out)
    if trainer.dist.is_main:
        procs = f" x {trainer.dist.world_size} processes" if trainer.dist.enabled else ""
        print(f"stylegan2 {cfg.resolution}x{cfg.resolution} ({cfg.size}, batch {cfg.batch}): "
              f"{len(data.planes)} image(s), device {describe_device(device)}{procs}, "
              f"starting at step {trainer.step}", flush=True)
    run_trainer(trainer, args.quiet)
    return 0


def add_generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate images with a StyleGAN2 model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="model file or run folder")
    p.add_argument("--output", required=True, type=Path, help="output TIFF: all images as one stack")
    p.add_argument("--n", type=int, default=16, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same images")
    p.add_argument("--truncation", type=float, default=1.0, help="psi: 1 = full variety, 0.5-0.8 = more typical")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--latents", type=Path, help="generate from latent vectors saved with --save-latents (.npy)")
    src.add_argument("--interpolate", nargs=2, type=int, metavar=("SEED_A", "SEED_B"),
                     help="a sequence morphing from SEED_A's image to SEED_B's")
    p.add_argument("--frames", type=int, default=30, help="frames of an --interpolate sequence")
    p.add_argument("--save-latents", type=Path, help="also save the latent vectors used (.npy)")
    add_device_arg(p)
    p.set_defaults(func=generate)


def generate(args) -> int:
    from ..core.errors import NapariGanError
    from ..core.generation import load_generator
    from ..core.io import check_writable, write_tiff

    if args.output.suffix.lower() not in TIFF_SUFFIXES:
        raise NapariGanError(f"--output must be a TIFF file name (.tif), not '{args.output}'.")
    check_writable(args.output)
    if args.save_latents is not None:
        check_writable(args.save_latents)
    gen = load_generator(args.model, args.device)
    if args.latents is not None:
        z = _read_latents(args.latents)
    elif args.interpolate is not None:
        z = gen.interpolation_latents(*args.interpolate, args.frames)
    else:
        z = gen.latents(args.n, args.seed)
    images = gen.generate_from_latents(z, args.truncation)
    write_tiff(args.output, images)
    print(f"{len(images)} image(s) {images.shape[1:]} float32 -> {args.output} ({gen.device_name})", flush=True)
    if args.save_latents is not None:
        _write_latents(args.save_latents, z)
        print(f"latent vectors {z.shape} -> {args.save_latents}", flush=True)
    return 0


def _read_latents(path: Path):
    import numpy as np

    from ..core.errors import NapariGanError

    if not path.is_file():
        raise NapariGanError(f"Latent file '{path}' does not exist.")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise NapariGanError(f"'{path}' is not a .npy file of latent vectors ({exc}).") from exc


def _write_latents(path: Path, z) -> None:
    import numpy as np

    from ..core.io import atomic_write

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object, so np.save does not append ".npy"
            np.save(f, z)

    atomic_write(path, write)
