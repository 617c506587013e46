"""Reading and writing TIFF images, finding image pairs on disk, and the rules every writer
follows: outputs never replace an input, a model or a file napari-gan did not write, and a
failed write (full disk, quota, file-size limit, permissions) leaves no partial or temporary
file and the previous file intact."""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import tifffile

from .errors import NapariGanError

TIFF_SUFFIXES = (".tif", ".tiff")
#: the TIFF "Software" tag of every TIFF napari-gan writes: such files may be replaced by a
#: later run, files without it never are
SOFTWARE = "napari-gan"


def list_tiffs(folder: str | os.PathLike) -> list[Path]:
    """Sorted TIFF files directly inside ``folder``."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES and p.is_file())
    if not files:
        raise NapariGanError(f"No TIFF files (.tif/.tiff) found in folder '{folder}'.")
    return files


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted TIFF files and OME-Zarr folders (``*.zarr``, ``*.ome.zarr``) directly inside ``folder``."""
    from .zarr_io import is_zarr_path

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir()
                   if (p.suffix.lower() in TIFF_SUFFIXES and p.is_file()) or (is_zarr_path(p) and p.is_dir()))
    if not files:
        raise NapariGanError(f"No TIFF files (.tif/.tiff) or OME-Zarr folders (.zarr) found in folder '{folder}'.")
    return files


def expand_paths(path: str | os.PathLike) -> list[Path]:
    """A TIFF file or an OME-Zarr folder (``.zarr``), or every one of them in a folder."""
    from .zarr_io import is_zarr_path

    path = Path(path)
    if not path.exists():
        raise NapariGanError(f"'{path}' does not exist.")
    if is_zarr_path(path):
        if not path.is_dir():
            raise NapariGanError(f"'{path}' is not an OME-Zarr folder.")
        return [path]
    if path.is_dir():
        return list_images(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise NapariGanError(f"'{path}' is not a TIFF file (expected .tif or .tiff) or an OME-Zarr folder (.zarr).")
    return [path]


def match_pairs(inputs: str | os.PathLike, targets: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Pair input and target files: two files, or two folders matched by file name."""
    from .zarr_io import is_zarr_path

    input_files, target_files = expand_paths(inputs), expand_paths(targets)
    one = lambda p: Path(p).is_file() or is_zarr_path(p)     # an OME-Zarr folder is one image
    if one(inputs) and one(targets):
        _refuse_same_file(input_files[0], target_files[0])
        return [(input_files[0], target_files[0])]
    if one(inputs) != one(targets):
        raise NapariGanError("Give --input and --target both as files or both as folders.")
    by_name = {p.name: p for p in target_files}
    pairs = [(p, by_name[p.name]) for p in input_files if p.name in by_name]
    for a, b in pairs:
        _refuse_same_file(a, b)
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


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (links and ``..`` resolved; a path that does
    not exist yet is compared by its resolved name)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        try:
            return Path(a).resolve() == Path(b).resolve()
        except (OSError, RuntimeError):
            return os.path.abspath(a) == os.path.abspath(b)


def _refuse_same_file(a: Path, b: Path) -> None:
    if same_file(a, b):
        shown = f"'{a}'" if str(a) == str(b) else f"'{a}' and '{b}' (the same file)"
        raise NapariGanError(f"The input and the target are the same file, {shown}; a model cannot "
                             "learn anything from an image paired with itself. Give the clean or "
                             "high-resolution images as --target.")


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


_WRITE_REASONS = {
    errno.ENOSPC: "the disk is full; free some space or choose another folder",
    errno.EDQUOT: "free some of your quota or choose another folder",
    errno.EFBIG: "the file would exceed the file-size limit of this session (ulimit -f)",
    errno.EIO: "a failing disk or network share",
}


def write_failure(exc: BaseException) -> str | None:
    """Why a write failed, in words, when ``exc`` is an I/O failure (an ``OSError``, or a
    library's error wrapping one, e.g. safetensors' "I/O error: ... (os error 28)");
    ``None`` for anything else (a programming error, which is left to propagate)."""
    text = str(exc)
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    if code is None:
        found = re.search(r"os error (\d+)", text)
        if found:
            code = int(found.group(1))
    if code is not None:
        reason = os.strerror(code)
        extra = _WRITE_REASONS.get(code)
        return f"{reason}: {extra}" if extra and extra.lower() != reason.lower() else reason
    if isinstance(exc, OSError):
        if re.search(r"requested and \d+ written", text):   # numpy/tifffile short writes
            return ("only part of the data could be written (the disk is full, or a quota or "
                    "file-size limit was reached)")
        return exc.strerror or text or type(exc).__name__
    if "I/O error" in text or "IoError" in text:
        return text.splitlines()[0][:200]
    return None


def atomic_write(path: str | os.PathLike, write_fn) -> Path:
    """Call ``write_fn(tmp_path)`` then rename over ``path``: never a half-written file.

    A failed write (full disk, quota, file-size limit, permissions, ...) raises a
    :class:`NapariGanError` saying why; the temporary file is removed and a previous file
    at ``path`` is left as it was. Anything else ``write_fn`` raises propagates unchanged
    (after the same clean-up)."""
    path = check_writable(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        os.close(fd)
        os.chmod(tmp, _file_mode(path))   # mkstemp's 0600 would hide the file from the group
        write_fn(tmp)
        _fsync(tmp)                        # on disk before it replaces the previous file
        os.replace(tmp, path)
        tmp = None
    except Exception as exc:
        reason = write_failure(exc)
        if reason is None:
            raise
        kept = "; the previous file there is unchanged" if path.exists() else ""
        raise NapariGanError(f"Could not write '{path}': {reason}{kept}.") from exc
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


def _fsync(path: str) -> None:
    """Flush a written file to the disk (network file systems report a full disk only here)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):   # file systems without fsync
            raise
    finally:
        os.close(fd)


def _file_mode(path: Path) -> int:
    """The permissions a written file gets: those of the file it replaces, else the usual
    ones for a new file (0666 less the process's umask)."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        pass
    umask = 0o022
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    umask = int(line.split()[1], 8)
                    break
    except (OSError, ValueError, IndexError):
        pass
    return 0o666 & ~umask


def is_own_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file napari-gan wrote (a TIFF with its Software tag), which a
    later run may replace."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return False
    try:
        with tifffile.TiffFile(path) as tif:
            software = tif.pages[0].software if len(tif.pages) else ""
    except Exception:
        return False
    return isinstance(software, str) and software.startswith(SOFTWARE)


def check_output(path: str | os.PathLike, protected=(), suffixes: tuple[str, ...] = TIFF_SUFFIXES,
                 option: str = "--output", replace=None) -> Path:
    """Refuse an output file before any work starts: when it is, or would replace, one of
    the ``protected`` files (``(path, what)`` pairs: inputs, models, training states), has a
    suffix its writer does not write, or already exists as a file ``replace(path)`` does not
    allow replacing (by default :func:`is_own_file`: only TIFFs napari-gan wrote are replaced);
    then check that it can be written."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        kind = "TIFF" if suffixes == TIFF_SUFFIXES else suffixes[0]
        raise NapariGanError(f"{option} '{path}' must be a {kind} file name (ending in "
                             f"{' or '.join(suffixes)}).")
    for other, what in protected:
        if other is not None and same_file(path, other):
            shown = f"'{other}'" if str(other) == str(path) else f"'{other}' (the same file)"
            raise NapariGanError(f"{option} '{path}' would replace {what} {shown}; napari-gan never writes "
                                 "over its inputs or models. Choose another output.")
    if path.is_dir():
        raise NapariGanError(f"{option} '{path}' is a folder; give a file name.")
    if path.exists() and not (replace or is_own_file)(path):
        raise NapariGanError(f"{option} '{path}' already exists and was not written by napari-gan, so it is "
                             "never replaced; choose another name or move the file away.")
    return check_writable(path)


def write_tiff(path: str | os.PathLike, image: np.ndarray, axes: str | None = None) -> Path:
    """Write ``image`` as a (zlib-compressed, BigTIFF when large) TIFF, atomically."""
    image = np.asarray(image)
    metadata = {"axes": axes} if axes else None

    def _write(tmp: str) -> None:
        tifffile.imwrite(
            tmp, image, bigtiff=image.nbytes > 2**31, compression="zlib", metadata=metadata,
            software=SOFTWARE,
        )

    return atomic_write(path, _write)
