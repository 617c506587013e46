"""ResNet generator for unpaired image-to-image translation (CycleGAN).

The layout of Johnson et al. (2016) as used by CycleGAN (junyanz/pytorch-CycleGAN-and-pix2pix
``resnet_9blocks``): a 7x7 stem, two stride-2 downsamplings, ``blocks`` residual blocks at 4x
the width, two upsamplings and a 7x7 head, with reflection padding throughout.

Differences from the reference, for microscopy and tiled prediction:

* Upsampling is nearest-neighbour interpolation followed by a 3x3 convolution instead of a
  transposed convolution (no checkerboard artefacts).
* No normalisation layers by default. Instance normalisation (the reference's) makes every
  output pixel depend on the statistics of the whole input, so a tile would be translated
  differently from the same pixels in the whole image (seams, results that change with the
  tile size); ``norm="instance"`` is available for experiments on small images.
* No ``tanh``: images are in model units (about 0..1 after percentile normalisation, with
  bright outliers above 1) and the output is linear. With ``residual`` the network predicts a
  correction to its input, so training starts from the identity; CycleGAN leaves it off by
  default, because its cycle loss holds generators started at the identity there (W2S
  noisy -> clean: no translation after 500 steps, while a random start translated).
* Inputs of any size: they are padded (reflect) to a multiple of 4 (at least 8) and the output
  cropped back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("none", "instance")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation '{kind}'; choose one of {', '.join(NORMS)}")


class ResidualBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(x))), reflection-padded."""

    def __init__(self, channels: int, norm: str = "none"):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(norm, channels), nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetGenerator(nn.Module):
    """``in_channels`` -> ``out_channels`` at the same size; ``width`` channels after the stem
    (``4 * width`` in the ``blocks`` residual blocks)."""

    #: the input size is padded to a multiple of this (two stride-2 downsamplings)
    multiple = 4

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32, blocks: int = 9,
                 norm: str = "none", residual: bool = False):
        super().__init__()
        if blocks < 0:
            raise ValueError("blocks must not be negative")
        self.residual = residual and in_channels == out_channels
        w1, w2, w4 = width, 2 * width, 4 * width
        act = lambda: nn.ReLU(inplace=True)   # noqa: E731
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, w1, 7), _norm(norm, w1), act())
        self.down = nn.Sequential(
            nn.Conv2d(w1, w2, 3, stride=2, padding=1), _norm(norm, w2), act(),
            nn.Conv2d(w2, w4, 3, stride=2, padding=1), _norm(norm, w4), act(),
        )
        self.blocks = nn.Sequential(*[ResidualBlock(w4, norm) for _ in range(blocks)])
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(w4, w2, 3),
            _norm(norm, w2), act(),
            nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(w2, w1, 3),
            _norm(norm, w1), act(),
        )
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w1, out_channels, 7))
        if self.residual:   # start at (nearly) the identity: the correction starts small
            with torch.no_grad():
                self.head[1].weight.mul_(0.1)
                self.head[1].bias.zero_()

    def receptive_field(self) -> int:
        """Input pixels (per side, full width) that can influence one output pixel: the 7x7
        stem and head widen it by 6 each, the strided convolutions by 2 and 4, each residual
        block by 2 * 2 * 4 (two 3x3 convolutions at 1/4 resolution), the upsampling
        convolutions by 4 and 2."""
        return 1 + 6 + 2 + 4 + 16 * len(self.blocks) + 4 + 2 + 6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.multiple   # and at least 2 pixels in the residual blocks (their reflection padding)
        pad_h, pad_w = max(h + (-h) % m, 2 * m) - h, max(w + (-w) % m, 2 * m) - w
        inp = x
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        y = self.head(self.up(self.blocks(self.down(self.stem(x)))))
        y = y[..., :h, :w]
        return inp + y if self.residual else y
