"""The ``napari-gan`` command line: a thin face over :mod:`napari_gan.core`.

Sub-commands: ``train FAMILY`` (one per registered family), ``predict``, ``generate``, ``demo``,
``export`` (a bioimage.io model package).
Every user error is printed as one line starting with ``error:`` (exit status 2), never
as a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__


def build_parser() -> argparse.ArgumentParser:
    from ..core import families
    from . import apply, demo, export, project, train

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
    project.add_parsers(sub)   # project, synthesize
    demo.add_parser(sub)
    export.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status: 0, 2 for any error (one ``error:`` line; an
    unexpected one is a bug whose traceback goes to a log file, see :func:`crash_log_dir`),
    130 after Ctrl-C, 128 + N after signal N (SIGTERM 143, SIGHUP 129)."""
    from ..core.errors import NapariGanError
    from ..core.io import write_failure
    from .common import Terminated, stop_signals_raise

    args = build_parser().parse_args(argv)
    try:
        with stop_signals_raise():
            return int(args.func(args) or 0)
    except NapariGanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"napari-gan: stopped by {exc.name}; files already written are complete, nothing was "
              "left half-written.", file=sys.stderr)
        return 128 + exc.signum
    except MemoryError:
        print("error: out of memory; try a smaller --tile or --batch, or close other programs.", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        reason = write_failure(exc)
        if reason is not None:   # disk full, permissions, ... outside the checked paths
            where = getattr(exc, "filename", None)
            print(f"error: {reason}" + (f": '{where}'" if where else "") + ".", file=sys.stderr)
            return 2
        log = write_crash_log(exc, argv)
        where = f"the full traceback is in '{log}'" if log else "the traceback follows"
        print(f"error: an unexpected {type(exc).__name__} ({_first_line(exc)}); this is a bug in napari-gan "
              f"{__version__}, please report it; {where}.", file=sys.stderr)
        if log is None:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        return 2


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return text or "no message"


def crash_log_dir():
    """Where tracebacks of unexpected errors go: ``$NAPARI_GAN_LOG_DIR``, else
    ``~/.napari-gan/logs``, else ``napari-gan-logs`` in the temporary folder ($TMPDIR)."""
    import os
    import tempfile
    from pathlib import Path

    if os.environ.get("NAPARI_GAN_LOG_DIR"):
        yield Path(os.environ["NAPARI_GAN_LOG_DIR"]).expanduser()
    yield Path.home() / ".napari-gan" / "logs"
    yield Path(tempfile.gettempdir()) / "napari-gan-logs"


def write_crash_log(exc: BaseException, argv) -> str | None:
    """Write the traceback of ``exc`` (with the command and versions) to a new log file;
    its path, or None when no folder could take it."""
    import datetime as dt
    import os
    import platform
    import traceback

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (f"napari-gan {__version__}, Python {platform.python_version()}, {platform.platform()}\n"
            f"command: napari-gan {' '.join(map(str, sys.argv[1:] if argv is None else argv))}\n\n"
            + "".join(traceback.format_exception(exc)))
    for folder in crash_log_dir():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"crash-{stamp}-{os.getpid()}.log"
            path.write_text(text)
            return str(path)
        except OSError:
            continue
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
