"""StyleGAN2: networks, configuration, augmentation, training, resume, generation, CLI.

Everything runs at 16x16 with a few feature maps so that the file takes seconds on CPU.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
import torch

from napari_gan.cli import main
from napari_gan.core import checkpoint, settings
from napari_gan.core.errors import NapariGanError
from napari_gan.core.generation import load_generator
from napari_gan.core.losses import r1_penalty
from napari_gan.core.models.stylegan2 import Discriminator, Generator, downsample2
from napari_gan.core.training.base import Budget
from napari_gan.core.families.stylegan2 import (AdaptiveAugment, ImageSet, StyleGAN2Config,
                                                StyleGAN2Trainer, augment, auto_hyperparameters,
                                                ema_beta, ema_update, image_set_from_files)

TINY = dict(resolution=16, channel_base=128, channel_max=16, z_dim=16, w_dim=16, batch=4, eval_images=8,
            pl_weight=2.0, style_mixing=0.9)  # the regularisers "small" leaves out, still tested
TINY_ARGS = ["--resolution", "16", "--channel-base", "128", "--channel-max", "16", "--z-dim", "16",
             "--batch", "4", "--eval-images", "8", "--quiet"]
CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread: faster than two on a busy 2-core machine, and reproducible."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def blobs(n: int, size: int = 40, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Bright Gaussian blobs on a dark noisy background, uint16, (n, [C,] size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, channels, size, size), np.float64)
    for i in range(n):
        for c in range(channels):
            for _ in range(4):
                cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(2, 5)]
                out[i, c] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    out = 100 + 800 * out + rng.normal(0, 10, out.shape)
    out = np.clip(out, 0, 65535).astype(np.uint16)
    return out[:, 0] if channels == 1 else out


def tiny_data(n: int = 3, channels: int = 1) -> ImageSet:
    images = blobs(n, channels=channels)
    planes = [img[None] if channels == 1 else img for img in images]
    return ImageSet.build(planes, 16)


def tiny_trainer(tmp_path, steps: int = 2, val_every: int = 1000, seed: int = 0, data=None, **cfg):
    config = StyleGAN2Config(**{**TINY, **cfg})
    return StyleGAN2Trainer(config, data or tiny_data(), tmp_path, Budget(steps=steps), CPU, seed,
                            log_every=1, val_every=val_every)


def run_to_end(trainer) -> list:
    return list(trainer.run())


@pytest.fixture(scope="module")
def stack_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "stack.tif"
    tifffile.imwrite(path, blobs(3))
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, stack_file):
    out = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "stylegan2", "--images", str(stack_file), "--out", str(out), "--steps", "2",
                 *TINY_ARGS]) == 0
    return out


# ------------------------------------------------------------------------ networks
@pytest.mark.parametrize("resolution,channels", [(16, 1), (32, 2), (64, 1), (128, 1), (256, 1)])
def test_network_shapes_and_determinism(resolution, channels):
    torch.manual_seed(0)
    G = Generator(8, 8, resolution, channels, mapping_layers=1, channel_base=4 * resolution, channel_max=4)
    D = Discriminator(resolution, channels, channel_base=4 * resolution, channel_max=4)
    z = torch.randn(2, 8)
    with torch.no_grad():
        img = G(z, noise_mode="const")
        assert img.shape == (2, channels, resolution, resolution)
        assert G.num_ws == 2 * int(math.log2(resolution)) - 2
        assert torch.equal(img, G(z, noise_mode="const"))
        torch.manual_seed(5)
        a = G(z)
        torch.manual_seed(5)
        assert torch.equal(a, G(z))
        assert D(img).shape == (2, 1)
        assert torch.isfinite(D(img)).all()


def reference_blur_down(x: np.ndarray) -> np.ndarray:
    """[1, 3, 3, 1] / 8 along both axes, zero padding 1, every second pixel: written out."""
    f = np.array([1.0, 3.0, 3.0, 1.0]) / 8
    pad = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    out = np.zeros(x.shape[:-2] + (h, w))
    for i in range(4):
        for j in range(4):
            out += f[i] * f[j] * pad[..., i:i + 2 * h:2, j:j + 2 * w:2]
    return out


def test_downsample_blurs_in_every_layout_and_precision():
    x = torch.randn(2, 3, 8, 8)
    expected = torch.from_numpy(reference_blur_down(x.numpy())).float()
    assert torch.allclose(downsample2(x), expected, atol=1e-6)
    nhwc = downsample2(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(nhwc, expected, atol=1e-6)
    assert nhwc.is_contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # blurred in float32, handed on in bf16
        half = downsample2(x.bfloat16().contiguous(memory_format=torch.channels_last))
    assert half.dtype == torch.bfloat16 and torch.allclose(half.float(), expected, atol=0.05)
    double = torch.randn(1, 2, 6, 6, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradgradcheck(downsample2, (double,))  # R1 differentiates twice


def test_discriminator_stays_channels_last_after_a_one_channel_input():
    """A (N, 1, H, W) image looks NCHW and NHWC at once; the blocks must still get NHWC."""
    D = Discriminator(16, 1, channel_base=128, channel_max=8).to(memory_format=torch.channels_last)
    seen = []
    D.blocks[0].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    D(torch.randn(2, 1, 16, 16).contiguous(memory_format=torch.channels_last))
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()


def test_auto_hyperparameters_and_overrides():
    cfg = StyleGAN2Config(resolution=128, size="full")
    assert (cfg.batch, cfg.mbstd_group, cfg.lr) == (32, 4, 0.0025)
    assert cfg.gamma == pytest.approx(0.0002 * 128 ** 2 / 32)
    assert cfg.ema_kimg == pytest.approx(10.0)
    assert (cfg.pl_weight, cfg.style_mixing) == (2.0, 0.9)
    small = StyleGAN2Config(resolution=64)  # the CPU configuration: batch 4, no path length or mixing
    assert (small.batch, small.mbstd_group, small.pl_weight, small.style_mixing) == (4, 4, 0.0, 0.0)
    assert small.gamma == pytest.approx(0.0002 * 64 ** 2 / 4)
    assert StyleGAN2Config(resolution=64, pl_weight=1.0, style_mixing=0.5).pl_weight == 1.0
    cfg = StyleGAN2Config(resolution=64, batch=8, gamma=1.0, size="full")
    assert cfg.gamma == 1.0 and cfg.ema_kimg == pytest.approx(2.5) and cfg.channel_max == 512
    assert auto_hyperparameters(512, size="full")["channel_base"] == 32768
    assert settings.from_dict(StyleGAN2Config, cfg.__dict__) == cfg


@pytest.mark.parametrize("resolution", [48, 4, 2048, 100])
def test_resolution_must_be_power_of_two(resolution):
    with pytest.raises(NapariGanError, match=r"\(--resolution\) must be one of 8, 16, 32"):
        StyleGAN2Config(resolution=resolution)


# ---------------------------------------------------------------- augmentation, EMA
def test_ada_probability_follows_discriminator_signal():
    ada = AdaptiveAugment(p=0.0, target=0.6, interval=2, speed_kimg=0.08)
    for _ in range(4):  # D is sure that every real image is real: overfitting
        ada.observe(torch.ones(4, 1))
        ada.step(4)
    assert ada.p == pytest.approx(0.2)
    for _ in range(20):  # D unsure: augmentation is turned down, never below 0
        ada.observe(torch.tensor([[1.0], [-1.0], [-1.0], [1.0]]))
        ada.step(4)
    assert ada.p == 0.0
    fixed = AdaptiveAugment(p=0.3, adaptive=False)
    fixed.observe(torch.ones(4, 1))
    fixed.step(4)
    assert fixed.p == 0.3


def test_augment_identity_at_zero_and_double_backward():
    x = torch.randn(4, 2, 16, 16)
    assert augment(x, 0.0) is x
    torch.manual_seed(0)
    y = augment(x, 1.0)
    assert y.shape == x.shape and not torch.equal(x, y)
    D = Discriminator(16, 2, channel_base=64, channel_max=4)
    real = x.clone().requires_grad_(True)
    penalty = r1_penalty(D(augment(real, 1.0)), real)
    penalty.backward()
    grads = [p.grad for p in D.parameters() if p.grad is not None]  # the output bias has none
    assert torch.isfinite(penalty) and grads and all(torch.isfinite(g).all() for g in grads)


def test_ema_update_and_decay():
    model, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(1.0)
        ema.weight.fill_(0.0)
    ema_update(ema, model, beta=0.25)
    assert torch.allclose(ema.weight, torch.full((2, 2), 0.75))
    assert ema_beta(1000, 10 ** 9, ema_kimg=1.0, rampup=None) == pytest.approx(0.5)
    assert ema_beta(4, 40, 10.0, 0.05) < ema_beta(4, 10 ** 6, 10.0, 0.05)  # ramp-up: fast at first


def test_truncation_pulls_towards_average_style():
    torch.manual_seed(0)
    G = Generator(16, 16, 16, 1, channel_base=128, channel_max=8)
    G.mapping.w_avg.normal_()
    z = torch.randn(6, 16)
    with torch.no_grad():
        at_mean = G(z, truncation=0.0, noise_mode="const")
        assert torch.allclose(at_mean, at_mean[:1].expand_as(at_mean), atol=1e-5)
        spread = lambda psi: G(z, truncation=psi, noise_mode="const").std(dim=0).mean()  # noqa: E731
        assert spread(0.5) < spread(1.0)


# ---------------------------------------------------------------------- training
def test_training_steps_have_finite_regularisers(tmp_path):
    trainer = tiny_trainer(tmp_path, steps=3, r1_interval=1, pl_interval=1, aug_p=0.5)
    initial = [p.clone() for p in trainer.G_ema.parameters()]
    events = run_to_end(trainer)
    progress = [e for e in events if e.kind == "progress"]
    assert len(progress) == 3 and events[-1].kind == "done"
    for e in progress:
        assert all(math.isfinite(v) for v in e.losses.values())
        assert e.losses["r1"] > 0 and e.losses["pl"] > 0
        assert {"g", "d", "aug_p", "kimg"} <= set(e.losses)
    assert progress[-1].losses["kimg"] == pytest.approx(0.012)
    assert math.isfinite(events[-1].metrics["swd"]) and events[-1].preview.shape == (32, 64)  # 8 images, 4 per row
    assert any(not torch.equal(a, b) for a, b in zip(initial, trainer.G_ema.parameters()))


def test_one_synthesis_pass_serves_both_updates(tmp_path):
    """Each step generates its fakes once: D learns on them detached, G backpropagates
    through them into the updated D (and both networks change)."""
    trainer = tiny_trainer(tmp_path, pl_weight=0.0)
    calls = []
    trainer.G.synthesis.register_forward_hook(lambda *_: calls.append(1))
    g0, d0 = ([p.clone() for p in net.parameters()] for net in (trainer.G, trainer.D))
    losses = trainer.train_step(0.0)
    assert len(calls) == 1 and math.isfinite(losses["g"]) and math.isfinite(losses["d"])
    for before, net in ((g0, trainer.G), (d0, trainer.D)):
        assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert trainer.G.synthesis.blocks[-1].conv1.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_kimg_budget_counts_images(tmp_path):
    config = StyleGAN2Config(**TINY)
    trainer = StyleGAN2Trainer(config, tiny_data(), tmp_path, Budget(kimg=0.008), CPU)
    run_to_end(trainer)
    assert trainer.step == 2


def test_resume_is_exact(tmp_path):
    straight = tiny_trainer(tmp_path / "a", steps=4, r1_interval=2, pl_interval=2)
    run_to_end(straight)
    first = tiny_trainer(tmp_path / "b", steps=2, r1_interval=2, pl_interval=2)
    run_to_end(first)
    resumed = tiny_trainer(tmp_path / "b", steps=4, r1_interval=2, pl_interval=2)
    resumed.resume_from(tmp_path / "b")
    assert resumed.step == 2
    run_to_end(resumed)
    for a, b in zip(straight.G_ema.state_dict().values(), resumed.G_ema.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert resumed.ada.state() == straight.ada.state()
    model = checkpoint.read_header(tmp_path / "b" / checkpoint.MODEL_FILENAME, expect_role="model")
    assert model.family == "stylegan2"
    assert model.architecture["resolution"] == 16 and "images" in model.normalization


def test_non_finite_weights_roll_back(tmp_path):
    trainer = tiny_trainer(tmp_path, steps=5, val_every=2)
    kinds = []
    for event in trainer.run():
        kinds.append(event.kind)
        if event.kind == "validation" and event.step == 2:
            with torch.no_grad():
                trainer.D.from_image.weight.fill_(float("inf"))
    assert "warning" in kinds and kinds[-1] == "done" and trainer.step == 5
    for net in (trainer.G, trainer.D, trainer.G_ema):
        assert all(torch.isfinite(p).all() for p in net.parameters())
    gen = load_generator(tmp_path, "cpu")
    assert np.isfinite(gen.generate(2, seed=0)).all()


def test_multichannel_training_and_generation(tmp_path):
    path = tmp_path / "two_channels.tif"
    tifffile.imwrite(path, blobs(3, channels=2))
    data = image_set_from_files(path, 16, channels=2)
    assert data.channels == 2
    trainer = tiny_trainer(tmp_path / "run", steps=1, data=data, channels=2)
    run_to_end(trainer)
    images = load_generator(tmp_path / "run", "cpu").generate(3, seed=0)
    assert images.shape == (3, 2, 16, 16) and images.dtype == np.float32


def test_image_set_round_trip_units():
    data = tiny_data()
    crop = np.asarray(data.planes[0][:, :16, :16], np.float32)
    back = data.from_model(data.to_model(crop)[None])[0]
    assert np.allclose(back, crop, rtol=1e-4, atol=1e-2)


# -------------------------------------------------------------------- generation
def test_generation_api(trained_run):
    gen = load_generator(trained_run, "cpu")
    a = gen.generate(3, seed=1)
    assert a.shape == (3, 16, 16) and a.dtype == np.float32
    assert np.array_equal(a, gen.generate(3, seed=1))
    assert not np.allclose(a, gen.generate(3, seed=2))
    assert np.array_equal(a, gen.generate_from_latents(gen.latents(3, seed=1)))
    movie = gen.interpolate(1, 2, frames=5, truncation=0.8)
    assert movie.shape == (5, 16, 16)
    assert np.allclose(movie[0], gen.generate(1, seed=1, truncation=0.8)[0], atol=1e-3)
    assert np.allclose(movie[-1], gen.generate(1, seed=2, truncation=0.8)[0], atol=1e-3)
    with pytest.raises(NapariGanError, match="shape"):
        gen.generate_from_latents(np.zeros((2, 3)))
    with pytest.raises(NapariGanError, match="Truncation"):
        gen.generate(1, truncation=-1)


def test_cli_generate_end_to_end(trained_run, tmp_path):
    out = lambda name: str(tmp_path / name)  # noqa: E731
    base = ["generate", "--model", str(trained_run), "--device", "cpu"]
    assert main([*base, "--n", "4", "--seed", "3", "--output", out("a.tif"), "--save-latents", out("z.npy")]) == 0
    assert main([*base, "--n", "4", "--seed", "3", "--output", out("b.tif")]) == 0
    assert main([*base, "--latents", out("z.npy"), "--output", out("c.tif")]) == 0
    assert main([*base, "--interpolate", "3", "7", "--frames", "6", "--output", out("i.tif")]) == 0
    assert main([*base, "--n", "3", "--truncation", "0", "--output", out("t.tif")]) == 0
    a, b, c = (tifffile.imread(out(n)) for n in ("a.tif", "b.tif", "c.tif"))
    assert a.shape == (4, 16, 16) and np.array_equal(a, b) and np.array_equal(a, c)
    assert np.load(out("z.npy")).shape == (4, 16)
    movie = tifffile.imread(out("i.tif"))
    assert movie.shape == (6, 16, 16) and np.allclose(movie[0], a[0], atol=1e-3)
    t = tifffile.imread(out("t.tif"))
    assert np.allclose(t, t[:1], atol=1e-3)


def test_cli_train_kimg_and_resume(stack_file, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "stylegan2", "--images", str(stack_file), "--out", str(out), "--kimg", "0.004",
                 *TINY_ARGS]) == 0
    state = checkpoint.read_header(out / checkpoint.STATE_FILENAME, expect_role="training_state")
    assert checkpoint.load_state(state)["step"] == 1
    assert main(["train", "stylegan2", "--images", str(stack_file), "--out", str(out), "--steps", "2",
                 "--resume", "--quiet"]) == 0
    state = checkpoint.read_header(out / checkpoint.STATE_FILENAME, expect_role="training_state")
    assert checkpoint.load_state(state)["step"] == 2


# -------------------------------------------------------------------- bad input
def _fails(capsys, argv, match):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and match in err and "Traceback" not in err, err


@pytest.mark.filterwarnings("ignore:.*zero-size array")
def test_bad_training_inputs(capsys, tmp_path):
    train = lambda images, *extra: ["train", "stylegan2", "--images", str(images), "--out",  # noqa: E731
                                    str(tmp_path / "run"), "--steps", "1", *TINY_ARGS, *extra]
    few = tmp_path / "few.tif"
    tifffile.imwrite(few, blobs(2, size=16))
    _fails(capsys, train(few), "Too few images")
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, blobs(20, size=12))
    _fails(capsys, train(small), "smaller than the training resolution")
    _fails(capsys, train(small, "--resolution", "48"), "(--resolution) must be one of")
    empty = tmp_path / "empty.tif"
    tifffile.imwrite(empty, np.zeros((0, 32, 32), np.uint8))
    _fails(capsys, train(empty), "empty")
    (tmp_path / "folder").mkdir()
    _fails(capsys, train(tmp_path / "folder"), "No TIFF files")
    _fails(capsys, train(tmp_path / "missing.tif"), "does not exist")
    with pytest.raises(NapariGanError, match="No training images"):
        ImageSet.build([], 16)


def test_bad_generate_inputs(capsys, tmp_path, trained_run):
    gen = lambda model, *extra: ["generate", "--model", str(model), "--output",  # noqa: E731
                                 str(tmp_path / "out.tif"), *extra]
    pix2pix = tmp_path / "pix2pix.safetensors"
    checkpoint.save_model(pix2pix, "pix2pix", {"task": "denoise"}, {"generator": {"w": torch.zeros(1)}}, {})
    _fails(capsys, gen(pix2pix), "is a Pix2Pix model, which needs an input image")
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"this is not a model file at all")
    _fails(capsys, gen(foreign), "not a readable napari-gan model")
    image = tmp_path / "image.tif"
    tifffile.imwrite(image, blobs(1))
    _fails(capsys, gen(image), "not a readable napari-gan model")
    _fails(capsys, gen(trained_run / checkpoint.STATE_FILENAME), "training_state file")
    bad_latents = tmp_path / "z.npy"
    np.save(bad_latents, np.zeros((2, 5), np.float32))
    _fails(capsys, gen(trained_run, "--latents", str(bad_latents)), "shape (N, 16)")
    _fails(capsys, ["generate", "--model", str(trained_run), "--output", str(tmp_path / "x.png")], "TIFF")
