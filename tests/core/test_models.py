import pytest
import torch

from napari_gan.core.models.patchgan import PatchGANDiscriminator
from napari_gan.core.models.unet import UNetGenerator


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("scale", [1, 2, 4])
def test_unet_output_shape_for_every_depth_and_scale(depth, scale):
    g = UNetGenerator(1, 1, depth=depth, width=4, scale=scale)
    x = torch.rand(2, 1, 37, 50)  # sizes not divisible by 2**depth
    assert g(x).shape == (2, 1, 37 * scale, 50 * scale)


def test_unet_multichannel_and_no_transposed_convolutions():
    g = UNetGenerator(3, 2, depth=2, width=4, scale=2)
    assert g(torch.rand(1, 3, 16, 16)).shape == (1, 2, 32, 32)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in g.modules())


def test_unet_eval_is_batch_independent():
    g = UNetGenerator(1, 1, depth=2, width=4).eval()
    x = torch.rand(3, 1, 24, 24)
    with torch.no_grad():
        assert torch.allclose(g(x)[1:2], g(x[1:2]), atol=1e-6)


@pytest.mark.parametrize("n_layers", [2, 3])
def test_patchgan_judges_patches_of_pairs(n_layers):
    d = PatchGANDiscriminator(1, 1, width=8, n_layers=n_layers)
    cond_small, image = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 64, 64)
    out = d(cond_small, image)  # the condition is resized to the image (super-resolution)
    assert out.shape[:2] == (2, 1) and out.shape[-1] > 1


def test_spectral_norm_is_optional():
    with_sn = PatchGANDiscriminator(1, 1, width=8, spectral_norm=True)
    without = PatchGANDiscriminator(1, 1, width=8, spectral_norm=False)
    assert any("parametrizations" in n for n, _ in with_sn.named_parameters())
    assert not any("parametrizations" in n for n, _ in without.named_parameters())
