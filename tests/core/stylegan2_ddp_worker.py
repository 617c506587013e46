"""One StyleGAN2 step (D with lazy R1, then G) on this process's share of a fixed global
batch, gradients averaged by hand as the trainer does. Run under torchrun by
test_distributed.py, and in-process (one process, the whole batch) as the reference."""

import sys

import torch
from safetensors.torch import save_file

from napari_gan.core import distributed
from napari_gan.core.device import distributed_info
from napari_gan.core.losses import discriminator_loss, generator_loss, r1_penalty
from napari_gan.core.models.stylegan2 import Discriminator, Generator

GLOBAL_BATCH, RES = 8, 16


def step_gradients() -> dict[str, torch.Tensor]:
    device = torch.device("cpu")
    info = distributed.init(device)
    torch.manual_seed(0)
    G = Generator(8, 8, RES, 1, 2, channel_base=64, channel_max=16)
    # group size 1: minibatch-std groups never straddle two processes' shares
    D = Discriminator(RES, 1, channel_base=64, channel_max=16, mbstd_group=1)
    gen = torch.Generator().manual_seed(1)
    real_all = torch.randn(GLOBAL_BATCH, 1, RES, RES, generator=gen)
    z_all = torch.randn(GLOBAL_BATCH, 8, generator=gen)
    share = distributed.global_slice(GLOBAL_BATCH, info)
    real, z = real_all[share].requires_grad_(True), z_all[share]

    fake = G(z, noise_mode="const")
    real_logits = D(real)
    d_loss = discriminator_loss("vanilla", real_logits, D(fake.detach())) + r1_penalty(real_logits, real)
    d_loss.backward()                      # R1 differentiates twice
    distributed.average_gradients(D, device)
    D.requires_grad_(False)
    generator_loss("vanilla", D(fake)).backward()
    distributed.average_gradients(G, device)
    grads = {f"D.{n}": p.grad.clone() for n, p in D.named_parameters()}
    grads.update({f"G.{n}": p.grad.clone() for n, p in G.named_parameters() if p.grad is not None})
    return grads


if __name__ == "__main__":
    grads = step_gradients()
    gathered = [torch.zeros(len(grads)) for _ in range(distributed_info().world_size)]
    norms = torch.stack([g.norm() for g in grads.values()])
    torch.distributed.all_gather(gathered, norms)
    assert all(torch.equal(g, gathered[0]) for g in gathered), "ranks disagree after averaging"
    if distributed_info().rank == 0:
        save_file(grads, sys.argv[1])
    distributed.shutdown()
