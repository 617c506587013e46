"""uNet generator for image-to-image restoration, with an optional x2/x4 upscaling head.

Upsampling is always interpolation followed by a convolution (no transposed
convolutions, hence no checkerboard artefacts). There is no batch normalisation, so
training and inference behave the same and results do not depend on batch size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation '{kind}'")


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and LeakyReLU."""

    def __init__(self, c_in: int, c_out: int, norm: str = "none"):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1), _norm(norm, c_out), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1), _norm(norm, c_out), nn.LeakyReLU(0.1, inplace=True),
        )


class Upsample(nn.Module):
    """x2 bilinear interpolation then a 3x3 convolution."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return F.leaky_relu(self.conv(x), 0.1)


class UNetGenerator(nn.Module):
    """uNet: ``depth`` down-sampling levels, ``width`` channels at the first level (doubled
    per level), output ``scale`` times larger than the input (1, 2 or 4).

    With ``residual`` the network predicts a correction to the (upsampled) input, which
    makes denoising and super-resolution converge much faster.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, depth: int = 3,
                 width: int = 32, scale: int = 1, norm: str = "none", residual: bool = True):
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError("scale must be 1, 2 or 4")
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth, self.scale = depth, scale
        self.residual = residual and in_channels == out_channels
        widths = [width * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        c = in_channels
        for w in widths[:-1]:
            self.encoders.append(ConvBlock(c, w, norm))
            c = w
        self.bottleneck = ConvBlock(widths[-2], widths[-1], norm)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w_skip, w_deep in zip(reversed(widths[:-1]), reversed(widths[1:])):
            self.ups.append(Upsample(w_deep, w_skip))
            self.decoders.append(ConvBlock(2 * w_skip, w_skip, norm))
        self.upscale = nn.Sequential(*[Upsample(width, width) for _ in range(int(math.log2(scale)))])
        self.head = nn.Conv2d(width, out_channels, 1)

    def receptive_field(self) -> int:
        """Input pixels (per side, full width) that can influence one output pixel: every 3x3
        convolution at level i widens it by 2 * 2**i, every pooling and upsampling by 2**i."""
        rf = 1
        for i in range(self.depth):
            rf += (2 * 2 + 1) * 2**i          # encoder: two convolutions, then pooling
            rf += (2 + 1 + 2 * 2) * 2**i      # decoder: upsampling (interpolation + conv), two convolutions
        return rf + 2 * 2 * 2**self.depth     # bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        pad_h, pad_w = (-h) % m, (-w) % m
        inp = x
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        x = self.head(self.upscale(x))
        x = x[..., : h * self.scale, : w * self.scale]
        if self.residual:
            base = inp if self.scale == 1 else F.interpolate(
                inp, scale_factor=self.scale, mode="bilinear", align_corners=False)
            x = x + base
        return x
