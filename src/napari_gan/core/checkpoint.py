"""Model files: one safetensors file holding tensors plus a JSON header.

The header (safetensors metadata key ``napari_gan``) records the format name and
version, the model kind, its configuration and the normalisation, so a file is
self-describing. Loading never unpickles anything: safetensors only holds raw tensors,
and arbitrary nested state (optimiser state, RNG state) is flattened to tensors plus a
JSON skeleton. Saving is atomic (write to a temporary file, then rename).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .errors import NapariGanError
from .io import atomic_write

FORMAT_NAME = "napari-gan"
FORMAT_VERSION = 1
META_KEY = "napari_gan"
MODEL_FILENAME = "model.safetensors"  # best-validation model inside a run folder
LAST_FILENAME = "last.safetensors"
STATE_FILENAME = "training_state.safetensors"
SUFFIX = ".safetensors"


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


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
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


# --------------------------------------------------------------------------- files
@dataclass
class ModelFile:
    """What a napari-gan file holds."""

    path: Path
    kind: str            # "pix2pix" or "stylegan2"
    role: str            # "model" or "training_state"
    config: dict
    header: dict
    state: dict          # nested state: e.g. {"generator": state_dict, ...}

    @property
    def normalization(self) -> dict:
        return self.header.get("normalization", {})


def save(path: str | os.PathLike, kind: str, role: str, config: dict, state: dict,
         **header_extra) -> Path:
    """Atomically write ``state`` (nested, with tensors) and a JSON header to ``path``."""
    from .. import __version__

    tensors, skeleton = flatten_state(state)
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "role": role,
        "config": config,
        "napari_gan_version": __version__,
        "saved": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "skeleton": skeleton,
        **header_extra,
    }
    metadata = {META_KEY: json.dumps(header)}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A model file, or a run folder (its best model, else its last one)."""
    path = Path(path)
    if path.is_dir():
        for name in (MODEL_FILENAME, LAST_FILENAME):
            if (path / name).is_file():
                return path / name
        raise NapariGanError(f"Folder '{path}' holds no napari-gan model ({MODEL_FILENAME}).")
    if not path.is_file():
        raise NapariGanError(f"Model file '{path}' does not exist.")
    return path


def load(path: str | os.PathLike, expect_kind: str | None = None,
         expect_role: str | None = None) -> ModelFile:
    """Read and validate a napari-gan file; any corrupt or foreign file gives a clear error."""
    path = resolve_model_path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise NapariGanError(
            f"'{path}' is not a readable napari-gan model file (it is corrupt, truncated or "
            f"of another format: {str(exc).splitlines()[0][:120]})."
        ) from exc
    try:
        header = json.loads(meta[META_KEY])
        ok = header.get("format") == FORMAT_NAME
    except (KeyError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise NapariGanError(f"'{path}' is a safetensors file but not a napari-gan model.")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise NapariGanError(
            f"'{path}' was written in model-file format {version}, newer than this napari-gan "
            f"understands ({FORMAT_VERSION}); update napari-gan."
        )
    kind, role = header.get("kind"), header.get("role")
    if expect_kind and kind != expect_kind:
        raise NapariGanError(
            f"'{path}' is a {kind} model, but a {expect_kind} model is needed here."
        )
    if expect_role and role != expect_role:
        raise NapariGanError(f"'{path}' is a {role} file, but a {expect_role} file is needed here.")
    try:
        state = unflatten_state(header["skeleton"], tensors)
    except (KeyError, TypeError) as exc:
        raise NapariGanError(f"'{path}' is damaged: its header does not match its tensors.") from exc
    return ModelFile(path, kind, role, header.get("config", {}), header, state)


def load_weights(module: torch.nn.Module, state_dict: dict, path: Path | str) -> None:
    """``load_state_dict`` with a user-facing error when the file does not fit the network."""
    try:
        module.load_state_dict(state_dict, strict=True)
    except (RuntimeError, KeyError) as exc:
        raise NapariGanError(
            f"The weights in '{path}' do not fit the network described in its header "
            f"({str(exc).splitlines()[0][:160]})."
        ) from exc
