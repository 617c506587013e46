"""Reading and writing TIFF images and finding image pairs on disk."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import tifffile

from .errors import NapariGanError

TIFF_SUFFIXES = (".tif", ".tiff")


def list_tiffs(folder: str | os.PathLike) -> list[Path]:
    """Sorted TIFF files directly inside ``folder``."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and p.is_file())
    if not files:
        raise NapariGanError(f"No TIFF files (.tif/.tiff) found in folder '{folder}'.")
    return files


def expand_paths(path: str | os.PathLike) -> list[Path]:
    """A TIFF file, or every TIFF in a folder."""
    path = Path(path)
    if not path.exists():
        raise NapariGanError(f"'{path}' does not exist.")
    if path.is_dir():
        return list_tiffs(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise NapariGanError(f"'{path}' is not a TIFF file (expected .tif or .tiff).")
    return [path]


def match_pairs(inputs: str | os.PathLike, targets: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Pair input and target files: two files, or two folders matched by file name."""
    input_files, target_files = expand_paths(inputs), expand_paths(targets)
    if Path(inputs).is_file() and Path(targets).is_file():
        return [(input_files[0], target_files[0])]
    if Path(inputs).is_dir() != Path(targets).is_dir():
        raise NapariGanError("Give --input and --target both as files or both as folders.")
    by_name = {p.name: p for p in target_files}
    pairs = [(p, by_name[p.name]) for p in input_files if p.name in by_name]
    unmatched = sorted({p.name for p in input_files} ^ set(by_name))
    if not pairs:
        raise NapariGanError(
            f"No input file in '{inputs}' has a target of the same name in '{targets}'."
        )
    if unmatched:
        shown = ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")
        raise NapariGanError(
            f"{len(unmatched)} file(s) have no partner of the same name: {shown}. "
            "Pairs are matched by file name; remove or rename them."
        )
    return pairs


def read_tiff(path: str | os.PathLike, memmap: bool = False) -> np.ndarray:
    """Read a TIFF as a numpy array; memory-map it when possible and asked for."""
    path = Path(path)
    if not path.is_file():
        raise NapariGanError(f"File '{path}' does not exist.")
    try:
        if memmap:
            try:
                return tifffile.memmap(path, mode="r")
            except Exception:  # compressed or tiled files cannot be memory-mapped
                pass
        return tifffile.imread(path)
    except Exception as exc:
        raise NapariGanError(f"Could not read '{path}' as a TIFF image ({exc}).") from exc


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early, before any long computation, when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if path.parent != Path("") else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NapariGanError(f"Cannot create folder '{parent}': {exc.strerror}.") from exc
    if not os.access(parent, os.W_OK):
        raise NapariGanError(f"Cannot write to '{parent}': permission denied.")
    if path.is_dir():
        raise NapariGanError(f"'{path}' is a folder; give a file name.")
    return path


def atomic_write(path: str | os.PathLike, write_fn) -> Path:
    """Call ``write_fn(tmp_path)`` then rename over ``path``: never a half-written file."""
    path = check_writable(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise NapariGanError(f"Could not write '{path}': {exc.strerror or exc}.") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_tiff(path: str | os.PathLike, image: np.ndarray, axes: str | None = None) -> Path:
    """Write ``image`` as a (zlib-compressed, BigTIFF when large) TIFF, atomically."""
    image = np.asarray(image)
    metadata = {"axes": axes} if axes else None

    def _write(tmp: str) -> None:
        tifffile.imwrite(
            tmp, image, bigtiff=image.nbytes > 2**31, compression="zlib", metadata=metadata
        )

    return atomic_write(path, _write)
