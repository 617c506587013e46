"""Built-in sample data, made from images that ship with scikit-image (BSD licensed) or
synthesised on the fly, so nothing is downloaded."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import data as skdata
from skimage.draw import ellipse

from .data import blur_downsample, poisson_gaussian_noise


def clean_cells() -> np.ndarray:
    """scikit-image's bundled microscopy image of cells (660x550 uint8)."""
    return skdata.cell()


def noisy_clean_pair(photons: float = 10.0, read_noise: float = 0.03, seed: int = 0):
    """(noisy float32, clean uint8): realistic Poisson-Gaussian camera noise on ``cell``."""
    clean = clean_cells()
    noisy = poisson_gaussian_noise(clean, photons, read_noise, np.random.default_rng(seed))
    return noisy, clean


def low_high_pair(scale: int = 2, photons: float = 50.0, seed: int = 0):
    """(low-resolution float32, high-resolution float32): blur + area downsampling, light noise."""
    high = clean_cells().astype(np.float32)
    h, w = (high.shape[0] // scale) * scale, (high.shape[1] // scale) * scale
    high = high[:h, :w]
    low = blur_downsample(high, scale)
    low = poisson_gaussian_noise(low, photons, 0.01, np.random.default_rng(seed))
    return low, high


def synthetic_nuclei(n: int = 64, size: int = 64, seed: int = 0) -> np.ndarray:
    """A stack ``(n, size, size)`` uint16 of fluorescent nuclei: textured ellipses,
    blurred by a PSF, with shot noise -- a small data set for StyleGAN2."""
    rng = np.random.default_rng(seed)
    stack = np.zeros((n, size, size), np.float32)
    for img in stack:
        for _ in range(rng.integers(2, 6)):
            r = rng.uniform(0.08, 0.2) * size
            rr, cc = ellipse(rng.uniform(0, size), rng.uniform(0, size), r, r * rng.uniform(0.6, 1.0),
                             shape=img.shape, rotation=rng.uniform(0, np.pi))
            img[rr, cc] += rng.uniform(0.5, 1.0)
        texture = ndimage.gaussian_filter(rng.normal(size=img.shape).astype(np.float32), 1.5)
        img *= 1 + 1.5 * texture
        img[:] = ndimage.gaussian_filter(np.clip(img, 0, None), 1.2)
    stack = rng.poisson(stack * 400 + 20).astype(np.uint16)
    return stack
