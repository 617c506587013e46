"""PatchGAN discriminator judging (input, output) pairs patch by patch, or (unconditional,
for CycleGAN) images alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn


class PatchGANDiscriminator(nn.Module):
    """Conditional PatchGAN: ``n_layers=3`` gives the classic 70x70 receptive field.

    The condition (network input) is resized to the output's size and concatenated, so
    the same discriminator serves denoising and super-resolution. Spectral
    normalisation (default) replaces batch normalisation for stable training.

    ``conditional=False`` judges images alone (``D(image)``: ``in_channels`` is ignored), as
    CycleGAN's discriminators do; the layers and their names are the same.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 64,
                 n_layers: int = 3, spectral_norm: bool = True, conditional: bool = True):
        super().__init__()
        self.conditional = conditional
        wrap = _sn if spectral_norm else (lambda m: m)
        first = in_channels + out_channels if conditional else out_channels
        layers: list[nn.Module] = [wrap(nn.Conv2d(first, width, 4, 2, 1)),
                                   nn.LeakyReLU(0.2, inplace=True)]
        c = width
        for i in range(1, n_layers + 1):
            c_next = width * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [wrap(nn.Conv2d(c, c_next, 4, stride, 1)), nn.LeakyReLU(0.2, inplace=True)]
            c = c_next
        layers.append(wrap(nn.Conv2d(c, 1, 4, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, condition: torch.Tensor | None, image: torch.Tensor | None = None) -> torch.Tensor:
        """Logits per patch of ``image`` given ``condition``; unconditional: ``D(image)`` (or
        ``D(None, image)``, the form gradient penalties call)."""
        if not self.conditional:
            return self.net(condition if image is None else image)
        if condition.shape[-2:] != image.shape[-2:]:
            condition = F.interpolate(condition, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return self.net(torch.cat([condition, image], dim=1))
