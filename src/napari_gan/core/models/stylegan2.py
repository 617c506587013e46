"""StyleGAN2 networks in pure PyTorch (no custom CUDA ops), after stylegan2-ada-pytorch.

Generator: mapping network (z -> w, with a running average of w for truncation) and a
skip-architecture synthesis network of modulated/demodulated 3x3 convolutions with
per-layer noise inputs. Discriminator: residual blocks, minibatch standard deviation
and a small epilogue. Every weight uses the equalised learning rate (weights are drawn
from N(0, 1) and scaled at run time), so Adam treats all layers alike.

Resampling uses the [1, 3, 3, 1] filter of the reference: bilinear x2 interpolation
(the same filter) in the generator, a fixed depthwise blur with stride 2 in the
discriminator. Both support double backward, which R1 and path-length regularisation need.

Class-conditional networks (``c_dim`` > 0, one-hot class labels ``c`` of shape (N, c_dim)),
as in stylegan2-ada-pytorch: the mapping network embeds ``c`` with a linear layer and
concatenates it, normalised, with the normalised z; the discriminator's last layer gives
``cmap_dim`` features that are projected on an embedding of ``c`` (:class:`ClassEmbedding`,
"cmap"). With ``c_dim`` = 0 (unconditional) the networks, their state_dict keys and their
outputs are exactly those of the unconditional design.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)
NOISE_MODES = ("random", "const", "none")


def lrelu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with gain sqrt(2), which keeps activations at unit variance."""
    return F.leaky_relu(x, 0.2) * SQRT2


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def downsample2(x: torch.Tensor) -> torch.Tensor:
    """Blur with the [1, 3, 3, 1] filter and keep every second pixel (no aliasing).

    The blur runs in float32 even under bf16 autocast: oneDNN's bf16 depthwise convolution
    is about 7x slower than its float32 one on a CPU (forward + backward, channels-last).
    """
    channels, dtype = x.shape[1], torch.promote_types(x.dtype, torch.float32)
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], device=x.device, dtype=dtype)
    kernel = torch.outer(taps, taps)
    kernel = (kernel / kernel.sum()).expand(channels, 1, 4, 4)
    with torch.autocast(x.device.type, enabled=False):
        return F.conv2d(x.to(dtype), kernel, stride=2, padding=1, groups=channels).to(x.dtype)


def memory_format_of(weight: torch.Tensor) -> torch.memory_format:
    """The layout a network was put in (``net.to(memory_format=...)``), read from a 4-D weight."""
    if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: fewer at high resolution, as in the reference."""
    return max(1, min(channel_base // resolution, channel_max))


# ------------------------------------------------------------------ building blocks
class EqualLinear(nn.Module):
    """Fully connected layer with equalised learning rate (``lr_mul`` slows it down)."""

    def __init__(self, in_features: int, out_features: int, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return lrelu(x) if self.activate else x


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate; ``down`` halves the size first."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool = True,
                 activate: bool = False, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.activate, self.down, self.padding = activate, down, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down:
            x = downsample2(x)
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        return lrelu(x) if self.activate else x


def check_classes(c: torch.Tensor | None, c_dim: int, n: int, what: str) -> None:
    """A clear error for missing or mis-shaped class labels (``c`` must be (n, c_dim))."""
    if c_dim == 0:
        if c is not None:
            raise ValueError(f"this {what} is unconditional; it takes no class labels")
        return
    if c is None:
        raise ValueError(f"this class-conditional {what} needs class labels c of shape (N, {c_dim})")
    if tuple(c.shape) != (n, c_dim):
        raise ValueError(f"class labels must have shape ({n}, {c_dim}), not {tuple(c.shape)}")


class ClassEmbedding(nn.Module):
    """One-hot class labels (N, c_dim) -> (N, dim): a linear embedding, normalised, then
    ``layers`` fully connected layers (the discriminator's "cmap" of stylegan2-ada)."""

    def __init__(self, c_dim: int, dim: int, layers: int = 2, lr_mul: float = 0.01):
        super().__init__()
        self.embed = EqualLinear(c_dim, dim)
        self.layers = nn.ModuleList(EqualLinear(dim, dim, lr_mul=lr_mul, activate=True) for _ in range(layers))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        x = normalize_2nd_moment(self.embed(c.float()))
        for layer in self.layers:
            x = layer(x)
        return x


class MappingNetwork(nn.Module):
    """z (and, for a class-conditional network, a one-hot class c) -> w through a few fully
    connected layers; tracks the average w for truncation."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, layers: int = 2,
                 lr_mul: float = 0.01, w_avg_beta: float = 0.995, c_dim: int = 0):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.w_avg_beta = z_dim, w_dim, num_ws, w_avg_beta
        self.c_dim = c_dim
        if c_dim:   # only then: unconditional networks keep their state_dict keys
            self.embed = EqualLinear(c_dim, w_dim)
        dims = [z_dim + (w_dim if c_dim else 0)] + [w_dim] * layers
        self.layers = nn.ModuleList(
            EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activate=True) for i in range(layers))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation: float = 1.0,
                update_w_avg: bool = False, c: torch.Tensor | None = None) -> torch.Tensor:
        """(N, z_dim) [and (N, c_dim)] -> (N, num_ws, w_dim). ``truncation`` < 1 pulls w towards
        the average."""
        check_classes(c, self.c_dim, z.shape[0], "mapping network")
        x = normalize_2nd_moment(z.float())
        if self.c_dim:
            x = torch.cat([x, normalize_2nd_moment(self.embed(c.float()))], dim=1)
        for layer in self.layers:
            x = layer(x)
        x = x.float()
        if update_w_avg:
            self.w_avg.copy_(x.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation != 1.0:
            x = self.w_avg.lerp(x, truncation)
        return x.unsqueeze(1).repeat(1, self.num_ws, 1)


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by a style from w, then
    demodulated so every output channel has unit expected variance again.

    Scaling the activations instead of the weights is mathematically the same as the
    reference's per-sample weights and runs as one ordinary (non-grouped) convolution.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, w_dim: int,
                 demodulate: bool = True, up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.weight_gain = 1.0 / math.sqrt(c_in * kernel * kernel)
        self.demodulate, self.up, self.padding = demodulate, up, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w).float()
        weight = self.weight * self.weight_gain
        x = x * styles[:, :, None, None].to(x.dtype)
        if self.up:
            x = upsample2(x)
        x = F.conv2d(x, weight.to(x.dtype), padding=self.padding)
        if self.demodulate:
            # demodulation in float32: the sum of squares is where bf16 would lose precision
            sq = (weight.float()[None] * styles[:, None, :, None, None]).square().sum(dim=(2, 3, 4))
            x = x * (sq + 1e-8).rsqrt()[:, :, None, None].to(x.dtype)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution + scaled noise + bias + activation."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, c_out, 3, w_dim, up=up)
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = self.conv(x, w)
        if noise_mode == "random":
            n, _, h, wd = x.shape
            x = x + torch.randn(n, 1, h, wd, device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            x = x + (self.noise_const * self.noise_strength).to(x.dtype)
        return lrelu(x + self.bias.to(x.dtype)[None, :, None, None])


class ToImage(nn.Module):
    """1x1 modulated convolution (no demodulation) to the image channels ("toRGB")."""

    def __init__(self, c_in: int, img_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(c_in, img_channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.to(x.dtype)[None, :, None, None]


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (upsample +) two layers, then add its image."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, img_channels: int):
        super().__init__()
        self.first = c_in == 0
        if self.first:
            self.const = nn.Parameter(torch.randn(c_out, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(c_in, c_out, w_dim, resolution, up=True)
        self.conv1 = SynthesisLayer(c_out, c_out, w_dim, resolution)
        self.to_image = ToImage(c_out, img_channels, w_dim)
        self.num_conv = 1 if self.first else 2

    def forward(self, x, img, ws: torch.Tensor, noise_mode: str = "random"):
        """``ws`` holds ``num_conv + 1`` styles: one per layer and one for the image."""
        if self.first:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode)
        y = self.to_image(x, ws[:, self.num_conv])
        img = y if img is None else upsample2(img).to(y.dtype) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """w (one per layer) -> image, from a learned 4x4 constant up to ``resolution``."""

    def __init__(self, w_dim: int, resolution: int, img_channels: int,
                 channel_base: int, channel_max: int):
        super().__init__()
        self.resolution = resolution
        levels = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
        blocks, c_prev = [], 0
        for res in levels:
            c = channels_at(res, channel_base, channel_max)
            blocks.append(SynthesisBlock(c_prev, c, w_dim, res, img_channels))
            c_prev = c
        self.blocks = nn.ModuleList(blocks)
        # each block's image style is shared with the next block's first layer
        self.num_ws = sum(b.num_conv for b in self.blocks) + 1

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = img = None
        index = 0
        for block in self.blocks:
            x, img = block(x, img, ws[:, index:index + block.num_conv + 1], noise_mode)
            index += block.num_conv
        return img


class Generator(nn.Module):
    """StyleGAN2 generator: ``G(z)`` (or ``G(z, c=onehot)`` with ``c_dim`` classes) -> images
    of shape (N, img_channels, res, res)."""

    def __init__(self, z_dim: int, w_dim: int, resolution: int, img_channels: int = 1,
                 mapping_layers: int = 2, channel_base: int = 16384, channel_max: int = 512,
                 c_dim: int = 0):
        super().__init__()
        self.z_dim, self.w_dim, self.resolution, self.img_channels = z_dim, w_dim, resolution, img_channels
        self.c_dim = c_dim
        self.synthesis = SynthesisNetwork(w_dim, resolution, img_channels, channel_base, channel_max)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, mapping_layers, c_dim=c_dim)

    def forward(self, z: torch.Tensor, truncation: float = 1.0, noise_mode: str = "random",
                update_w_avg: bool = False, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.synthesis(self.mapping(z, truncation, update_w_avg, c=c), noise_mode)


# -------------------------------------------------------------------- discriminator
class DiscriminatorBlock(nn.Module):
    """Two 3x3 convolutions (the second halves the size) plus a 1x1 residual shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv0 = EqualConv2d(c_in, c_in, 3, activate=True)
        self.conv1 = EqualConv2d(c_in, c_out, 3, activate=True, down=True)
        self.skip = EqualConv2d(c_in, c_out, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


class MinibatchStd(nn.Module):
    """Appends the standard deviation across groups of samples as extra feature maps, so
    the discriminator can see a lack of variety (mode collapse)."""

    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        while n % g:
            g -= 1
        f = self.num_channels
        y = x.float().reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)
        y = (y + 1e-8).sqrt().mean(dim=(2, 3, 4))
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y.to(x.dtype)], dim=1)


class Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator: images -> one logit each.

    Class-conditional (``c_dim`` > 0): ``D(img, c)``; the last layer gives ``cmap_dim``
    features (default: the channels at 4x4) whose projection on the class embedding
    ``cmap(c)``, divided by sqrt(cmap_dim), is the logit (stylegan2-ada's epilogue)."""

    def __init__(self, resolution: int, img_channels: int = 1, channel_base: int = 16384,
                 channel_max: int = 512, mbstd_group: int = 4, mbstd_channels: int = 1,
                 c_dim: int = 0, cmap_dim: int | None = None, cmap_layers: int = 2):
        super().__init__()
        self.c_dim = c_dim
        ch = lambda res: channels_at(res, channel_base, channel_max)  # noqa: E731
        self.from_image = EqualConv2d(img_channels, ch(resolution), 1, activate=True)
        levels = [2 ** i for i in range(int(math.log2(resolution)), 2, -1)]
        self.blocks = nn.Sequential(*(DiscriminatorBlock(ch(r), ch(r // 2)) for r in levels))
        c4 = ch(4)
        self.mbstd = MinibatchStd(mbstd_group, mbstd_channels)
        self.conv = EqualConv2d(c4 + mbstd_channels, c4, 3, activate=True)
        self.fc = EqualLinear(c4 * 16, c4, activate=True)
        self.cmap_dim = (cmap_dim or c4) if c_dim else 0
        self.out = EqualLinear(c4, self.cmap_dim if c_dim else 1)
        if c_dim:   # only then: unconditional networks keep their state_dict keys
            self.cmap = ClassEmbedding(c_dim, self.cmap_dim, cmap_layers)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        check_classes(c, self.c_dim, img.shape[0], "discriminator")
        # one-channel images and 1x1 weights look both NCHW and NHWC, and the convolution then
        # answers NCHW: follow the layout of the other weights, or every block converts back
        x = self.from_image(img).contiguous(memory_format=memory_format_of(self.conv.weight))
        x = self.blocks(x)
        x = self.conv(self.mbstd(x))
        x = self.out(self.fc(x.flatten(1))).float()
        if self.c_dim:
            x = (x * self.cmap(c).float()).sum(dim=1, keepdim=True) * (1.0 / math.sqrt(self.cmap_dim))
        return x
