"""Model files and training states: safetensors files with a JSON header.

Format 2 (written today):

* **Model files** (role ``"model"``) hold the networks' own ``state_dict`` tensors
  under prefixed names, ``<network>.<state_dict key>`` (``generator.encoders.0.0.weight``),
  so any safetensors reader can use them. The safetensors metadata key ``napari_gan``
  holds a JSON header: ``format`` ("napari-gan"), ``format_version`` (2), ``family``
  ("pix2pix", "stylegan2"), ``role``, ``architecture`` (the family's configuration),
  ``normalization``, ``networks`` (the network names stored) and descriptive extras
  (``step``, ``metrics``, ``training``, ``napari_gan_version``, ``saved``).
* **Training states** (role ``"training_state"``) have the same header plus nested state
  (optimiser state with int keys, RNG states, tuples...) flattened to tensors named
  ``s.0.1...`` and a JSON ``skeleton`` describing the nesting.

Format 1 files (``kind``/``config``/``skeleton`` headers, every file flattened) are still
read. Nothing is ever unpickled. :func:`read_header` parses the safetensors header by
itself, with limits, and never touches tensor data; :func:`build_checked` checks a
network's parameter names, shapes and size on the ``meta`` device before allocating it.
Saving is atomic (temporary file, then rename).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import NapariGanError
from .io import atomic_write

FORMAT_NAME = "napari-gan"
FORMAT_VERSION = 2
META_KEY = "napari_gan"
MODEL_FILENAME = "model.safetensors"  # best-validation model inside a run folder
LAST_FILENAME = "last.safetensors"
STATE_FILENAME = "training_state.safetensors"
SUFFIX = ".safetensors"
ROLES = ("model", "training_state")

MAX_HEADER_BYTES = 100_000_000   # the safetensors library's own limit
MAX_JSON_DEPTH = 64
MAX_JSON_CONTAINERS = 1_000_000  # a header has a few per tensor
_GIB = 1024**3

# bytes per element of the safetensors dtypes a PyTorch file can hold
_DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E4M3FN": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}
# header fields the format owns; callers' extras may not override them
_CORE_FIELDS = ("format", "format_version", "family", "role", "architecture",
                "normalization", "networks", "skeleton")
_V1_FIELDS = ("kind", "config")


# ------------------------------------------------------------ nested state <-> tensors
def flatten_state(obj: Any, tensors: dict[str, torch.Tensor] | None = None, prefix: str = "s"):
    """Turn nested dicts/lists/tuples of tensors, arrays and plain values into
    ``(tensors, skeleton)`` where ``skeleton`` is JSON-serialisable."""
    tensors = {} if tensors is None else tensors
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().clone().contiguous()
        return tensors, {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(obj)).clone()
        return tensors, {"__ndarray__": prefix}
    if isinstance(obj, dict):
        items = [[k, flatten_state(v, tensors, f"{prefix}.{i}")[1]] for i, (k, v) in enumerate(obj.items())]
        return tensors, {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        items = [flatten_state(v, tensors, f"{prefix}.{i}")[1] for i, v in enumerate(obj)]
        return tensors, {"__tuple__" if isinstance(obj, tuple) else "__list__": items}
    if isinstance(obj, (np.integer, np.floating)):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return tensors, obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a model file")


def unflatten_state(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__ndarray__" in skeleton:
            return tensors[skeleton["__ndarray__"]].numpy()
        if "__dict__" in skeleton:
            return {k: unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
        if "__list__" in skeleton:
            return [unflatten_state(v, tensors) for v in skeleton["__list__"]]
    return skeleton


# --------------------------------------------------------------------------- header
@dataclass
class Header:
    """What a napari-gan file says about itself (read without touching its tensors)."""

    path: Path
    format_version: int
    family: str                  # "pix2pix" or "stylegan2"
    role: str                    # "model" or "training_state"
    architecture: dict           # the family's configuration
    normalization: dict
    networks: list[str]          # names of the networks stored (state_dicts)
    raw: dict                    # the whole napari_gan header as stored
    tensor_info: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)

    @property
    def extra(self) -> dict:
        """The descriptive fields (step, metrics, training, version, saved time...)."""
        return {k: v for k, v in self.raw.items() if k not in _CORE_FIELDS + _V1_FIELDS}

    @property
    def step(self) -> int | None:
        step = self.raw.get("step")
        return step if isinstance(step, int) and not isinstance(step, bool) else None

    @property
    def metrics(self) -> dict:
        metrics = self.raw.get("metrics")
        return metrics if isinstance(metrics, dict) else {}


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A model file, or a run folder (its best model, else its last one), or a bioimage.io
    package napari-gan exported (``.zip``: the model file it holds, extracted)."""
    path = Path(path)
    if path.is_dir():
        for name in (MODEL_FILENAME, LAST_FILENAME):
            if (path / name).is_file():
                return path / name
        raise NapariGanError(f"Folder '{path}' holds no napari-gan model ({MODEL_FILENAME}).")
    if not path.is_file():
        raise NapariGanError(f"Model file '{path}' does not exist.")
    if path.suffix.lower() == ".zip":
        from .export import model_file_from_package

        return model_file_from_package(path)
    return path


def _resolve(path: str | os.PathLike, expect_role: str | None) -> Path:
    path = Path(path)
    if path.is_dir() and expect_role == "training_state":
        if (path / STATE_FILENAME).is_file():
            return path / STATE_FILENAME
        raise NapariGanError(f"Folder '{path}' holds no training state ({STATE_FILENAME}).")
    return resolve_model_path(path)


def _unreadable(path: Path, detail: str) -> NapariGanError:
    return NapariGanError(
        f"'{path}' is not a readable napari-gan model file (it is corrupt, truncated or of "
        f"another format: {detail}).")


def _damaged(path: Path, detail: str) -> NapariGanError:
    return NapariGanError(f"'{path}' has a damaged napari-gan header: {detail}.")


def _too_deep(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether parsed JSON nests arrays/objects more than ``limit`` levels (no recursion)."""
    level, depth = [obj], 0
    while level:
        containers = [o for o in level if isinstance(o, (dict, list))]
        if not containers:
            return False
        depth += 1
        if depth > limit:
            return True
        level = [v for o in containers for v in (o.values() if isinstance(o, dict) else o)]
    return False


def _parse_json(text: str, path: Path, what: Callable[[Path, str], NapariGanError], name: str):
    # an upper bound on the containers json.loads would build (strings included): keeps a
    # hostile header from costing gigabytes of tiny Python objects
    containers = text.count("[") + text.count("{")
    if containers > MAX_JSON_CONTAINERS:
        raise what(path, f"its {name} holds too many JSON arrays and objects ({containers:,})")
    try:
        obj = json.loads(text)
    except RecursionError as exc:   # the json module's own guard against very deep nesting
        raise what(path, f"its {name} holds deeply nested JSON") from exc
    except ValueError as exc:
        raise what(path, f"its {name} is not valid JSON ({str(exc)[:80]})") from exc
    if _too_deep(obj):
        raise what(path, f"its {name} holds deeply nested JSON (more than {MAX_JSON_DEPTH} levels)")
    return obj


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _read_safetensors_header(path: Path) -> tuple[dict, dict[str, tuple[str, tuple[int, ...]]]]:
    """(``__metadata__``, tensor name -> (dtype, shape)) from the safetensors header alone,
    checked against the file size; tensor data is never read."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise _unreadable(path, f"it is only {size} bytes long")
            n = int.from_bytes(prefix, "little")
            if n > MAX_HEADER_BYTES:
                raise _unreadable(path, f"its header claims {n} bytes, more than the "
                                        f"{MAX_HEADER_BYTES} allowed")
            if n > size - 8:
                raise _unreadable(path, f"its header claims {n} bytes but the file holds only "
                                        f"{size - 8}")
            raw = f.read(n)
    except OSError as exc:
        raise NapariGanError(f"Could not read '{path}': {exc.strerror or exc}.") from exc
    if len(raw) != n:
        raise _unreadable(path, "the file changed while being read")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unreadable(path, "its header is not text") from exc
    if not text.lstrip().startswith("{"):
        raise _unreadable(path, "it has no safetensors header")
    outer = _parse_json(text, path, _unreadable, "header")
    if not isinstance(outer, dict):
        raise _unreadable(path, "its header is not a JSON object")
    metadata = outer.get("__metadata__", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _unreadable(path, "its metadata is not a map of strings")

    data_size = size - 8 - n
    info: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans = []
    for name, entry in outer.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise _unreadable(path, f"tensor '{name[:80]}' has no description")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in _DTYPE_SIZES:
            raise _unreadable(path, f"tensor '{name[:80]}' has an unknown type {str(dtype)[:20]}")
        if (not isinstance(shape, list) or len(shape) > 32
                or not all(_is_int(s) and s >= 0 for s in shape)):
            raise _unreadable(path, f"tensor '{name[:80]}' has an invalid shape")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_int(o) for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise _unreadable(path, f"tensor '{name[:80]}' has invalid data offsets")
        if offsets[1] - offsets[0] != math.prod(shape) * _DTYPE_SIZES[dtype]:
            raise _unreadable(path, f"tensor '{name[:80]}' has a size that does not match its shape")
        if offsets[1] > data_size:
            raise _unreadable(path, f"tensor '{name[:80]}' lies beyond the end of the file "
                                    f"(the file is truncated)")
        info[name] = (dtype, tuple(shape))
        spans.append(tuple(offsets))
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise _unreadable(path, "its tensors overlap or leave gaps")
        end = stop
    if end != data_size:
        raise _unreadable(path, f"it holds {data_size - end} bytes beyond its tensors")
    return metadata, info


def _looks_like_state_dict(skeleton: Any) -> bool:
    """A skeleton of a flat, non-empty {str: tensor} dict (a network's state_dict)."""
    if not isinstance(skeleton, dict) or not isinstance(skeleton.get("__dict__"), list):
        return False
    items = skeleton["__dict__"]
    return bool(items) and all(
        isinstance(it, list) and len(it) == 2 and isinstance(it[0], str)
        and isinstance(it[1], dict) and "__tensor__" in it[1] for it in items)


def _skeleton_networks(skeleton: Any) -> list[str]:
    if not isinstance(skeleton, dict) or not isinstance(skeleton.get("__dict__"), list):
        return []
    return [it[0] for it in skeleton["__dict__"]
            if isinstance(it, list) and len(it) == 2 and isinstance(it[0], str)
            and _looks_like_state_dict(it[1])]


def _role_error(path: Path, role: str, expect_role: str) -> NapariGanError:
    if expect_role == "model":
        return NapariGanError(
            f"'{path}' is a {role} file, not a model; give the run folder or its {MODEL_FILENAME}.")
    if expect_role == "training_state":
        return NapariGanError(
            f"'{path}' is a {role} file, not a training state; give the run folder or its "
            f"{STATE_FILENAME}.")
    return NapariGanError(f"'{path}' is a {role} file, but a {expect_role} file is needed here.")


def read_header(path: str | os.PathLike, expect_role: str | None = None) -> Header:
    """Read and check the header of a napari-gan file (or of a run folder's model file,
    or its training state when ``expect_role="training_state"``); never reads tensor data.

    Every problem is a :class:`NapariGanError` naming the file.
    """
    path = _resolve(path, expect_role)
    metadata, info = _read_safetensors_header(path)
    if META_KEY not in metadata:
        raise NapariGanError(f"'{path}' is a safetensors file but not a napari-gan model.")
    header = _parse_json(metadata[META_KEY], path, _damaged, "header")
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise NapariGanError(f"'{path}' is a safetensors file but not a napari-gan model.")

    version = header.get("format_version")
    if not _is_int(version) or version < 1:
        raise _damaged(path, f"its format version {str(version)[:20]} is not a positive whole number")
    if version > FORMAT_VERSION:
        raise NapariGanError(
            f"'{path}' was written by a newer napari-gan (model-file format {str(version)[:20]}; this "
            f"version reads up to format {FORMAT_VERSION}); update napari-gan.")

    if version == 1:
        family, architecture = header.get("kind"), header.get("config", {})
        family_field, arch_field = "kind", "config"
    else:
        family, architecture = header.get("family"), header.get("architecture")
        family_field, arch_field = "family", "architecture"
    normalization = header.get("normalization", {}) if version == 1 else header.get("normalization")
    role = header.get("role")

    if not isinstance(family, str) or not family:
        raise _damaged(path, f"its '{family_field}' is not a name")
    if role not in ROLES:
        raise _damaged(path, f"its role {str(role)[:40]!r} is none of {', '.join(ROLES)}")
    if not isinstance(architecture, dict):
        raise _damaged(path, f"its '{arch_field}' is a {type(architecture).__name__}, not a dict")
    if not isinstance(normalization, dict):
        raise _damaged(path, f"its 'normalization' is a {type(normalization).__name__}, not a dict")

    skeleton = header.get("skeleton")
    if version == 1 or role == "training_state":
        if not isinstance(skeleton, dict) or not isinstance(skeleton.get("__dict__"), list):
            raise _damaged(path, "its description of the stored state is missing")
    if version == 1:
        networks = _skeleton_networks(skeleton)
    else:
        networks = header.get("networks")
        if (not isinstance(networks, list)
                or not all(isinstance(n, str) and n and "." not in n for n in networks)
                or len(set(networks)) != len(networks)):
            raise _damaged(path, "its 'networks' is not a list of network names")
    if expect_role is not None and role != expect_role:
        raise _role_error(path, role, expect_role)
    return Header(path, version, family, role, architecture, normalization, list(networks),
                  header, info)


# --------------------------------------------------------------------------- tensors
class _LazyTensors(Mapping):
    """Tensors of an open safetensors file, read only when asked for."""

    def __init__(self, handle, info: dict):
        self._f, self._info = handle, info

    def __getitem__(self, key):
        if not isinstance(key, str) or key not in self._info:
            raise KeyError(key)
        return self._f.get_tensor(key)

    def __iter__(self):
        return iter(self._info)

    def __len__(self):
        return len(self._info)


def _read(header: Header, fn: Callable[[Mapping[str, torch.Tensor]], Any]) -> Any:
    """Call ``fn(tensors)`` with the file's tensors available lazily."""
    try:
        with safe_open(str(header.path), framework="pt", device="cpu") as f:
            return fn(_LazyTensors(f, header.tensor_info))
    except NapariGanError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise NapariGanError(
            f"'{header.path}' is damaged: its header does not match its tensors.") from exc
    except Exception as exc:  # safetensors' own errors, I/O errors, a file replaced meanwhile
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise _unreadable(header.path, detail) from exc


def load_networks(header: Header, names: list[str] | tuple[str, ...]) -> dict[str, dict[str, torch.Tensor]]:
    """The ``state_dict`` of each named network stored in the file of ``header``."""
    missing = [n for n in names if n not in header.networks]
    if missing:
        held = ", ".join(header.networks) or "none"
        raise NapariGanError(
            f"'{header.path}' holds no {', '.join(missing)} network (it holds: {held}).")
    if header.format_version >= 2 and header.role == "model":
        def read(tensors):
            out = {}
            for name in names:
                prefix = name + "."
                out[name] = {k[len(prefix):]: tensors[k] for k in header.tensor_info
                             if k.startswith(prefix)}
            return out
        return _read(header, read)

    items = dict((it[0], it[1]) for it in header.raw["skeleton"]["__dict__"]
                 if isinstance(it, list) and len(it) == 2 and isinstance(it[0], str))
    return _read(header, lambda tensors: {n: unflatten_state(items[n], tensors) for n in names})


def load_state(header: Header, require: tuple[str, ...] = ()) -> dict:
    """The nested state stored in the file (a training state; for a model file:
    ``{network name: state_dict}``), refused when a ``require``d top-level key is missing."""
    if header.format_version >= 2 and header.role == "model":
        state = load_networks(header, header.networks)
    else:
        state = _read(header, lambda tensors: unflatten_state(header.raw["skeleton"], tensors))
    if not isinstance(state, dict):
        raise NapariGanError(f"'{header.path}' is damaged: its stored state is not a mapping.")
    missing = [k for k in require if k not in state]
    if missing:
        raise NapariGanError(
            f"'{header.path}' is a training state with missing parts ({', '.join(map(str, missing))}); "
            "it is damaged or was not written by this program.")
    return state


# ------------------------------------------------------------------- building networks
def default_max_bytes() -> int:
    """The largest network :func:`build_checked` builds: 8 GiB or half the memory."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        physical = 0
    return min(8 * _GIB, physical // 2) if physical > 0 else 8 * _GIB


def _first(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def build_checked(factory: Callable[[], torch.nn.Module], state_dict: dict, path: str | os.PathLike,
                  max_bytes: int | None = None) -> torch.nn.Module:
    """Build ``factory()`` on the CPU and load ``state_dict`` into it, after checking on the
    ``meta`` device (no memory) that its size is sensible and its names and shapes match."""
    path = Path(path)
    max_bytes = default_max_bytes() if max_bytes is None else max_bytes
    try:   # the meta build draws no random numbers (checked for this package's networks)
        with torch.device("meta"):
            meta = factory()
        expected = meta.state_dict()
    except NapariGanError as exc:
        raise NapariGanError(f"'{path}' describes a network that cannot be built: {exc}") from exc
    except Exception as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise NapariGanError(
            f"'{path}' describes a network that cannot be built ({detail}).") from exc

    size = sum(t.numel() * t.element_size() for t in meta.parameters())
    size += sum(t.numel() * t.element_size() for t in meta.buffers())
    if size > max_bytes:
        raise NapariGanError(
            f"'{path}' describes a network of {size / _GIB:,.1f} GiB, more than the "
            f"{max_bytes / _GIB:,.1f} GiB allowed here; the file is damaged or not meant for "
            "this computer.")

    if not isinstance(state_dict, Mapping):
        raise NapariGanError(f"The weights in '{path}' are not a set of named tensors.")
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = []
    for k, v in expected.items():
        if k in state_dict and isinstance(v, torch.Tensor):
            got = state_dict[k]
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(v.shape):
                got_shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                wrong.append(f"{k} (file {got_shape}, network {tuple(v.shape)})")
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"missing {_first(missing)}")
        if unexpected:
            problems.append(f"unexpected {_first([str(k) for k in unexpected])}")
        if wrong:
            problems.append(f"wrong shape for {_first(wrong)}")
        raise NapariGanError(
            f"The weights in '{path}' do not fit the network described in its header "
            f"({'; '.join(problems)}).")

    try:
        module = factory()
    except MemoryError as exc:
        raise NapariGanError(f"Not enough memory to build the network of '{path}'.") from exc
    load_weights(module, dict(state_dict), path)
    return module


def load_weights(module: torch.nn.Module, state_dict: dict, path: Path | str) -> None:
    """``load_state_dict`` with a user-facing error when the file does not fit the network."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise NapariGanError(
            f"The weights in '{path}' do not fit the network described in its header "
            f"({str(exc).splitlines()[0][:160]})."
        ) from exc


# --------------------------------------------------------------------------- saving
def _plain(obj: Any) -> Any:
    """JSON-ready copy for headers other tools read: numpy scalars become numbers,
    non-finite floats become null (standard JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, (np.generic,)):
        return _plain(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a model-file header")


def _base_header(family: str, role: str, architecture: dict, normalization: dict,
                 networks: list[str], extra: dict) -> dict:
    from .. import __version__

    if not isinstance(family, str) or not family:
        raise TypeError("family must be a non-empty string")
    if not isinstance(architecture, dict) or not isinstance(normalization, dict):
        raise TypeError("architecture and normalization must be dicts")
    reserved = sorted(set(extra) & set(_CORE_FIELDS + _V1_FIELDS))
    if reserved:
        raise TypeError(f"reserved header field(s) given as extras: {', '.join(reserved)}")
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "family": family,
        "role": role,
        "architecture": architecture,
        "normalization": normalization,
        "networks": networks,
        "napari_gan_version": __version__,
        "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    return _plain(header)


def _cpu_copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(device="cpu", copy=True, memory_format=torch.contiguous_format)


def save_model(path: str | os.PathLike, family: str, architecture: dict,
               networks: dict[str, torch.nn.Module | dict[str, torch.Tensor]], normalization: dict,
               **extra) -> Path:
    """Atomically write a format-2 model file: each network's state_dict under
    ``<name>.<key>``, and the header (``extra``: step, metrics, training, ...)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, net in networks.items():
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"network name {name!r} must be a non-empty string without '.'")
        state = net.state_dict() if isinstance(net, torch.nn.Module) else net
        if not isinstance(state, Mapping):
            raise TypeError(f"network {name!r} is a {type(net).__name__}, not a module or state_dict")
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name}.{key} is a {type(value).__name__}, not a tensor")
            tensors[f"{name}.{key}"] = _cpu_copy(value)
    header = _base_header(family, "model", architecture, normalization, list(networks), extra)
    metadata = {"format": "pt", META_KEY: json.dumps(header, allow_nan=False)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def save_state(path: str | os.PathLike, family: str, architecture: dict, normalization: dict,
               state: dict, **extra) -> Path:
    """Atomically write a format-2 training state: nested ``state`` (optimisers, RNG
    states...) as tensors plus a JSON skeleton in the header."""
    if not isinstance(state, dict):
        raise TypeError("a training state must be a dict")
    tensors, skeleton = flatten_state(state)
    header = _base_header(family, "training_state", architecture, normalization,
                          _skeleton_networks(skeleton), extra)
    header["skeleton"] = skeleton       # kept exact (NaN, big ints): read back by napari-gan
    metadata = {"format": "pt", META_KEY: json.dumps(header)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))

