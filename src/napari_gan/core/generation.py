"""Generating images with a trained StyleGAN2 model.

    gen = load_generator("run/model.safetensors")     # or the run folder
    images = gen.generate(16, seed=1, truncation=0.7)  # (16, H, W) float32
    z = gen.latents(16, seed=1)                        # the latent vectors behind them
    same = gen.generate_from_latents(z, truncation=0.7)
    movie = gen.interpolate(1, 2, frames=30)           # (30, H, W): seed 1 -> seed 2

Images come back in the training images' intensity units, shape ``(N, H, W)`` for
one-channel models and ``(N, C, H, W)`` otherwise. Latents are drawn on the CPU from the
seed, so a seed means the same vectors everywhere; the per-layer noise is the model's
fixed noise, so the same seed gives the same images on the same device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import Normalizer
from .device import autocast, describe_device, resolve_device
from . import settings
from .errors import NapariGanError
from .settings import setting


@dataclass
class GenerateSettings:
    """What to generate (declared once for the CLI and Generate Data)."""

    n: int = setting(16, "number of images", min=1, max=100_000, label="Number of images")
    seed: int = setting(0, "the same seed gives the same images", min=0, max=2**31 - 1)
    truncation: float = setting(1.0, "psi: 1 = full variety, 0.5-0.8 = more typical images", min=0, max=2)
    frames: int = setting(30, "frames of an --interpolate sequence", min=2, max=100_000, widget=False)

    def __post_init__(self):
        settings.check(self)


class ImageGenerator:
    """A loaded StyleGAN2 (EMA) generator with the normalisation of its training images."""

    def __init__(self, generator: torch.nn.Module, norm: Normalizer, device: torch.device,
                 config: dict, path: Path | None = None, batch: int = 16):
        self.G = generator.eval().requires_grad_(False).to(device)
        self.norm, self.device, self.config, self.path = norm, device, config, path
        self.batch = batch

    @property
    def z_dim(self) -> int:
        return self.G.z_dim

    @property
    def resolution(self) -> int:
        return self.G.resolution

    @property
    def channels(self) -> int:
        return self.G.img_channels

    @property
    def device_name(self) -> str:
        return describe_device(self.device)

    def latents(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` latent vectors (N, z_dim) float32 from N(0, 1), fixed by ``seed``."""
        if n < 1:
            raise NapariGanError("The number of images must be at least 1.")
        gen = torch.Generator().manual_seed(int(seed))
        return torch.randn(n, self.z_dim, generator=gen).numpy()

    def generate(self, n: int, seed: int = 0, truncation: float = 1.0) -> np.ndarray:
        """``n`` images from the latents of ``seed``; ``truncation`` < 1 trades variety for typicality."""
        return self.generate_from_latents(self.latents(n, seed), truncation)

    def generate_from_latents(self, z: np.ndarray, truncation: float = 1.0) -> np.ndarray:
        """Images for given latent vectors ``z`` of shape (N, z_dim)."""
        z = self._check_latents(z)
        _check_truncation(truncation)
        out = []
        with torch.inference_mode():
            for chunk in torch.from_numpy(z).split(self.batch):
                # float32 on CPUs: bf16 would be 2.3x faster but round every pixel to 8 significant
                # bits, and 2 cores already generate about 140 images/s at 64x64
                with autocast(self.device, self.device.type == "cuda"):
                    img = self.G(chunk.to(self.device), truncation=truncation, noise_mode="const")
                out.append(img.float().cpu())
        images = torch.cat(out).numpy()
        units = np.moveaxis(self.norm.denormalize(np.moveaxis((images + 1) * 0.5, 1, 0)), 0, 1)
        return units[:, 0] if self.channels == 1 else units

    def interpolation_latents(self, seed_a: int, seed_b: int, frames: int) -> np.ndarray:
        """``frames`` latents on the great circle from seed_a's latent to seed_b's (slerp,
        which keeps them as likely under N(0, 1) as the end points)."""
        if frames < 2:
            raise NapariGanError("An interpolation needs at least 2 frames.")
        a, b = self.latents(1, seed_a)[0].astype(np.float64), self.latents(1, seed_b)[0].astype(np.float64)
        cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
        omega = np.arccos(np.clip(cos, -1.0, 1.0))
        t = np.linspace(0.0, 1.0, frames)[:, None]
        if omega < 1e-6:
            z = (1 - t) * a + t * b
        else:
            z = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
        return z.astype(np.float32)

    def interpolate(self, seed_a: int, seed_b: int, frames: int = 30, truncation: float = 1.0) -> np.ndarray:
        """A sequence of ``frames`` images morphing from seed_a's first image to seed_b's."""
        return self.generate_from_latents(self.interpolation_latents(seed_a, seed_b, frames), truncation)

    def _check_latents(self, z) -> np.ndarray:
        z = np.asarray(z)
        if z.ndim != 2 or z.shape[1] != self.z_dim or z.shape[0] < 1 or z.dtype.kind not in "fiu":
            raise NapariGanError(
                f"Latent vectors must be an array of shape (N, {self.z_dim}) for this model; "
                f"got shape {z.shape} ({z.dtype}).")
        if not np.isfinite(z).all():
            raise NapariGanError("The latent vectors contain NaN or infinite values.")
        return np.ascontiguousarray(z, np.float32)


def _check_truncation(psi: float) -> None:
    if not np.isfinite(psi) or not 0.0 <= psi <= 2.0:
        raise NapariGanError(f"Truncation must be between 0 and 2 (1 = none, 0.7 is typical), not {psi}.")


def load_generator(path: str | Path, device: str = "auto") -> ImageGenerator:
    """Load a generator model file (or run folder); other models and foreign files are refused."""
    from .families import open_model

    return open_model(path, "noise", device)[2]
