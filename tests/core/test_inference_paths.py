"""Tiled prediction: sums in a band of rows on the device (used on GPUs) equal sums in the
output array (CPU), and predictions can be written into a caller's (memory-mapped) array."""

import numpy as np
import pytest
import torch

from napari_gan.core.data import Normalizer
from napari_gan.core.inference import Predictor
from napari_gan.core.models.unet import UNetGenerator


def _predictor(scale=1, cin=1, cout=1, batch=2):
    torch.manual_seed(0)
    G = UNetGenerator(cin, cout, 2, 4, scale)
    cfg = dict(scale=scale, depth=2, in_channels=cin, out_channels=cout)
    p = Predictor(G, cfg, Normalizer([3.0] * cin, [50.0] * cin), Normalizer([1.0] * cout, [70.0] * cout),
                  torch.device("cpu"))
    p.batch = batch
    return p


@pytest.mark.parametrize("scale,channels,shape,tile,overlap,batch", [
    (1, 1, (150, 101), 64, 16, 1),
    (2, 1, (70, 97), 64, 16, 3),
    (1, 2, (90, 130), 48, 8, 2),
    (1, 1, (20, 30), 128, 48, 2),     # one tile larger than the image
])
def test_device_blending_equals_host_blending(scale, channels, shape, tile, overlap, batch):
    p = _predictor(scale, channels, channels, batch)
    img = np.random.default_rng(0).random((channels,) + shape).astype(np.float32) * 60
    host = p.predict_plane(img, tile=tile, overlap=overlap)
    p.blend_on_device = True
    done = []
    dev = p.predict_plane(img, tile=tile, overlap=overlap, on_tile=lambda i, n: done.append((i, n)))
    np.testing.assert_allclose(dev, host, rtol=1e-5, atol=1e-4)
    assert done[-1][0] == done[-1][1]


def test_prediction_into_a_memory_map(tmp_path):
    import tifffile

    p = _predictor()
    img = np.random.default_rng(1).random((1, 80, 90)).astype(np.float32) * 60
    expected = p.predict_plane(img, tile=64, overlap=16)
    out = tifffile.memmap(tmp_path / "out.tif", shape=(80, 90), dtype=np.float32)
    p.predict_plane(img, tile=64, overlap=16, out=out.reshape(1, 80, 90))
    out.flush()
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), expected[0])
    with pytest.raises(Exception, match="float32 of shape"):
        p.predict_plane(img, out=np.zeros((1, 80, 90), np.float64))
