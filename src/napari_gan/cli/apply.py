"""``napari-gan predict`` (families that turn an image into an image) and ``napari-gan
generate`` (families that generate images from noise)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_axes_arg, add_device_arg

TIFF_SUFFIXES = (".tif", ".tiff")


def _load(path: Path, mode: str, device: str, amp: bool = True):
    from ..core.families import open_model

    return open_model(path, mode, device, amp)[2]


def add_predict_parser(sub) -> None:
    from ..core import settings
    from ..core.inference import PredictSettings

    p = sub.add_parser("predict", help="apply a model to a TIFF or a folder of TIFFs",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="model file or run folder")
    p.add_argument("--input", required=True, type=Path, help="TIFF or folder of TIFFs")
    p.add_argument("--output", required=True, type=Path, help="output TIFF (for a file) or folder")
    add_device_arg(p)
    add_axes_arg(p)
    settings.add_arguments(p, PredictSettings)
    p.set_defaults(func=predict)


def predict(args) -> int:
    from ..core import settings
    from ..core.axes import read_image, write_image
    from ..core.errors import NapariGanError
    from ..core.inference import PredictSettings
    from ..core.io import check_writable, expand_paths

    how = settings.from_args(PredictSettings, args)
    files = expand_paths(args.input)
    if args.input.is_dir():
        if args.output.suffix.lower() in TIFF_SUFFIXES:
            raise NapariGanError("--input is a folder, so --output must be a folder too.")
        outputs = [args.output / f.name for f in files]
    else:
        outputs = [args.output if args.output.suffix else args.output / files[0].name]
    for out in outputs:
        check_writable(out)
    predictor = _load(args.model, "image", args.device, how.amp)
    print(f"predicting {len(files)} file(s) on {predictor.device_name}", flush=True)
    for f, out in zip(files, outputs):
        image = read_image(f, axes=args.axes)
        result = predictor.predict_image(image, how.tile, how.overlap,
                                         progress=lambda i, n: print(f"  {f.name}: {100 * i // n:3d}%", end="\r",
                                                                     file=sys.stderr, flush=True))
        write_image(out, result)
        print(f"{f.name}: {image.axes} {image.shape} {image.dtype} -> {out} {result.axes} {result.shape} float32",
              flush=True)
    return 0


def add_generate_parser(sub) -> None:
    from ..core import settings
    from ..core.generation import GenerateSettings

    p = sub.add_parser("generate", help="generate images from noise with a StyleGAN2 model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="model file or run folder")
    p.add_argument("--output", required=True, type=Path, help="output TIFF: all images as one stack")
    settings.add_arguments(p, GenerateSettings)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--latents", type=Path, help="generate from latent vectors saved with --save-latents (.npy)")
    src.add_argument("--interpolate", nargs=2, type=int, metavar=("SEED_A", "SEED_B"),
                     help="a sequence morphing from SEED_A's image to SEED_B's")
    p.add_argument("--save-latents", type=Path, help="also save the latent vectors used (.npy)")
    add_device_arg(p)
    p.set_defaults(func=generate)


def generate(args) -> int:
    from ..core import settings
    from ..core.errors import NapariGanError
    from ..core.generation import GenerateSettings
    from ..core.io import check_writable, write_tiff

    what = settings.from_args(GenerateSettings, args)
    if args.output.suffix.lower() not in TIFF_SUFFIXES:
        raise NapariGanError(f"--output must be a TIFF file name (.tif), not '{args.output}'.")
    check_writable(args.output)
    if args.save_latents is not None:
        check_writable(args.save_latents)
    gen = _load(args.model, "noise", args.device)
    if args.latents is not None:
        z = _read_latents(args.latents)
    elif args.interpolate is not None:
        z = gen.interpolation_latents(*args.interpolate, what.frames)
    else:
        z = gen.latents(what.n, what.seed)
    images = gen.generate_from_latents(z, what.truncation)
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
