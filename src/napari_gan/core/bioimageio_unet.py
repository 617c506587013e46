"""napari-gan's Pix2Pix uNet generator as one standalone file (PyTorch only).

This file travels inside the bioimage.io packages napari-gan exports: it is the architecture
of their ``pytorch_state_dict`` weights, and the TorchScript weights are this module
scripted. It imports nothing but torch, so any bioimage.io consumer can load it; its
parameter names are those of napari-gan's own network (``napari_gan.core.models.unet``),
so the state_dict of a napari-gan model file loads into it unchanged (napari-gan's tests
check that both networks compute the same).

``NapariGanUNet(in_channels, out_channels, depth, width, scale, norm, residual)`` takes
normalised images ``(B, C, H, W)`` and returns ``(B, C_out, H*scale, W*scale)`` in
normalised target units; any H and W work (the input is mirrored up to a multiple of
``2**depth`` and the output cropped back). With ``per_image`` the network first normalises
each input image by its own intensity range, exactly as napari-gan does for models trained
with per-image normalisation: per channel, the ``percentiles`` of the means of
``block x block`` tiles, falling back to ``low``/``high`` for constant images.
"""

import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

#: per-image ranges use at most about this many block means per channel (as napari-gan)
MAX_STAT_BLOCKS = 4_000_000


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
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.leaky_relu(self.conv(x), 0.1)


def _percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """numpy.percentile(values, q) (method "linear") of a sorted 1-D float64 tensor."""
    n = values.shape[0]
    index = (n - 1) * (q / 100.0)
    below = int(math.floor(index))
    above = min(below + 1, n - 1)
    t = index - below
    a, b = values[below], values[above]
    diff = b - a
    if t >= 0.5:
        return b - diff * (1.0 - t)
    return a + diff * t


class NapariGanUNet(nn.Module):
    """uNet: ``depth`` down-sampling levels, ``width`` channels at the first level (doubled
    per level), output ``scale`` times larger than the input (1, 2 or 4); with ``residual``
    (and as many output as input channels) it predicts a correction to the (upsampled) input.
    ``per_image``: ``None``, or ``{"low": [...], "high": [...], "percentiles": [lo, hi],
    "block": 4}`` to normalise every input image by its own range first."""

    per_image_low: List[float]
    per_image_high: List[float]

    def __init__(self, in_channels: int = 1, out_channels: int = 1, depth: int = 3, width: int = 32,
                 scale: int = 1, norm: str = "none", residual: bool = True,
                 per_image: Optional[Dict[str, object]] = None):
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError("scale must be 1, 2 or 4")
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth, self.scale = depth, scale
        self.multiple = 2**depth
        self.max_stat_blocks = MAX_STAT_BLOCKS
        self.residual = bool(residual) and in_channels == out_channels
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

        self.per_image = per_image is not None
        self.per_image_low, self.per_image_high = [], []
        self.per_image_q_low, self.per_image_q_high, self.per_image_block = 0.0, 100.0, 1
        if per_image is not None:
            low, high, q = per_image["low"], per_image["high"], per_image["percentiles"]
            self.per_image_low = [float(v) for v in low]      # type: ignore[union-attr]
            self.per_image_high = [float(v) for v in high]    # type: ignore[union-attr]
            self.per_image_q_low, self.per_image_q_high = float(q[0]), float(q[1])  # type: ignore[index]
            self.per_image_block = int(per_image.get("block", 4))  # type: ignore[arg-type]
            if len(self.per_image_low) != in_channels or len(self.per_image_high) != in_channels:
                raise ValueError("per_image needs one low and one high value per input channel")

    def _normalize_image(self, x: torch.Tensor) -> torch.Tensor:
        """Each image ``(C, H, W)`` of the batch mapped by its own per-channel range."""
        block = self.per_image_block
        h, w = x.shape[-2] // block, x.shape[-1] // block
        out = []
        for i in range(x.shape[0]):
            image = x[i].to(torch.float64)
            if h == 0 or w == 0:
                means = image.reshape(image.shape[0], -1)
            else:
                pooled = F.avg_pool2d(image[None, :, : h * block, : w * block], block)[0]
                step = max(1, int(math.ceil(h * w / self.max_stat_blocks)))
                means = pooled[:, ::step].reshape(image.shape[0], -1)
            lows: List[float] = []
            highs: List[float] = []
            for c in range(image.shape[0]):
                ordered = torch.sort(means[c])[0]
                lo = float(_percentile(ordered, self.per_image_q_low))
                hi = float(_percentile(ordered, self.per_image_q_high))
                if hi > lo:
                    lows.append(lo)
                    highs.append(hi)
                else:
                    lows.append(self.per_image_low[c])
                    highs.append(self.per_image_high[c])
            # the map napari-gan applies: float32 offset and float32 (high - low)
            offset = torch.tensor(lows, dtype=torch.float64).to(torch.float32)
            span = torch.tensor(highs, dtype=torch.float64).to(torch.float32) - offset
            offset = offset.to(x.device)[:, None, None]
            span = span.to(x.device)[:, None, None]
            out.append((x[i].to(torch.float32) - offset) / span)
        return torch.stack(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_image:
            x = self._normalize_image(x)
        h, w = x.shape[-2], x.shape[-1]
        m = self.multiple
        pad_h, pad_w = (m - h % m) % m, (m - w % m) % m
        inp = x
        if pad_h > 0 or pad_w > 0:
            if pad_h < h and pad_w < w:
                x = F.pad(x, [0, pad_w, 0, pad_h], mode="reflect")
            else:
                x = F.pad(x, [0, pad_w, 0, pad_h], mode="replicate")
        skips: List[torch.Tensor] = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        level = len(skips) - 1
        for up, dec in zip(self.ups, self.decoders):
            x = dec(torch.cat([up(x), skips[level]], dim=1))
            level -= 1
        x = self.head(self.upscale(x))
        x = x[:, :, : h * self.scale, : w * self.scale]
        if self.residual:
            if self.scale == 1:
                x = x + inp
            else:
                x = x + F.interpolate(inp, scale_factor=float(self.scale), mode="bilinear",
                                      align_corners=False)
        return x
