"""napari-gan's CycleGAN ResNet generator as one standalone file (PyTorch only).

This file travels inside the bioimage.io packages napari-gan exports of CycleGAN models with
ResNet generators: it is the architecture of their ``pytorch_state_dict`` weights, and the
TorchScript weights are this module scripted. It imports nothing but torch, so any
bioimage.io consumer can load it; its parameter names are those of napari-gan's own network
(``napari_gan.core.models.resnet``), so the state_dict of a napari-gan model file loads into
it unchanged (napari-gan's tests check that both networks compute the same).

``NapariGanResNet(in_channels, out_channels, width, blocks, norm, residual)`` takes
normalised images ``(B, C, H, W)`` and returns ``(B, C_out, H, W)`` in normalised target
units; any H and W work (the input is mirrored up to a multiple of 4, at least 8, and the
output cropped back). With ``per_image`` the network first normalises each input image by
its own intensity range, exactly as napari-gan does for models trained with per-image
normalisation: per channel, the ``percentiles`` of the means of ``block x block`` tiles,
falling back to ``low``/``high`` for constant images (the same code as in napari-gan's
standalone uNet file).
"""

import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

#: per-image ranges use at most about this many block means per channel (as napari-gan)
MAX_STAT_BLOCKS = 4_000_000


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown normalisation '{kind}'")


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


class NapariGanResNet(nn.Module):
    """ResNet generator: a 7x7 stem, two stride-2 downsamplings, ``blocks`` residual blocks at
    4 x ``width`` channels, two nearest-neighbour upsamplings each followed by a 3x3
    convolution, a 7x7 head; with ``residual`` (and as many output as input channels) it
    predicts a correction to its input. ``per_image``: ``None``, or ``{"low": [...], "high":
    [...], "percentiles": [lo, hi], "block": 4}`` to normalise every input image by its own
    range first."""

    per_image_low: List[float]
    per_image_high: List[float]

    def __init__(self, in_channels: int = 1, out_channels: int = 1, width: int = 32, blocks: int = 9,
                 norm: str = "none", residual: bool = False, per_image: Optional[Dict[str, object]] = None):
        super().__init__()
        if blocks < 0:
            raise ValueError("blocks must not be negative")
        self.multiple = 4
        self.max_stat_blocks = MAX_STAT_BLOCKS
        self.residual = bool(residual) and in_channels == out_channels
        w1, w2, w4 = width, 2 * width, 4 * width
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(in_channels, w1, 7), _norm(norm, w1),
                                  nn.ReLU(inplace=True))
        self.down = nn.Sequential(
            nn.Conv2d(w1, w2, 3, stride=2, padding=1), _norm(norm, w2), nn.ReLU(inplace=True),
            nn.Conv2d(w2, w4, 3, stride=2, padding=1), _norm(norm, w4), nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(*[ResidualBlock(w4, norm) for _ in range(blocks)])
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2.0, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(w4, w2, 3),
            _norm(norm, w2), nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2.0, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(w2, w1, 3),
            _norm(norm, w1), nn.ReLU(inplace=True),
        )
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w1, out_channels, 7))

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
        m = self.multiple   # and at least 2 pixels in the residual blocks (their reflection padding)
        pad_h, pad_w = max(h + (-h) % m, 2 * m) - h, max(w + (-w) % m, 2 * m) - w
        inp = x
        if pad_h > 0 or pad_w > 0:
            if pad_h < h and pad_w < w:
                x = F.pad(x, [0, pad_w, 0, pad_h], mode="reflect")
            else:
                x = F.pad(x, [0, pad_w, 0, pad_h], mode="replicate")
        y = self.head(self.up(self.blocks(self.down(self.stem(x)))))
        y = y[:, :, :h, :w]
        if self.residual:
            return inp + y
        return y
