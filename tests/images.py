"""Small synthetic test images shared by the core and widget tests."""

import numpy as np


def smooth_image(shape, seed=0, high=200.0):
    """A structured image (blobs) in [0, high], something a model can learn."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), (0,) * (len(shape) - 2) + (2.5, 2.5))
    img = (img - img.min()) / (img.max() - img.min())
    return (img * high).astype(np.float32)
