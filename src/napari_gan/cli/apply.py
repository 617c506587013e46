"""``napari-gan predict`` (families that turn an image into an image) and ``napari-gan
generate`` (families that generate images from noise).

Both check every option and every output before any image is read or any model loaded: an
output never replaces an input, a model file or a training state, nor a file napari-gan did
not write; it has a suffix its writer writes. Their results are checked too: a model that
produces NaN or infinite values stops with an error naming the file, and nothing of it is
written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_axes_arg, add_device_arg, add_series_arg, check_early

TIFF_SUFFIXES = (".tif", ".tiff")
LATENT_SUFFIXES = (".npy",)


def _load(path: Path, mode: str, device: str, amp: bool = True, options: dict | None = None):
    from ..core.families import open_model

    return open_model(path, mode, device, amp, options)[2]


def family_predict_settings() -> list:
    """The predict options that image families add to the shared PredictSettings (e.g.
    CycleGAN's --direction), each declared setting once by name: ``[(family, declared)]``."""
    from ..core import families, settings
    from ..core.inference import PredictSettings

    seen = {d.name for d in settings.declared(PredictSettings)}
    out = []
    for family in families.all_families():
        if family.apply_mode != "image":
            continue
        for d in settings.declared(family.apply_settings):
            if d.name not in seen:
                seen.add(d.name)
                out.append((family, d))
    return out


def model_files(model: Path) -> list[tuple[Path, str]]:
    """The files of a model a command must never write to: the model file (or a run
    folder's model) and the other files of its run folder, each with a word on what it is."""
    from ..core import checkpoint

    model = Path(model).expanduser()
    folder = model if model.is_dir() else model.parent
    files = [] if model.is_dir() else [(model, "the model file")]
    names = {checkpoint.MODEL_FILENAME: "the model file", checkpoint.LAST_FILENAME: "the model file",
             checkpoint.STATE_FILENAME: "the training state"}
    files += [(folder / name, what) for name, what in names.items() if (folder / name).exists()]
    return files


def _check_finite(values, source: str, model: Path) -> None:
    import numpy as np

    from ..core.axes import count_non_finite
    from ..core.errors import NapariGanError

    bad = count_non_finite(values if hasattr(values, "dtype") else np.asarray(values))
    if bad:
        raise NapariGanError(
            f"The model '{model}' produced {bad:,} NaN or infinite value(s) for {source}; nothing was "
            "written for it. The model file is damaged or its training diverged; use another model "
            "(e.g. the run's last.safetensors) or train again.")


# ------------------------------------------------------------------------------ predict
def add_predict_parser(sub) -> None:
    from ..core import settings
    from ..core.inference import PredictSettings

    p = sub.add_parser("predict", help="apply a model to a TIFF or a folder of TIFFs",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="model file or run folder")
    p.add_argument("--input", required=True, type=Path,
                   help="TIFF or OME-Zarr (.zarr folder), or a folder of them")
    p.add_argument("--output", required=True, type=Path,
                   help="output TIFF or OME-Zarr (.ome.zarr: streamed chunk by chunk, with a pyramid) for one "
                        "input, else a folder; never one of the inputs. Under torchrun --nproc_per_node N the "
                        "processes share the files, or the planes and chunk rows of one image")
    add_device_arg(p)
    add_axes_arg(p)
    add_series_arg(p)
    settings.add_arguments(p, PredictSettings)
    groups = {}
    for family, d in family_predict_settings():   # e.g. --direction, for CycleGAN models
        if family.name not in groups:
            groups[family.name] = p.add_argument_group(f"{family.title} models")
        settings.add_arguments(groups[family.name], family.apply_settings, only=(d.name,))
    p.set_defaults(func=predict)


def predict_outputs(inputs: Path, files: list[Path], output: Path) -> list[Path]:
    """The output file of each input file: ``output`` itself for one input file given with a
    file name, else the input's name inside the ``output`` folder."""
    from ..core.errors import NapariGanError

    from ..core.zarr_io import is_zarr_path

    output = output.expanduser()
    if inputs.is_dir() and not is_zarr_path(inputs):   # a folder of images (an OME-Zarr is one image)
        if output.suffix and not output.is_dir():
            raise NapariGanError(f"--input is a folder, so --output must be a folder too, not '{output}'.")
        return [output / f.name for f in files]
    if (output.is_dir() and not is_zarr_path(output)) or not output.suffix:   # an existing .zarr is an output
        return [output / files[0].name]
    return [output]


def predict(args) -> int:
    from ..core import settings
    from ..core.axes import read_image, write_image
    from ..core.checkpoint import resolve_model_path
    from ..core.inference import PredictSettings
    from ..core.io import check_output, expand_paths

    # every option and output first: nothing is read before they are all fine
    how = settings.from_args(PredictSettings, args)
    options = {d.name: settings.check_value(d, getattr(args, d.name)) for _, d in family_predict_settings()}
    check_early(args)
    model = resolve_model_path(args.model.expanduser())
    files = expand_paths(args.input.expanduser())
    outputs = predict_outputs(args.input.expanduser(), files, args.output)
    protected = [(f, "the input image") for f in files] + model_files(args.model)
    from ..core.zarr_io import check_zarr_output, is_zarr_path

    for out in outputs:
        if is_zarr_path(out):   # an OME-Zarr folder
            check_zarr_output(out, protected)
        else:
            check_output(out, protected)

    predictor = _load(model, "image", args.device, how.amp, options)
    from ..core.device import distributed_info
    from ..core.inference import needs_streaming, predict_files

    team = distributed_info()
    if team.is_main:
        workers = f" with {team.world_size} processes" if team.enabled else ""
        print(f"predicting {len(files)} file(s) on {predictor.device_name}{workers}", flush=True)

    if needs_streaming(files, outputs, predictor, how):   # OME-Zarr, huge images, torchrun
        predict_files(predictor, files, outputs, how, axes=args.axes, series=args.series,
                      check=lambda values, source: _check_finite(values, source, model),
                      log=lambda text: print(text, flush=True),
                      progress=lambda name, i, n: print(f"  {name}: {100 * i // n:3d}%", end="\r",
                                                        file=sys.stderr, flush=True))
        return 0
    for f, out in zip(files, outputs):
        image = read_image(f, axes=args.axes, series=args.series)
        result = predictor.predict_image(image, how.tile, how.overlap,
                                         progress=lambda i, n: print(f"  {f.name}: {100 * i // n:3d}%", end="\r",
                                                                     file=sys.stderr, flush=True))
        _check_finite(result.data, f"'{f}'", model)
        write_image(out, result)
        print(f"{f.name}: {image.axes} {image.shape} {image.dtype} -> {out} {result.axes} {result.shape} float32",
              flush=True)
    return 0


# ----------------------------------------------------------------------------- generate
def add_generate_parser(sub) -> None:
    from ..core import settings
    from ..core.generation import GenerateSettings

    p = sub.add_parser("generate", help="generate images from noise with a StyleGAN2 model",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="model file or run folder")
    p.add_argument("--output", required=True, type=Path,
                   help="output TIFF: all images as one stack (axes ZYX, or TYX for --interpolate)")
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
    from ..core.axes import AxesImage, write_image
    from ..core.checkpoint import resolve_model_path
    from ..core.errors import NapariGanError
    from ..core.generation import GenerateSettings
    from ..core.io import check_output

    what = settings.from_args(GenerateSettings, args)
    if args.interpolate is not None and not all(0 <= s <= 2**31 - 1 for s in args.interpolate):
        raise NapariGanError(f"--interpolate seeds must be from 0 to {2**31 - 1}, not "
                             f"{' '.join(map(str, args.interpolate))}.")
    model = resolve_model_path(args.model.expanduser())
    protected = model_files(args.model)
    if args.latents is not None:
        protected.append((args.latents.expanduser(), "the latent vectors given with --latents"))
    check_output(args.output, protected)
    if args.save_latents is not None:
        check_output(args.save_latents, protected, LATENT_SUFFIXES, "--save-latents", replace=is_latents_file)

    z = _read_latents(args.latents.expanduser()) if args.latents is not None else None
    gen = _load(model, "noise", args.device)
    if z is None and args.interpolate is not None:
        gen.check_sequence_class(what.class_name)   # a sequence shows one class
        z = gen.interpolation_latents(*args.interpolate, what.frames)
    elif z is None:
        z = gen.latents(what.n, what.seed)
    images = gen.generate_from_latents(z, what.truncation, what.class_name)
    _check_finite(images, f"'{args.output}'", model)
    if args.save_latents is not None:   # the small file first: a full disk stops before the stack
        _write_latents(args.save_latents, z)
        print(f"latent vectors {z.shape} -> {args.save_latents}", flush=True)
    stack = "T" if args.interpolate is not None else "Z"    # a sequence in time, or a stack of samples
    axes = stack + ("YX" if images.ndim == 3 else "CYX")
    write_image(args.output, AxesImage(images, axes))
    print(f"{len(images)} image(s) {images.shape[1:]} float32 -> {args.output} ({axes}, {gen.device_name})",
          flush=True)
    return 0


def is_latents_file(path: Path) -> bool:
    """Whether ``path`` holds latent vectors (a 2-D float array in .npy), which --save-latents
    may replace; any other file there is kept."""
    import numpy as np

    try:
        z = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:
        return False
    return getattr(z, "ndim", 0) == 2 and z.dtype.kind == "f"


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
    import io

    import numpy as np

    from ..core.io import atomic_write

    def write(tmp: str) -> None:
        # np.save straight into a file can lose a failed write (its C-level buffer is flushed
        # without a check), so the bytes are made in memory and written by Python, which raises
        buffer = io.BytesIO()
        np.save(buffer, z)
        with open(tmp, "wb") as f:
            f.write(buffer.getvalue())

    atomic_write(path, write)
