"""Device selection, mixed precision and (optional) distributed-process information.

One place decides where tensors live, so the trainers, inference and the DDP launcher
agree. Under ``torchrun`` the LOCAL_RANK/WORLD_SIZE variables are honoured.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

import torch

from .errors import NapariGanError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then CPU; a named device must be available."""
    name = (name or "auto").lower()
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise NapariGanError(f"Unknown device '{name}'; choose one of {', '.join(DEVICE_CHOICES)}.")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NapariGanError("CUDA was asked for but no CUDA GPU is available; use --device cpu or auto.")
        if name == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device(name)
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise NapariGanError("Apple MPS was asked for but is not available; use --device cpu or auto.")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """Human-readable device name, e.g. 'cuda:0 (NVIDIA H100)' or 'cpu (2 threads)'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): there bf16 convolutions
    run about twice as fast as float32; elsewhere they are emulated and slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def uses_bf16(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA GPUs that support it and on CPUs with native bf16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16() and os.environ.get("NAPARI_GAN_CPU_BF16", "1") != "0"


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast where it pays off (see :func:`uses_bf16`; no loss scaling needed with
    bf16); a no-op elsewhere. Weights and optimiser state stay float32."""
    if enabled and uses_bf16(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prefers_channels_last(device: torch.device) -> bool:
    """NHWC is the faster layout for convolutions with cuDNN and with oneDNN on CPU."""
    return device.type in ("cuda", "cpu")


def configure_backends(device: torch.device) -> None:
    """Speed settings that do not change results beyond floating-point noise."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class DistributedInfo:
    """Rank and world size of this process (1 process when not under torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def distributed_info() -> DistributedInfo:
    return DistributedInfo(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
    )
