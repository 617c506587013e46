"""The ``napari-gan`` command line: a thin face over :mod:`napari_gan.core`.

Sub-commands: ``train FAMILY`` (one per registered family), ``predict``, ``generate``, ``demo``.
Every user error is printed as one line starting with ``error:`` (exit status 2), never
as a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__


def build_parser() -> argparse.ArgumentParser:
    from ..core import families
    from . import apply, demo, train

    listed = "; ".join(f"{f.name}: {f.summary}" for f in families.all_families())
    parser = argparse.ArgumentParser(
        prog="napari-gan",
        description=f"Train and apply GANs on microscopy images. Model families: {listed}.",
    )
    parser.add_argument("--version", action="version", version=f"napari-gan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train.add_parsers(sub)
    apply.add_predict_parser(sub)
    apply.add_generate_parser(sub)
    demo.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ..core.errors import NapariGanError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NapariGanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, permissions, ... outside the checked paths
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
