"""``napari-gan export``: a model as a bioimage.io (BioImage Model Zoo) model package."""

from __future__ import annotations

import sys
from pathlib import Path

FORMATS = ("bioimageio",)   # core.export.FORMATS, named here so building the parser imports nothing


def add_parser(sub) -> None:
    from ..core import settings

    p = sub.add_parser(
        "export", help="export a model as a bioimage.io model package (.zip) for the BioImage Model Zoo",
        description="Write a bioimage.io model package (spec 0.5): TorchScript and PyTorch state_dict "
                    "weights, test input and output computed by napari-gan, cover, documentation and the "
                    "napari-gan model file itself (so 'napari-gan predict --model NAME.zip' works). "
                    "Needs the optional packages: pip install 'napari-gan[bioimageio]'.")
    p.add_argument("--model", required=True, type=Path, help="model file, run folder or exported package")
    p.add_argument("--output", required=True, type=Path, help="the package to write (NAME.zip)")
    p.add_argument("--format", default="bioimageio", choices=FORMATS, help="export format (default: bioimageio)")
    p.add_argument("--name", help="model name, 5-128 letters, digits, spaces, '_-+()' (default: from the model)")
    p.add_argument("--description", help="one or two sentences (default: from the model)")
    p.add_argument("--authors", action="append", required=True, metavar="NAMES",
                   help="author names, 'Name; Name2' or the option repeated")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX licence identifier of the weights (default: CC-BY-4.0)")
    p.add_argument("--cite", action="append", default=[], metavar="DOI_OR_URL",
                   help="a DOI or web address to cite (repeatable; the method's paper is always cited)")
    p.add_argument("--test-input", type=Path, metavar="TIFF",
                   help="test image (Pix2Pix, CycleGAN; its first plane, cropped to a valid size; default: a "
                        "deterministic synthetic image, as model files do not store their training data)")
    p.add_argument("--cover", type=Path, metavar="IMAGE",
                   help="cover image, .png/.jpg/.gif (default: test input and output side by side)")
    p.add_argument("--no-check", action="store_true",
                   help="do not run bioimage.io's own test of the written package")
    groups = {}
    for family, d in family_export_settings():   # e.g. --direction, for CycleGAN models
        if family.name not in groups:
            groups[family.name] = p.add_argument_group(f"{family.title} models")
        settings.add_arguments(groups[family.name], family.apply_settings, only=(d.name,))
    p.set_defaults(func=export)


def family_export_settings() -> list:
    """The apply settings families add to the shared ones (CycleGAN's direction): they choose
    what is exported. Each declared once by name: ``[(family, declared)]``."""
    from ..core import families

    seen, out = set(), []
    for family in families.all_families():
        for d in families.own_apply_settings(family):
            if d.name not in seen:
                seen.add(d.name)
                out.append((family, d))
    return out


def export(args) -> int:
    from ..core import export as core_export
    from ..core import settings
    from ..core.errors import NapariGanError

    options = {d.name: settings.check_value(d, getattr(args, d.name)) for _, d in family_export_settings()}
    name, description = args.name, args.description
    if name is None or description is None:
        default_name, default_description = core_export.default_texts(args.model, options)
        name = default_name if name is None else name
        description = default_description if description is None else description
    try:   # bioimageio logs through loguru; the command prints its own progress
        from loguru import logger

        logger.disable("bioimageio")
    except ImportError:
        pass

    def progress(step: int, total: int, message: str) -> None:
        if step < total:
            print(f"[{step + 1}/{total}] {message}", flush=True)

    path = core_export.export_bioimageio(
        args.model, args.output, name, description, args.authors, args.license, args.cite,
        test_input=args.test_input, cover=args.cover, progress=progress, options=options)
    print(f"bioimage.io package written: {path} ({path.stat().st_size / 1e6:.1f} MB)", flush=True)
    if args.no_check:
        return 0
    print("running bioimage.io's test of the package ...", flush=True)
    passed, summary = core_export.check_package(path)
    if not passed:
        raise NapariGanError(f"The package '{path}' was written but failed bioimage.io's test: {summary}")
    print(f"bioimage.io test passed: {summary}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    from . import main

    sys.exit(main(["export", *sys.argv[1:]]))
