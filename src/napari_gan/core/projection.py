"""Projection: the latent of a trained StyleGAN2 generator that best reproduces a real image.

After stylegan2-ada-pytorch's ``projector.py``: one w per image is optimised with Adam,
starting from the average w (of the chosen class for a class-conditional model), with
Gaussian noise added to w early on (it decays to nothing over the first 75% of the steps)
and a learning rate that ramps up over the first 5% and down over the last 25%. Because no
pretrained weights can be downloaded, the distance is weight-free instead of LPIPS: on a
pyramid of the images (full size, then halved until 8 pixels), the L1 distance plus
(1 - SSIM), both on model-space pixels (the training normalisation, [-1, 1]).

The result is **per-layer styles** ``(N, num_ws, w_dim)`` (the one w repeated for every
layer, "w+" shaped, as the reference saves it): ``napari-gan generate --latents`` and
:meth:`.generation.ImageGenerator.generate_from_latents` take them, and
:meth:`~.generation.ImageGenerator.latent_path` interpolates between two (a straight line in
W). W is where projections are faithful (z cannot reach most real images) and where
interpolation and editing are smooth.

By default the model's fixed per-layer noise is kept, so generating from the latents gives
exactly the reconstruction. ``optimize_noise`` also fits the noise maps, with the
reference's regularisation (their autocorrelation at every scale is pushed to zero, so they
stay noise and do not absorb the image): a closer reconstruction, but that extra detail lives
in the fitted noise, not in the latents.

    result = project(generator, images, steps=300)   # images: (N, H, W) in their units
    np.save("latents.npy", result.styles)
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import settings
from .errors import NapariGanError
from .settings import setting


@dataclass
class ProjectSettings:
    """How a projection runs (declared once for the command line)."""

    steps: int = setting(300, "optimisation steps per image", min=1, max=100_000)
    lr: float = setting(0.1, "initial learning rate of w", min=0, min_exclusive=True, max=10, advanced=True,
                        label="Learning rate")
    optimize_noise: bool = setting(False, "also fit the per-layer noise maps (a closer reconstruction, but "
                                   "the latents alone do not reproduce that detail)", advanced=True)
    noise_weight: float = setting(1e5, "weight of the noise regularisation (with --optimize-noise)", min=0,
                                  max=1e9, advanced=True)
    seed: int = setting(0, "seed of the exploration noise added to w early on", min=0, max=2**31 - 1)

    def __post_init__(self):
        settings.check(self)


@dataclass
class Projection:
    """What :func:`project` found: per-layer styles ``(N, num_ws, w_dim)``, the
    reconstructions in the images' units (like the input), and the PSNR (dB, on the
    normalised [0, 1] range) of each reconstruction against its image."""

    styles: np.ndarray
    reconstruction: np.ndarray
    psnr: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)


# ---------------------------------------------------------------------------- loss
def _gaussian_window(size: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """Mean SSIM per image of (N, C, H, W) tensors (Gaussian window of sigma 1.5, reflected
    borders), differentiable."""
    n, c, h, w = a.shape
    size = min(11, h, w) | 1
    g = _gaussian_window(size, 1.5, a.device, a.dtype)
    pad = size // 2

    def blur(x):
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect" if min(h, w) > pad else "replicate")
        x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, size), groups=c)
        return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, size, 1), groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))
    return s.mean(dim=(1, 2, 3))


def image_distance(a: torch.Tensor, b: torch.Tensor, min_size: int = 8) -> torch.Tensor:
    """Weight-free multi-scale distance per image of (N, C, H, W) model-space images: over a
    pyramid (halved until ``min_size``), mean L1 plus (1 - SSIM), averaged over the levels."""
    total, levels = 0.0, 0
    while True:
        total = total + (a - b).abs().mean(dim=(1, 2, 3)) + (1.0 - ssim(a, b))
        levels += 1
        if min(a.shape[-2:]) // 2 < min_size:
            break
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return total / levels


def noise_regularization(noises: list[torch.Tensor]) -> torch.Tensor:
    """The reference's: squared autocorrelation (shift by one pixel along X and Y) of every
    noise map at every scale down to 8 pixels."""
    reg = 0.0
    for noise in noises:
        x = noise[None, None]
        while True:
            reg = reg + (x * torch.roll(x, 1, dims=3)).mean() ** 2 + (x * torch.roll(x, 1, dims=2)).mean() ** 2
            if x.shape[2] <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return reg


def psnr01(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR (dB) per image of model-space images, on the [0, 1] range they map to."""
    mse = (((a - b) * 0.5) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return -10.0 * torch.log10(mse)


# ---------------------------------------------------------------------- projection
def _w_statistics(G, c: torch.Tensor | None, n: int, device) -> tuple[torch.Tensor, float]:
    """Average w and its spread (root mean square distance to the average) over ``n`` latents
    drawn from a fixed seed (of class ``c``, a one-hot row, or of classes drawn evenly)."""
    gen = torch.Generator().manual_seed(123_456)
    z = torch.randn(n, G.z_dim, generator=gen).to(device)
    labels = None
    if G.c_dim:
        labels = c.expand(n, -1) if c is not None else \
            F.one_hot(torch.arange(n) % G.c_dim, G.c_dim).float().to(device)
    with torch.no_grad():
        w = G.mapping(z, c=labels)[:, 0].float()
    avg = w.mean(0)
    return avg, float(((w - avg) ** 2).sum(dim=1).mean().sqrt())


def project(generator, images: np.ndarray, how: ProjectSettings | None = None, class_name: str | None = None,
            progress: Callable[[int, int, float], None] | None = None,
            cancel: Callable[[], bool] | None = None) -> Projection:
    """Project ``images`` (one image ``(H, W)``/``(C, H, W)`` or a stack ``(N, H, W)``/
    ``(N, C, H, W)``, in the training images' units, of the model's resolution) into the W
    space of ``generator`` (an :class:`.generation.ImageGenerator`). ``class_name``: the class
    of the images, for a class-conditional model (the start and the statistics of w are
    that class's; without it, those of all classes). ``progress(step, steps, loss)`` is called
    every step; ``cancel()`` returning True stops early with the current latents."""
    how = how or ProjectSettings()
    G, device = generator.G, generator.device
    target = _check_images(generator, images)
    c = None
    if class_name is not None:
        c = generator.one_hot([generator.class_index(class_name)])
    w_avg, w_std = _w_statistics(G, c, 10_000, device)
    target_t = torch.from_numpy(target).to(device)
    if how.optimize_noise:   # the noise maps are shared by a batch: one image at a time
        parts = [_project(G, target_t[i:i + 1], w_avg, w_std, how, progress, cancel, i, len(target))
                 for i in range(len(target))]
        styles = torch.cat([p[0] for p in parts])
        recon = torch.cat([p[1] for p in parts])
        losses = [v for p in parts for v in p[2]]
    else:
        styles, recon, losses = _project(G, target_t, w_avg, w_std, how, progress, cancel, 0, 1)
    psnr = psnr01(recon, target_t).tolist()
    out = generator.to_units(recon.cpu().numpy())
    single = np.asarray(images).ndim == (2 if generator.channels == 1 else 3)
    return Projection(styles.cpu().numpy().astype(np.float32), out[0] if single else out, psnr, losses)


def _check_images(generator, images) -> np.ndarray:
    """The images as model-space (N, C, R, R) float32, or a clear error."""
    images = np.asarray(images)
    r, ch = generator.resolution, generator.channels
    if images.dtype.kind not in "uif":
        raise NapariGanError(f"The image has data type {images.dtype}; expected integer or float pixels.")
    base = 2 if ch == 1 else 3
    if images.ndim == base:
        images = images[None]
    if images.ndim != base + 1 or (ch > 1 and images.shape[1] != ch):
        want = "(H, W) or (N, H, W)" if ch == 1 else f"({ch}, H, W) or (N, {ch}, H, W)"
        raise NapariGanError(f"The image has shape {images.shape}; this model needs {want} images.")
    if images.shape[-2:] != (r, r):
        raise NapariGanError(f"The image is {images.shape[-2]}x{images.shape[-1]} pixels but the model makes "
                             f"{r}x{r} images; crop a {r}x{r} region (e.g. around one cell) to project.")
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise NapariGanError("The image contains NaN or infinite values.")
    return np.ascontiguousarray(generator.to_model(images), np.float32)


def _project(G, target: torch.Tensor, w_avg: torch.Tensor, w_std: float, how: ProjectSettings,
             progress, cancel, index: int, count: int):
    """Optimise one w per image of ``target`` (N, C, R, R); ``(styles, reconstruction, losses)``."""
    device = target.device
    n = target.shape[0]
    synthesis = G.synthesis
    noises: list[torch.Tensor] = []
    if how.optimize_noise:
        synthesis = copy.deepcopy(G.synthesis)
        gen = torch.Generator().manual_seed(how.seed + 1)
        for name, buf in synthesis.named_buffers():
            if name.endswith("noise_const"):
                buf.copy_(torch.randn(buf.shape, generator=gen).to(device))
                buf.requires_grad_(True)
                noises.append(buf)
    w = w_avg.detach().clone()[None].repeat(n, 1).requires_grad_(True)
    opt = torch.optim.Adam([w] + noises, lr=how.lr, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(how.seed)
    losses = []
    steps = how.steps
    with torch.enable_grad():
        for step in range(steps):
            if cancel is not None and cancel():
                break
            t = step / steps
            noise_scale = w_std * 0.05 * max(0.0, 1.0 - t / 0.75) ** 2
            ramp = min(1.0, (1.0 - t) / 0.25)
            ramp = (0.5 - 0.5 * math.cos(ramp * math.pi)) * min(1.0, t / 0.05)
            for group in opt.param_groups:
                group["lr"] = how.lr * ramp
            w_noise = torch.randn(w.shape, generator=gen).to(device) * noise_scale
            ws = (w + w_noise)[:, None].expand(-1, G.num_ws, -1)
            image = synthesis(ws, noise_mode="const").float()
            loss = image_distance(image, target).sum()
            if noises:
                loss = loss + how.noise_weight * noise_regularization(noises)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if noises:
                with torch.no_grad():
                    for buf in noises:
                        buf -= buf.mean()
                        buf *= buf.square().mean().rsqrt()
            losses.append(float(loss.detach()) / n)
            if progress is not None:
                progress(index * steps + step + 1, count * steps, losses[-1])
    with torch.no_grad():
        styles = w.detach()[:, None].repeat(1, G.num_ws, 1)
        reconstruction = synthesis(styles, noise_mode="const").float()
    return styles, reconstruction, losses


def morph_latents(generator, styles: np.ndarray, frames: int) -> np.ndarray:
    """Per-layer styles morphing through ``styles`` (N >= 2, in order): ``frames`` from each
    one to the next (:meth:`~.generation.ImageGenerator.latent_path`), the shared ends once."""
    if len(styles) < 2:
        raise NapariGanError("A sequence needs at least 2 projected images to morph between.")
    last = len(styles) - 2
    parts = [generator.latent_path(a, b, frames)[: None if i == last else -1]
             for i, (a, b) in enumerate(zip(styles[:-1], styles[1:]))]
    return np.concatenate(parts)
