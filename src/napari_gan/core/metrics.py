"""Image-quality measures that need no downloaded weights."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def psnr(pred: np.ndarray, target: np.ndarray, data_range: float) -> float:
    return float(peak_signal_noise_ratio(target.astype(np.float64), pred.astype(np.float64),
                                         data_range=data_range))


def ssim(pred: np.ndarray, target: np.ndarray, data_range: float) -> float:
    """SSIM of (..., H, W) arrays; leading axes are averaged."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    pred2, target2 = pred.reshape((-1,) + pred.shape[-2:]), target.reshape((-1,) + target.shape[-2:])
    win = min(7, *pred.shape[-2:])
    win -= 1 - win % 2
    return float(np.mean([structural_similarity(t, p, data_range=data_range, win_size=win)
                          for p, t in zip(pred2, target2)]))


def high_frequency_power(image: np.ndarray, cutoff: float = 0.25) -> float:
    """Mean spectral power above ``cutoff`` x Nyquist (radially), a sharpness measure."""
    x = np.asarray(image, np.float64)
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    power = np.abs(np.fft.fft2(x)) ** 2
    fy = np.fft.fftfreq(x.shape[-2])[:, None]
    fx = np.fft.fftfreq(x.shape[-1])[None, :]
    mask = np.sqrt(fx**2 + fy**2) > cutoff * 0.5
    return float(power[..., mask].mean())


def high_frequency_ratio(pred: np.ndarray, target: np.ndarray, cutoff: float = 0.25) -> float:
    """High-frequency power of ``pred`` relative to ``target``: 1 is right, below 1 is blur."""
    return high_frequency_power(pred, cutoff) / max(high_frequency_power(target, cutoff), 1e-20)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, n_projections: int = 128,
                       rng: np.random.Generator | None = None) -> float:
    """Sliced Wasserstein distance between two sets of vectors ``(N, D)`` and ``(M, D)``."""
    rng = rng or np.random.default_rng(0)
    a, b = np.asarray(a, np.float64).reshape(len(a), -1), np.asarray(b, np.float64).reshape(len(b), -1)
    dirs = rng.normal(size=(a.shape[1], n_projections))
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
    n = min(len(pa), len(pb))
    qs = np.linspace(0, 1, n)
    pa = np.quantile(pa, qs, axis=0) if len(pa) != n else pa
    pb = np.quantile(pb, qs, axis=0) if len(pb) != n else pb
    return float(np.abs(pa - pb).mean())


def _band_pass_pyramid(images: np.ndarray, min_size: int) -> list[np.ndarray]:
    """(N, C, H, W) -> detail bands at H, H/2, ... and the low-pass residual at ``min_size``."""
    from scipy import ndimage

    levels, current = [], np.asarray(images, np.float64)
    while current.shape[-1] > min_size:
        blurred = ndimage.gaussian_filter(current, sigma=(0, 0, 1, 1), mode="reflect")
        levels.append(current - blurred)
        current = blurred[..., ::2, ::2]
    levels.append(current)
    return levels


def _random_patches(level: np.ndarray, per_image: int, patch: int, rng: np.random.Generator) -> np.ndarray:
    """``per_image`` random ``patch x patch`` windows of each image, as (N * per_image, C * patch**2)."""
    n, c, h, w = level.shape
    patch = min(patch, h, w)
    windows = np.lib.stride_tricks.sliding_window_view(level, (patch, patch), axis=(-2, -1))
    idx = np.repeat(np.arange(n), per_image)
    ys = rng.integers(0, h - patch + 1, idx.size)
    xs = rng.integers(0, w - patch + 1, idx.size)
    picked = windows[idx, :, ys, xs]            # (M, C, patch, patch)
    return picked.reshape(idx.size, -1)


def patch_swd(real: np.ndarray, fake: np.ndarray, per_image: int = 64, patch: int = 7,
              min_size: int = 16, seed: int = 0) -> dict[str, float]:
    """Multi-scale sliced Wasserstein distance between real and generated image sets.

    As in Karras et al. (ProGAN): random 7x7 patches from each band of a band-pass
    pyramid are compared, after scaling every band by the real patches' statistics.
    ``real`` and ``fake`` are (N, C, H, W) in the same units. Lower is better; needs no
    downloaded weights. Returns one value per band (``swd<size>``) and their mean (``swd``).
    """
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for band_real, band_fake in zip(_band_pass_pyramid(real, min_size), _band_pass_pyramid(fake, min_size)):
        a = _random_patches(band_real, per_image, patch, rng)
        b = _random_patches(band_fake, per_image, patch, rng)
        mean, std = a.mean(axis=0), a.std() + 1e-8
        value = sliced_wasserstein((a - mean) / std, (b - mean) / std, rng=rng)
        out[f"swd{band_real.shape[-1]}"] = value
    return {"swd": float(np.mean(list(out.values()))), **out}
