import numpy as np
import pytest
import torch

from napari_gan.core import inference
from napari_gan.core.data import Normalizer
from napari_gan.core.errors import NapariGanError
from napari_gan.core.inference import Predictor, load_predictor
from napari_gan.core.models.unet import UNetGenerator
from tests.core.conftest import smooth_image


def make_predictor(scale=1, depth=2, channels=1):
    torch.manual_seed(0)
    g = UNetGenerator(channels, channels, depth=depth, width=4, scale=scale)
    norm = Normalizer([0.0] * channels, [200.0] * channels)
    cfg = {"scale": scale, "depth": depth, "in_channels": channels, "out_channels": channels}
    return Predictor(g, cfg, norm, norm, torch.device("cpu"))


@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_equals_untiled_and_has_no_seams(scale):
    p = make_predictor(scale)
    image = smooth_image((150, 170), seed=3)
    whole = p.predict(image, tile=1024)
    tiled = p.predict(image, tile=64, overlap=24)
    assert whole.shape == (150 * scale, 170 * scale)
    assert np.abs(whole - tiled).max() < 0.02 * whole.std()
    # no seams: the tiled result's pixel-to-pixel steps are as smooth as the untiled one's
    step = lambda a: np.abs(np.diff(a, axis=1)).max()
    assert step(tiled) < 1.05 * step(whole)


def test_stacks_are_predicted_plane_by_plane_and_keep_their_layout():
    p = make_predictor()
    stack = np.stack([smooth_image((40, 48), seed=s) for s in range(3)]).astype(np.uint16)
    out = p.predict(stack[None], progress=lambda i, n: None)
    assert out.shape == (1, 3, 40, 48) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 1], p.predict(stack[1]), atol=1e-5)


def test_multichannel_model_with_channel_axis():
    p = make_predictor(channels=2)
    image = np.stack([smooth_image((32, 40), seed=s) for s in range(2)], axis=-3)  # (C, Y, X)
    assert p.predict(image).shape == (2, 32, 40)
    zc = np.stack([image] * 4)  # (Z, C, Y, X)
    assert p.predict(zc, channel_axis=1).shape == (4, 2, 32, 40)


def test_prediction_is_in_target_units():
    g = torch.nn.Identity()
    p = Predictor(g, {"scale": 1}, Normalizer([0.0], [10.0]), Normalizer([100.0], [300.0]), torch.device("cpu"))
    out = p.predict(np.full((16, 16), 5.0, np.float32), tile=8, overlap=2)
    np.testing.assert_allclose(out, 200.0, rtol=1e-5)  # 0.5 of the target's [100, 300]


def test_out_of_memory_retries_with_smaller_tiles(monkeypatch):
    p = make_predictor()
    real = p._run_tiles
    sizes = []

    def oom_on_large(tiles):
        sizes.append(tiles.shape[-1])
        if tiles.shape[-1] > 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(tiles)

    monkeypatch.setattr(p, "_run_tiles", oom_on_large)
    out = p.predict(smooth_image((200, 200)), tile=256)
    assert out.shape == (200, 200) and max(sizes) > 64 and sizes[-1] <= 64


def test_out_of_memory_at_the_smallest_tile_is_a_clear_error(monkeypatch):
    p = make_predictor()

    def always_oom(tiles):
        raise torch.OutOfMemoryError("out of memory")

    monkeypatch.setattr(p, "_run_tiles", always_oom)
    with pytest.raises(NapariGanError, match="Out of memory"):
        p.predict(smooth_image((100, 100)))


def test_cancel_stops_prediction():
    p = make_predictor()
    with pytest.raises(InterruptedError):
        p.predict(smooth_image((100, 100)), tile=32, cancel=lambda: True)


def test_bad_images_are_refused():
    p = make_predictor()
    nan = smooth_image((40, 40))
    nan[5, 5] = np.nan
    with pytest.raises(NapariGanError, match="NaN"):
        p.predict(nan)
    with pytest.raises(NapariGanError, match="RGB"):
        p.predict(np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(NapariGanError, match="too small"):
        p.predict(np.zeros((2, 40)))


def test_loader_refuses_other_model_kinds(tmp_path):
    from napari_gan.core import checkpoint

    checkpoint.save_model(tmp_path / "sg.safetensors", "stylegan2", {}, {}, {})
    with pytest.raises(NapariGanError, match="is a StyleGAN2 model, which generates images from noise"):
        load_predictor(tmp_path / "sg.safetensors", "cpu")


def test_tile_starts_cover_the_image():
    for size, tile, overlap in [(100, 32, 8), (32, 32, 8), (10, 32, 8), (257, 64, 16)]:
        starts = inference.tile_starts(size, tile, overlap)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered.all() and starts[-1] + min(tile, size) == size


def test_progress_counts_tiles_over_all_planes():
    p = make_predictor()
    calls = []
    p.predict(np.stack([smooth_image((100, 100))] * 2), tile=48, overlap=8,
              progress=lambda done, total: calls.append((done, total)))
    totals = {t for _, t in calls}
    assert len(totals) == 1 and calls[-1][0] == calls[-1][1]
    assert len(calls) > 2  # more than one report per plane
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_receptive_field_is_what_a_gradient_sees():
    from napari_gan.core.models.unet import UNetGenerator

    for depth in (1, 2, 3):
        g = UNetGenerator(1, 1, depth, 4)
        for p in g.parameters():
            torch.nn.init.uniform_(p, 0.01, 0.02)
        x = torch.zeros(1, 1, 256, 256, requires_grad=True)
        g(x)[0, 0, 128, 128].backward()
        rows = (x.grad[0, 0].abs() > 0).any(dim=1).nonzero()
        assert int(rows.max() - rows.min() + 1) == g.receptive_field()


def test_resnet_receptive_field_is_what_a_gradient_sees():
    from napari_gan.core.inference import overlap_for
    from napari_gan.core.models.resnet import ResNetGenerator

    for blocks in (0, 2, 6):
        g = ResNetGenerator(1, 1, 4, blocks)
        for p in g.parameters():
            torch.nn.init.uniform_(p, 0.01, 0.02)
        for pos in (128, 129):      # both alignments to the 1/4-resolution grid
            x = torch.zeros(1, 1, 256, 256, requires_grad=True)
            g(x)[0, 0, pos, pos].backward()
            rows = (x.grad[0, 0].abs() > 0).any(dim=1).nonzero()
            assert int(rows.max() - rows.min() + 1) == g.receptive_field()
    assert overlap_for(ResNetGenerator(1, 1, 32, 6)) == 64     # CycleGAN's default: field 121


def test_automatic_tiles_predict_a_plane_that_fits_whole(monkeypatch):
    """A plane that fits in memory is one tile without margins: exactly the untiled network;
    one that does not is tiled with an overlap of half the receptive field, without seams."""
    from napari_gan.core import inference
    from napari_gan.core.models.unet import UNetGenerator
    from napari_gan.core.normalization import Normalizer

    torch.manual_seed(0)
    g = UNetGenerator(1, 1, 2, 4)
    norm = Normalizer([0.0], [1.0])
    p = inference.Predictor(g, {"depth": 2, "width": 4}, norm, norm, torch.device("cpu"), amp=False)
    assert p.overlap == 32                       # receptive field 53 -> half, in multiples of 8
    image = np.random.default_rng(0).random((1, 100, 120)).astype(np.float32)
    with torch.inference_mode():
        whole = g(torch.from_numpy(image)[None])[0].numpy()
    assert p.auto_tile(100, 120) == (120, True)
    np.testing.assert_allclose(p.predict_plane(image), whole, atol=1e-5)
    monkeypatch.setattr(inference, "memory_budget", lambda device: 64 * 64 * p.bytes_per_pixel)
    tile, is_whole = p.auto_tile(100, 120)
    assert not is_whole and tile == 128          # at least four overlaps wide
    tiled = p.predict_plane(image)
    # tiles see mirrored context at the image border where the untiled network sees zero
    # padding, so compare away from the border: no seams inside
    inner = (slice(None), slice(16, -16), slice(16, -16))
    assert np.abs(tiled - whole)[inner].max() < 0.01 * whole.std()
