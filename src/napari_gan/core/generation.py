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

Class-conditional models (trained with ``--classes``; ``gen.class_names``)::

    cells = gen.generate(8, seed=1, class_name="mitotic")   # 8 images of one class
    mixed = gen.generate(8, seed=1)                         # image i of class i mod K

The same seed and class give the same images. Truncation pulls towards the average w of
the class (measured once per class from fixed latents), not of all classes.

Latents are z vectors ``(N, z_dim)`` or per-layer styles ``(N, num_ws, w_dim)`` ("w+", what
:mod:`.projection` finds for real images); :meth:`ImageGenerator.generate_from_latents`
takes either.
"""

from __future__ import annotations

from contextlib import nullcontext
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
    class_name: str | None = setting(None, "class-conditional models: the class of the images",
                                     auto="an equal mix: image i of class i mod the number of classes",
                                     flag="--class", label="Class", widget=False)

    def __post_init__(self):
        settings.check(self)


class ImageGenerator:
    """A loaded StyleGAN2 (EMA) generator with the normalisation of its training images."""

    def __init__(self, generator: torch.nn.Module, norm: Normalizer, device: torch.device,
                 config: dict, path: Path | None = None, batch: int = 16):
        self.G = generator.eval().requires_grad_(False).to(device)
        self.norm, self.device, self.config, self.path = norm, device, config, path
        self.batch = batch
        self._class_w_avg: dict[int, torch.Tensor] = {}   # class label -> its average w

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

    @property
    def num_ws(self) -> int:
        return self.G.num_ws

    @property
    def w_dim(self) -> int:
        return self.G.w_dim

    @property
    def c_dim(self) -> int:
        """Number of classes; 0 for an unconditional model."""
        return int(getattr(self.G, "c_dim", 0))

    @property
    def class_names(self) -> list[str]:
        """The classes of a class-conditional model, in the order of its labels (else empty)."""
        return [str(n) for n in (self.config.get("class_names") or [])][: self.c_dim]

    def class_index(self, name: str) -> int:
        """The label of class ``name``; one clear error listing the known classes otherwise."""
        names = self.class_names
        if not self.c_dim:
            where = f"'{self.path}'" if self.path else "This model"
            raise NapariGanError(f"{where} is not class-conditional (trained without --classes), so it takes no "
                                 f"class (--class {name}).")
        if name not in names:
            raise NapariGanError(f"Unknown class '{name}'; this model knows {len(names)} classes: "
                                 f"{', '.join(names)}.")
        return names.index(name)

    def class_indices(self, n: int, class_name=None) -> np.ndarray | None:
        """The class label of each of ``n`` images: ``class_name`` for all, one name per image
        (a sequence), or None: an equal mix (image i of class i mod K). None for unconditional
        models (which refuse a class)."""
        if not self.c_dim:
            if class_name is not None:   # refused, with the reason
                self.class_index(class_name if isinstance(class_name, str) else ", ".join(map(str, class_name)))
            return None
        if class_name is None:
            return np.arange(n) % self.c_dim
        if isinstance(class_name, str):
            return np.full(n, self.class_index(class_name))
        names = list(class_name)
        if len(names) != n:
            raise NapariGanError(f"{len(names)} class names for {n} images.")
        return np.asarray([self.class_index(str(k)) for k in names])

    def latents(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` latent vectors (N, z_dim) float32 from N(0, 1), fixed by ``seed``."""
        if n < 1:
            raise NapariGanError("The number of images must be at least 1.")
        gen = torch.Generator().manual_seed(int(seed))
        return torch.randn(n, self.z_dim, generator=gen).numpy()

    def generate(self, n: int, seed: int = 0, truncation: float = 1.0, class_name=None) -> np.ndarray:
        """``n`` images from the latents of ``seed``; ``truncation`` < 1 trades variety for typicality.
        ``class_name``: see :meth:`class_indices` (class-conditional models)."""
        return self.generate_from_latents(self.latents(n, seed), truncation, class_name)

    def generate_from_latents(self, z: np.ndarray, truncation: float = 1.0, class_name=None) -> np.ndarray:
        """Images for given latent vectors ``z`` of shape (N, z_dim), or per-layer styles of
        shape (N, num_ws, w_dim) (:mod:`.projection`'s result; the class is in them already, and
        ``class_name`` only chooses the average that truncation pulls towards)."""
        z = self._check_latents(z)
        _check_truncation(truncation)
        styles = z.ndim == 3
        classes = None if styles and class_name is None else self.class_indices(len(z), class_name)
        out = []
        with torch.inference_mode():
            for start in range(0, len(z), self.batch):
                chunk = torch.from_numpy(z[start:start + self.batch]).to(self.device)
                labels = None if classes is None else classes[start:start + self.batch]
                # float32 on CPUs: bf16 would be 2.3x faster but round every pixel to 8 significant
                # bits, and 2 cores already generate about 140 images/s at 64x64
                with autocast(self.device, self.device.type == "cuda"):
                    img = self._render(chunk, labels, truncation, styles)
                out.append(img.float().cpu())
        return self.to_units(torch.cat(out).numpy())

    def to_units(self, images: np.ndarray) -> np.ndarray:
        """Model-space images (N, C, H, W) in [-1, 1] -> the training images' units, (N, H, W)
        for one channel."""
        units = np.moveaxis(self.norm.denormalize(np.moveaxis((images + 1) * 0.5, 1, 0)), 0, 1)
        return units[:, 0] if self.channels == 1 else units

    def to_model(self, images: np.ndarray) -> np.ndarray:
        """Images in the training images' units, (N, H, W) or (N, C, H, W) -> model space."""
        images = np.asarray(images, np.float32)
        if images.ndim == 3:
            images = images[:, None]
        return np.moveaxis(self.norm.normalize(np.moveaxis(images, 1, 0)), 0, 1) * 2.0 - 1.0

    def _render(self, chunk: torch.Tensor, labels, truncation: float, styles: bool) -> torch.Tensor:
        if not styles and labels is None:   # unconditional z: the network's own path
            return self.G(chunk, truncation=truncation, noise_mode="const")
        if styles:
            ws = chunk
        else:
            ws = self.G.mapping(chunk, c=self.one_hot(labels))
        if truncation != 1.0:
            avg = self.average_w(labels)[:, None, :]
            ws = avg + (ws - avg) * truncation
        return self.G.synthesis(ws, noise_mode="const")

    def one_hot(self, labels) -> torch.Tensor:
        index = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        return torch.nn.functional.one_hot(index, self.c_dim).float().to(self.device)

    #: latents averaged for a class's average w (drawn from a fixed seed)
    CLASS_AVERAGE_SAMPLES = 4096

    def average_w(self, labels=None) -> torch.Tensor:
        """The average w of each class in ``labels`` (N, w_dim), or the model's average w
        (1, w_dim) for None. A class's average is measured once from fixed latents."""
        if labels is None:
            return self.G.mapping.w_avg.float()[None]
        cache = self._class_w_avg
        for k in set(int(x) for x in np.asarray(labels).ravel()):
            if k not in cache:   # float32 even inside generate's autocast
                gen = torch.Generator().manual_seed(0x5EED + k)
                z = torch.randn(self.CLASS_AVERAGE_SAMPLES, self.z_dim, generator=gen).to(self.device)
                full = torch.autocast("cuda", enabled=False) if self.device.type == "cuda" else nullcontext()
                with torch.inference_mode(), full:
                    ws = self.G.mapping(z, c=self.one_hot(np.full(len(z), k)))
                cache[k] = ws[:, 0].float().mean(0)
        return torch.stack([cache[int(k)] for k in np.asarray(labels).ravel()])

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

    def interpolate(self, seed_a: int, seed_b: int, frames: int = 30, truncation: float = 1.0,
                    class_name: str | None = None) -> np.ndarray:
        """A sequence of ``frames`` images morphing from seed_a's first image to seed_b's (a
        class-conditional model needs the class of the sequence)."""
        self.check_sequence_class(class_name)
        z = self.interpolation_latents(seed_a, seed_b, frames)
        return self.generate_from_latents(z, truncation, class_name)

    def check_sequence_class(self, class_name) -> None:
        """A sequence of one class-conditional model's images needs one class (not a mix)."""
        if self.c_dim and not isinstance(class_name, str):
            raise NapariGanError(f"A sequence from a class-conditional model shows one class; choose it (--class): "
                                 f"{', '.join(self.class_names)}.")

    @staticmethod
    def latent_path(a: np.ndarray, b: np.ndarray, frames: int) -> np.ndarray:
        """``frames`` latents from ``a`` to ``b``: on the great circle for z vectors (z_dim,),
        on the straight line for per-layer styles (num_ws, w_dim), as stylegan2 does in W."""
        if frames < 2:
            raise NapariGanError("An interpolation needs at least 2 frames.")
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        t = np.linspace(0.0, 1.0, frames).reshape((-1,) + (1,) * a.ndim)
        if a.ndim == 1:
            cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)
            omega = np.arccos(np.clip(cos, -1.0, 1.0))
            if omega >= 1e-6:
                return ((np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)).astype(np.float32)
        return ((1 - t) * a + t * b).astype(np.float32)

    def _check_latents(self, z) -> np.ndarray:
        z = np.asarray(z)
        w_shape = (self.num_ws, self.w_dim)
        if z.ndim == 3 and tuple(z.shape[1:]) == w_shape and z.shape[0] >= 1 and z.dtype.kind == "f":
            pass   # per-layer styles
        elif z.ndim != 2 or z.shape[1] != self.z_dim or z.shape[0] < 1 or z.dtype.kind not in "fiu":
            raise NapariGanError(
                f"Latent vectors must be an array of shape (N, {self.z_dim}) for this model (or per-layer "
                f"styles of shape (N, {w_shape[0]}, {w_shape[1]}) from 'napari-gan project'); "
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
