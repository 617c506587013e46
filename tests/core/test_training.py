import math

import numpy as np
import pytest
import torch

from napari_gan.core import checkpoint
from napari_gan.core.data import PairedSet
from napari_gan.core.errors import NapariGanError
from napari_gan.core.training.base import Budget
from napari_gan.core.families.pix2pix import Pix2PixConfig, Pix2PixTrainer

CPU = torch.device("cpu")


def make_trainer(toy_pair, cfg, out, steps, **kw):
    noisy, clean = toy_pair
    data = PairedSet.build([noisy[None]], [clean[None]])
    return Pix2PixTrainer(cfg, data, out, Budget(steps=steps), CPU, seed=0, log_every=1, val_every=10, **kw)


def test_a_few_steps_lower_the_l1_loss(toy_pair, tiny_cfg, tmp_path):
    trainer = make_trainer(toy_pair, tiny_cfg(adv_warmup=0.5, lr=1e-3, lr_d=1e-3), tmp_path, 40)
    events = list(trainer.run())
    l1 = [e.losses["l1"] for e in events if e.kind == "progress"]
    assert np.mean(l1[-5:]) < 0.85 * np.mean(l1[:5])
    assert any("d" in e.losses for e in events)  # the adversarial phase ran
    done = events[-1]
    assert done.kind == "done" and done.message == "budget reached"
    assert {"val_psnr", "val_ssim"} <= set(done.metrics)
    assert done.preview is not None and done.preview.ndim == 2
    for key in ("best", "last", "state"):
        assert (tmp_path / checkpoint.__dict__[f"{'MODEL' if key == 'best' else key.upper()}_FILENAME"]).is_file()


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge", "wgan-gp"])
def test_every_gan_loss_trains_with_finite_losses(toy_pair, tiny_cfg, tmp_path, mode):
    trainer = make_trainer(toy_pair, tiny_cfg(gan_mode=mode, adv_warmup=0.0), tmp_path, 3)
    events = list(trainer.run())
    assert all(math.isfinite(v) for e in events for v in e.losses.values())
    assert "g_adv" in events[-1].losses


def test_adversarial_weight_zero_is_a_plain_unet(toy_pair, tiny_cfg, tmp_path):
    trainer = make_trainer(toy_pair, tiny_cfg(adv_weight=0.0), tmp_path, 3)
    before = [p.clone() for p in trainer.D.parameters()]
    events = list(trainer.run())
    assert "d" not in events[-1].losses
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.D.parameters()))


def test_stop_ends_training_and_saves(toy_pair, tiny_cfg, tmp_path):
    trainer = make_trainer(toy_pair, tiny_cfg(), tmp_path, 1000)
    for event in trainer.run():
        if event.step == 3:
            trainer.request_stop()
    assert event.kind == "done" and event.message == "stopped" and event.step == 3
    assert checkpoint.read_header(tmp_path / "last.safetensors", expect_role="model").step == 3


def test_resume_continues_identically(toy_pair, tiny_cfg, tmp_path):
    straight = make_trainer(toy_pair, tiny_cfg(adv_warmup=0.0, lr_decay=False), tmp_path / "a", 8)
    list(straight.run())

    first = make_trainer(toy_pair, tiny_cfg(adv_warmup=0.0, lr_decay=False), tmp_path / "b", 4)
    list(first.run())
    resumed = make_trainer(toy_pair, tiny_cfg(adv_warmup=0.0, lr_decay=False), tmp_path / "b", 8)
    resumed.resume_from(tmp_path / "b")
    assert resumed.step == 4
    list(resumed.run())
    for a, b in zip(straight.G.state_dict().values(), resumed.G.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(straight.D.state_dict().values(), resumed.D.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resume_refuses_other_kinds_and_missing_state(toy_pair, tiny_cfg, tmp_path):
    trainer = make_trainer(toy_pair, tiny_cfg(), tmp_path, 2)
    with pytest.raises(NapariGanError, match="Nothing to resume"):
        trainer.resume_from(tmp_path)
    checkpoint.save_state(tmp_path / checkpoint.STATE_FILENAME, "stylegan2", {}, {}, {})
    with pytest.raises(NapariGanError, match="stylegan2"):
        trainer.resume_from(tmp_path)


def test_non_finite_loss_rolls_back_instead_of_saving_garbage(toy_pair, tiny_cfg, tmp_path):
    trainer = make_trainer(toy_pair, tiny_cfg(), tmp_path, 6)
    real_step = trainer.train_step
    calls = {"n": 0}

    def flaky(fraction):
        calls["n"] += 1
        if calls["n"] == 3:
            with torch.no_grad():
                for p in trainer.G.parameters():
                    p.fill_(float("nan"))
            return {"l1": float("nan")}
        return real_step(fraction)

    trainer.train_step = flaky
    events = list(trainer.run())
    assert any(e.kind == "warning" and "rolled back" in e.message for e in events)
    assert events[-1].kind == "done" and events[-1].step == 6
    assert all(torch.isfinite(p).all() for p in trainer.G.parameters())


def test_permanent_divergence_is_reported(toy_pair, tiny_cfg, tmp_path):
    trainer = make_trainer(toy_pair, tiny_cfg(), tmp_path, 6)
    trainer.train_step = lambda fraction: {"l1": float("inf")}
    with pytest.raises(NapariGanError, match="diverged"):
        list(trainer.run())


def test_config_validation():
    with pytest.raises(NapariGanError, match="scale"):
        Pix2PixConfig(task="sr", scale=3)
    with pytest.raises(NapariGanError, match=r"\(--gan-loss\) must be one of"):
        Pix2PixConfig(gan_mode="nope")
    with pytest.raises(NapariGanError, match="budget"):
        Budget()


def test_super_resolution_trains(tiny_cfg, tmp_path):
    from napari_gan.core.data import blur_downsample
    from tests.core.conftest import smooth_image

    high = smooth_image((64, 64))
    low = blur_downsample(high, 2)
    data = PairedSet.build([low[None]], [high[None]], scale=2)
    trainer = Pix2PixTrainer(tiny_cfg(task="sr", scale=2, patch=16), data, tmp_path, Budget(steps=3), CPU)
    done = list(trainer.run())[-1]
    assert done.preview.shape[0] == 2 * trainer.val_crops[0][0].shape[-2]


def test_preview_origin_is_where_the_validation_crop_sits(toy_pair, tiny_cfg, tmp_path):
    trainer = make_trainer(toy_pair, tiny_cfg(val_fraction=0.25), tmp_path, 1)
    assert trainer.preview_origin == (48, 0) and trainer.val_prefix == "val"
    noisy, clean = toy_pair
    x, y = trainer.val_crops[0]
    np.testing.assert_allclose(trainer.data.target_norm.denormalize(y)[0], clean[48:48 + y.shape[-2], :y.shape[-1]],
                               rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("native_bf16", [False, True])
def test_automatic_widths_follow_the_arithmetic_the_cpu_does_fast_and_are_stored(toy_pair, tiny_cfg, tmp_path,
                                                                                  monkeypatch, native_bf16):
    from napari_gan.core.families import pix2pix

    monkeypatch.setattr(pix2pix, "uses_bf16", lambda device: native_bf16)
    expected = pix2pix.WIDTHS if native_bf16 else pix2pix.WIDTHS_FLOAT32_CPU
    cfg = tiny_cfg(width=None, disc_width=None)
    trainer = make_trainer(toy_pair, cfg, tmp_path / "auto", 1)
    list(trainer.run())
    header = checkpoint.read_header(tmp_path / "auto" / checkpoint.MODEL_FILENAME)
    assert (header.architecture["width"], trainer.cfg.disc_width) == expected
    assert trainer.G.head.in_channels == expected[0]
    # bf16 switched off (--no-amp) computes in float32: the float32 widths
    amp_off = make_trainer(toy_pair, tiny_cfg(width=None, disc_width=None, amp=False), tmp_path / "off", 1)
    assert (amp_off.cfg.width, amp_off.cfg.disc_width) == pix2pix.WIDTHS_FLOAT32_CPU
    # widths given are kept
    given = make_trainer(toy_pair, tiny_cfg(width=12, disc_width=4), tmp_path / "given", 1)
    assert (given.cfg.width, given.cfg.disc_width) == (12, 4)
