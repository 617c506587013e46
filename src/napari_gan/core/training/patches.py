"""Cutting training patches on the GPU.

When the normalised training planes fit comfortably in GPU memory they are uploaded once
and every batch is sliced, flipped and rotated on the device: no host work, no host-to-device
copy per step. The patch positions come from :meth:`PairedPatchSampler.draw`, so the
batches are exactly those the CPU path would cut. Data sets too large for this (huge
layers) stay where they are (possibly memory-mapped) and are cut on the host.
"""

from __future__ import annotations

import torch

from ..data import PairedPatchSampler, dihedral

#: Use at most this fraction of the free GPU memory (and at most MAX_BYTES) for the planes.
FREE_FRACTION = 0.25
MAX_BYTES = 4 << 30


def planes_nbytes(sampler: PairedPatchSampler) -> int:
    d = sampler.data
    return 4 * sum(p.size for p in d.inputs) + 4 * sum(t.size for t in d.targets)


def fits_on_device(sampler: PairedPatchSampler, device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return planes_nbytes(sampler) <= min(MAX_BYTES, FREE_FRACTION * free)


class DevicePatchCutter:
    """Holds the normalised planes on ``device`` and cuts batches for given draws."""

    def __init__(self, sampler: PairedPatchSampler, device: torch.device):
        d = sampler.data
        self.patch, self.scale = sampler.patch, d.scale
        up = lambda a, norm: torch.from_numpy(norm.normalize(a)).to(device)
        self.inputs = [up(p, d.input_norm_for(i)) for i, p in enumerate(d.inputs)]
        self.targets = [up(t, d.target_norm) for t in d.targets]

    def cut(self, draws) -> tuple[torch.Tensor, torch.Tensor]:
        p, s = self.patch, self.scale
        xs, ys = [], []
        for i, r, c, k in draws:
            x = self.inputs[i][:, r:r + p, c:c + p]
            y = self.targets[i][:, r * s:(r + p) * s, c * s:(c + p) * s]
            xs.append(dihedral(x, k))
            ys.append(dihedral(y, k))
        return torch.stack(xs), torch.stack(ys)
