"""``napari-gan project`` (the latents of real images, StyleGAN2) and ``napari-gan synthesize``
(a synthetic segmentation data set: new label images and the images a Pix2Pix "labels"
model makes of them).

Like ``predict`` and ``generate``, both check every option and output before reading any
image or loading the model, never write over an input or a model, and refuse NaN results.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_axes_arg, add_device_arg, add_series_arg, check_early

#: names of the files ``synthesize`` writes: FOLDER/masks/NAME and FOLDER/images/NAME
SYNTH_NAME = "synthetic_{:04d}.tif"
#: the smallest and largest side (pixels) of a synthetic mask (``synthesize --shape``)
SYNTH_SIDES = (8, 65536)


def add_parsers(sub) -> None:
    add_project_parser(sub)
    add_synthesize_parser(sub)


# ------------------------------------------------------------------------------ project
def add_project_parser(sub) -> None:
    from ..core import settings
    from ..core.projection import ProjectSettings

    p = sub.add_parser("project", help="find the latents that reproduce real images with a StyleGAN2 model",
                       description="Find the per-layer styles (w) with which a StyleGAN2 model reproduces each "
                                   "real image (of the model's resolution); 'napari-gan generate --latents' "
                                   "makes images from them again.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="StyleGAN2 model file or run folder")
    p.add_argument("--input", required=True, type=Path,
                   help="TIFF of one image or a stack of images, each of the model's resolution")
    p.add_argument("--output", required=True, type=Path,
                   help="the latents (.npy): per-layer styles of shape (N, num_ws, w_dim)")
    p.add_argument("--reconstruction", type=Path, help="also write the images made from the latents (TIFF)")
    p.add_argument("--class", dest="class_name", metavar="NAME",
                   help="class-conditional models: the class of the images (default: start from the average "
                        "of all classes)")
    p.add_argument("--sequence", type=Path,
                   help="also write a sequence (TIFF, axes TYX) morphing through the projected images in order "
                        "(needs at least 2 images)")
    p.add_argument("--frames", type=int, default=30, help="frames from one image to the next in --sequence")
    add_device_arg(p)
    add_axes_arg(p)
    add_series_arg(p)
    settings.add_arguments(p, ProjectSettings)
    p.set_defaults(func=project)


def is_styles_file(path: Path) -> bool:
    """Whether ``path`` holds latents (a 2-D or 3-D float array in .npy), which may be replaced."""
    import numpy as np

    try:
        z = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:
        return False
    return getattr(z, "ndim", 0) in (2, 3) and z.dtype.kind == "f"


def project(args) -> int:
    import numpy as np

    from ..core import settings
    from ..core.axes import AxesImage, read_image, to_planes, write_image
    from ..core.checkpoint import resolve_model_path
    from ..core.errors import NapariGanError
    from ..core.generation import ImageGenerator
    from ..core.io import check_output, expand_paths
    from ..core.projection import ProjectSettings, morph_latents
    from ..core.projection import project as run_projection
    from .apply import LATENT_SUFFIXES, _check_finite, _load, _write_latents, model_files

    how = settings.from_args(ProjectSettings, args)
    check_early(args)
    if args.frames < 2:
        raise NapariGanError(f"--frames must be at least 2, not {args.frames}.")
    model = resolve_model_path(args.model.expanduser())
    files = expand_paths(args.input.expanduser())
    if len(files) != 1:
        raise NapariGanError(f"--input must be one TIFF file (a single image or a stack), not a folder of "
                             f"{len(files)}.")
    protected = [(files[0], "the input image")] + model_files(args.model)
    check_output(args.output, protected, LATENT_SUFFIXES, "--output", replace=is_styles_file)
    for option, path in (("--reconstruction", args.reconstruction), ("--sequence", args.sequence)):
        if path is not None:
            check_output(path, protected + [(args.output, "the latents")], option=option)

    gen: ImageGenerator = _load(model, "noise", args.device)
    if args.class_name is not None:
        gen.class_index(args.class_name)   # an unknown class: the known ones, before any work
    image = read_image(files[0], axes=args.axes, series=args.series)
    planes, _ = to_planes(image, gen.channels)
    planes = np.asarray(planes)
    stack = planes[:, 0] if gen.channels == 1 else planes
    if args.sequence is not None and len(stack) < 2:
        raise NapariGanError("--sequence needs at least 2 images in --input (a stack) to morph between.")
    what = f" of class '{args.class_name}'" if args.class_name else ""
    print(f"projecting {len(stack)} image(s){what} ({how.steps} steps) on {gen.device_name}", flush=True)

    def progress(step: int, total: int, loss: float) -> None:
        if step == total or step % max(1, total // 20) == 0:
            print(f"  step {step}/{total}  loss {loss:.4f}", end="\r", file=sys.stderr, flush=True)

    result = run_projection(gen, stack, how, args.class_name, progress=progress)
    print(file=sys.stderr)
    recon = result.reconstruction if result.reconstruction.ndim == stack.ndim else result.reconstruction[None]
    _check_finite(result.styles, f"'{files[0]}'", model)
    _check_finite(recon, f"'{files[0]}'", model)
    _write_latents(args.output, result.styles)
    print(f"latents {result.styles.shape} -> {args.output}; reconstruction PSNR "
          + ", ".join(f"{p:.1f}" for p in result.psnr) + " dB", flush=True)
    lead = "Z" if len(recon) > 1 else ""
    if args.reconstruction is not None:
        data = recon if lead else recon[0]
        axes = lead + ("YX" if gen.channels == 1 else "CYX")
        write_image(args.reconstruction, AxesImage(np.ascontiguousarray(data, np.float32), axes))
        print(f"reconstruction {data.shape} -> {args.reconstruction} ({axes})", flush=True)
    if args.sequence is not None:
        frames = gen.generate_from_latents(morph_latents(gen, result.styles, args.frames), 1.0, args.class_name)
        _check_finite(frames, f"'{args.sequence}'", model)
        axes = "TYX" if gen.channels == 1 else "TCYX"
        write_image(args.sequence, AxesImage(frames, axes))
        print(f"sequence of {len(frames)} frames -> {args.sequence} ({axes})", flush=True)
    return 0


# ---------------------------------------------------------------------------- synthesize
def add_synthesize_parser(sub) -> None:
    p = sub.add_parser("synthesize", help="make a synthetic segmentation data set with a Pix2Pix labels model",
                       description="Make N new label images from the objects of training masks (randomly placed, "
                                   "rotated and deformed) and the image a Pix2Pix model trained with --task "
                                   "labels makes of each: FOLDER/masks/NAME.tif (uint16) and FOLDER/images/"
                                   "NAME.tif (float32), ready for a segmentation tool.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="Pix2Pix model (task labels) file or run folder")
    p.add_argument("--masks", required=True, type=Path,
                   help="label images whose objects are used: a TIFF or a folder of TIFFs (e.g. the training masks)")
    p.add_argument("--n", required=True, type=int, help="number of (mask, image) pairs")
    p.add_argument("--output", required=True, type=Path, help="folder for masks/ and images/")
    p.add_argument("--shape", type=int, nargs=2, metavar=("H", "W"),
                   help="size of the synthetic masks (default: that of the first label image)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same data set")
    p.add_argument("--elastic", type=float, default=0.15,
                   help="strength of the elastic deformation, as a fraction of an object's size")
    add_device_arg(p)
    add_axes_arg(p)
    add_series_arg(p)
    p.add_argument("--tile", type=int, help="tile size for large masks (default: automatic)")
    p.set_defaults(func=synthesize)


def synthesize(args) -> int:
    import numpy as np

    from ..core.axes import AxesImage, read_image, to_planes, write_image
    from ..core.checkpoint import resolve_model_path
    from ..core.errors import NapariGanError
    from ..core.io import check_output, expand_paths
    from ..core.labels import synthetic_masks
    from .apply import _check_finite, _load, model_files

    check_early(args)
    if not 1 <= args.n <= 100_000:
        raise NapariGanError(f"--n must be from 1 to 100000, not {args.n}.")
    if args.seed < 0:
        raise NapariGanError(f"--seed must be 0 or more, not {args.seed}.")
    if not 0 <= args.elastic <= 1:
        raise NapariGanError(f"--elastic must be from 0 to 1, not {args.elastic}.")
    if args.shape is not None and (min(args.shape) < SYNTH_SIDES[0] or max(args.shape) > SYNTH_SIDES[1]):
        raise NapariGanError(f"--shape must be from {SYNTH_SIDES[0]} to {SYNTH_SIDES[1]} pixels per side, "
                             f"not {args.shape[0]} {args.shape[1]}.")
    if args.tile is not None and args.tile < 32:
        raise NapariGanError(f"--tile must be at least 32, not {args.tile}.")
    model = resolve_model_path(args.model.expanduser())
    files = expand_paths(args.masks.expanduser())
    out = args.output.expanduser()
    if out.suffix.lower() in (".tif", ".tiff") or out.is_file():
        raise NapariGanError(f"--output '{args.output}' must be a folder (it gets masks/ and images/).")
    protected = [(f, "the masks given with --masks") for f in files] + model_files(args.model)
    names = [SYNTH_NAME.format(i + 1) for i in range(args.n)]
    for name in names:
        check_output(out / "masks" / name, protected)
        check_output(out / "images" / name, protected)

    predictor = _load(model, "image", args.device)
    if not hasattr(predictor, "label_classes"):
        raise NapariGanError(f"'{model}' is not a model of images from label images; synthesize needs a Pix2Pix "
                             "model trained with --task labels.")
    masks, pixel_size, unit = [], {}, None
    for f in files:
        image = read_image(f, axes=args.axes, series=args.series)
        if not pixel_size:
            pixel_size, unit = {k: v for k, v in image.pixel_size.items() if k in "YX"}, image.unit
        planes, _ = to_planes(image, 1)
        masks += [np.asarray(p[0]) for p in planes]
    rng = np.random.default_rng(args.seed)
    print(f"synthesizing {args.n} mask(s) from {len(masks)} label image(s) on {predictor.device_name}", flush=True)
    new = synthetic_masks(masks, args.n, tuple(args.shape) if args.shape else None, rng,
                          classes=predictor.label_classes, elastic=args.elastic)
    for i, (name, mask) in enumerate(zip(names, new)):
        image = predictor.predict_plane(mask[None], tile=args.tile)
        _check_finite(image, f"synthetic mask {i + 1}", model)
        data = image[0] if image.shape[0] == 1 else image
        write_image(out / "masks" / name, AxesImage(mask, "YX", dict(pixel_size), unit))
        write_image(out / "images" / name, AxesImage(data, "YX" if data.ndim == 2 else "CYX", dict(pixel_size), unit))
        objects = int(mask.max()) if not predictor.label_classes else len(np.unique(mask)) - 1
        what = "objects" if not predictor.label_classes else "classes"
        print(f"  {name}: {objects} {what}", flush=True)
    print(f"{args.n} pair(s) -> {out / 'masks'} (uint16) and {out / 'images'} (float32)", flush=True)
    return 0
