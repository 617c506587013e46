"""napari sample-data contribution: small data sets to try every widget on.

Each function returns napari layer-data tuples. The pixels come from
:mod:`napari_gan.core.samples` (scikit-image's bundled ``cell`` image and synthetic
nuclei), so nothing is downloaded and torch is not imported.
"""

from __future__ import annotations


def noisy_clean() -> list[tuple]:
    """A noisy/clean pair for Pix2Pix denoising (same size, same place)."""
    from .core.samples import noisy_clean_pair

    noisy, clean = noisy_clean_pair()
    return [
        (noisy, {"name": "noisy", "colormap": "gray"}, "image"),
        (clean, {"name": "clean", "colormap": "gray"}, "image"),
    ]


def low_high(scale: int = 2) -> list[tuple]:
    """A low/high-resolution pair for Pix2Pix super-resolution.

    The low-resolution layer gets ``scale`` times larger pixels, shifted so that each of
    its pixels covers the ``scale x scale`` high-resolution pixels it was made from.
    """
    from .core.samples import low_high_pair

    low, high = low_high_pair(scale)
    offset = (scale - 1) / 2
    return [
        (low, {"name": f"low resolution (x{scale})", "colormap": "gray",
               "scale": (scale, scale), "translate": (offset, offset)}, "image"),
        (high, {"name": "high resolution", "colormap": "gray"}, "image"),
    ]


def nuclei_stack(n: int = 64, size: int = 64) -> list[tuple]:
    """A small stack of fluorescent-nuclei images for StyleGAN2 training."""
    from .core.samples import synthetic_nuclei

    stack = synthetic_nuclei(n, size)
    return [(stack, {"name": "nuclei", "colormap": "gray"}, "image")]
