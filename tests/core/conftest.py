import numpy as np
import pytest


from tests.images import smooth_image  # noqa: F401  (re-exported for the tests)


@pytest.fixture
def toy_pair():
    from napari_gan.core.data import poisson_gaussian_noise

    clean = smooth_image((64, 64))
    noisy = poisson_gaussian_noise(clean, 30, 0.02, np.random.default_rng(1))
    return noisy, clean


@pytest.fixture
def tiny_cfg():
    from napari_gan.core.families.pix2pix import Pix2PixConfig

    def make(**kw):
        base = dict(depth=2, width=8, disc_width=8, disc_layers=2, patch=32, batch=2, val_fraction=0.2)
        base.update(kw)
        return Pix2PixConfig(**base)

    return make
