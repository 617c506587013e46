"""Adversarial losses selected by name, and the regularisers they need."""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_MODES = ("vanilla", "lsgan", "hinge", "wgan-gp")


def _check(mode: str) -> None:
    if mode not in GAN_MODES:
        raise ValueError(f"unknown GAN loss '{mode}'; choose one of {', '.join(GAN_MODES)}")


def discriminator_loss(mode: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Loss for D given its logits on real and on generated samples."""
    _check(mode)
    real, fake = real.float(), fake.float()
    if mode == "vanilla":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if mode == "lsgan":
        return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())
    if mode == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return fake.mean() - real.mean()  # wgan-gp (add gradient_penalty)


def generator_loss(mode: str, fake: torch.Tensor) -> torch.Tensor:
    """Adversarial loss for G (the non-saturating form for 'vanilla')."""
    _check(mode)
    fake = fake.float()
    if mode == "vanilla":
        return F.softplus(-fake).mean()
    if mode == "lsgan":
        return 0.5 * (fake - 1).pow(2).mean()
    return -fake.mean()  # hinge and wgan-gp


def gradient_penalty(critic, condition: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: penalise critic gradient norms away from 1 on random interpolates."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    out = critic(condition, mixed)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1: squared gradient norm of D on real images (``real_images`` must require grad)."""
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def path_length_penalty(images: torch.Tensor, ws: torch.Tensor, pl_mean: torch.Tensor,
                        decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length regularisation.

    The gradient of the images (projected on random noise) with respect to the styles
    ``ws`` should have the same length everywhere in W; its running mean ``pl_mean`` is the
    target. Returns ``(penalty, new_pl_mean)``; ``ws`` must be part of ``images``' graph.
    """
    h, w = images.shape[-2:]
    noise = torch.randn_like(images) / (h * w) ** 0.5
    (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    lengths = grad.float().square().sum(2).mean(1).sqrt()
    new_mean = pl_mean.lerp(lengths.mean().detach(), decay)
    return (lengths - new_mean).square().mean(), new_mean
