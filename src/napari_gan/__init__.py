"""napari-gan: GANs for microscopy image restoration and generation.

The numerical core lives in :mod:`napari_gan.core` (numpy + PyTorch, no Qt);
the command line in :mod:`napari_gan.cli`; napari widgets in ``_widgets``.
Nothing heavy is imported here so that napari starts fast.
"""

__version__ = "0.1.0"
