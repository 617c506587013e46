"""Multi-process (DDP) training support: process group, model wrapping, collectives.

``torchrun --nproc_per_node N -m napari_gan.cli train ...`` starts N copies of the
ordinary command; each reads RANK/LOCAL_RANK/WORLD_SIZE (see
:func:`~napari_gan.core.device.distributed_info`). The trainer calls :func:`init` (NCCL on
CUDA, gloo otherwise), wraps its networks with :func:`wrap` and keeps all processes in
lock step with :func:`agree` (one small collective per step: rank 0's budget fraction and
anyone's stop request). Every function is a no-op in a single process.
"""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from .device import DistributedInfo, distributed_info
from .errors import NapariGanError


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init(device: torch.device, info: DistributedInfo | None = None) -> DistributedInfo:
    """Join the process group started by torchrun (once per process)."""
    info = info or distributed_info()
    if not info.enabled or not dist.is_available() or dist.is_initialized():
        return info
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(minutes=float(os.environ.get("NAPARI_GAN_DIST_TIMEOUT_MIN", "30")))
    import inspect

    kwargs = {}
    if device.type == "cuda" and "device_id" in inspect.signature(dist.init_process_group).parameters:
        kwargs["device_id"] = device     # eager NCCL communicator bound to this GPU
    dist.init_process_group(backend, rank=info.rank, world_size=info.world_size, timeout=timeout, **kwargs)
    return info


def share_of_batch(global_batch: int, device: torch.device) -> int:
    """Check that the global batch splits evenly over the processes, join the process group,
    and return this process's share (the whole batch in a single process)."""
    world = distributed_info().world_size
    if global_batch % world:
        raise NapariGanError(f"The batch ({global_batch}) must be divisible by the number of "
                             f"processes ({world}).")
    init(device)
    return global_batch // world


def shutdown() -> None:
    """Leave the process group (at the end of a command; the trainer has already met the
    other processes at its final barrier, and after an error there is nobody to wait for)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` wrapped in DistributedDataParallel when several processes train, else itself.

    The caller keeps the plain module for saving and for passes that need no gradient sync.
    """
    if not active():
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    import inspect

    ids = [device.index] if device.type == "cuda" else None
    # Buffers (spectral-norm vectors) are equal on every rank after the initial sync and
    # evolve identically, so they are not re-broadcast on every forward pass.
    if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:
        return DDP(module, device_ids=ids, forward_sync_buffers=False)
    return DDP(module, device_ids=ids, broadcast_buffers=False)


def _tensor_device(device: torch.device) -> torch.device:
    return device if dist.get_backend() == "nccl" else torch.device("cpu")


def agree(values: tuple[float, ...], stop: bool, device: torch.device) -> tuple[tuple[float, ...], bool]:
    """Rank 0's ``values`` (its budget fraction and schedule position, so every process follows
    the same clock) and whether any process asked to stop. One all-reduce."""
    if not active():
        return tuple(values), stop
    rank0 = dist.get_rank() == 0
    t = torch.tensor([v if rank0 else 0.0 for v in values] + [1.0 if stop else 0.0], dtype=torch.float64,
                     device=_tensor_device(device))
    dist.all_reduce(t)
    return tuple(float(v) for v in t[:-1]), bool(t[-1] > 0)


def mean_values(values: list[torch.Tensor], device: torch.device) -> list[float]:
    """Scalars averaged over all processes (one collective), as Python floats."""
    if not values:
        return []
    t = torch.stack([v.detach().float().reshape(()) for v in values])
    if active():
        t = t.to(_tensor_device(device))
        dist.all_reduce(t)
        t = t / dist.get_world_size()
    return t.tolist()


def broadcast_module(module: torch.nn.Module, device: torch.device) -> None:
    """Give every process rank 0's parameters and buffers."""
    if not active():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        data = t.data.to(_tensor_device(device))
        dist.broadcast(data, 0)
        t.data.copy_(data)


def average_tensors(tensors: list[torch.Tensor], device: torch.device) -> None:
    """Replace each tensor by its mean over all processes, in place, in one collective.

    This is how gradients are synchronised where DDP cannot be used (StyleGAN2's R1 and
    path-length terms differentiate twice), as stylegan2-ada-pytorch does.
    """
    if not active() or not tensors:
        return
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors]).to(_tensor_device(device))
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.detach().copy_(flat[offset:offset + n].view_as(t).to(t.device, t.dtype))
        offset += n


def average_gradients(module: torch.nn.Module, device: torch.device) -> None:
    """Mean of the gradients over all processes (a missing gradient counts as zero, so every
    process takes part in the same collective)."""
    if not active():
        return
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    average_tensors([p.grad for p in params], device)


def sum_values(values: list[float], device: torch.device) -> list[float]:
    """Python numbers summed over all processes (one collective)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_tensor_device(device))
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if active():
        dist.barrier()


def global_slice(global_batch: int, info: DistributedInfo) -> slice:
    """This process's share ``[rank*b, (rank+1)*b)`` of a global batch (b = global / world)."""
    per = global_batch // info.world_size
    return slice(info.rank * per, (info.rank + 1) * per)
