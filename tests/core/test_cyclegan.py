"""CycleGAN: networks, learning, exact resume, both directions through the command line,
one-line errors for bad input (tiny networks, a few steps each)."""

import math

import numpy as np
import pytest
import tifffile
import torch

from napari_gan.cli import main
from napari_gan.core import checkpoint, families
from napari_gan.core.errors import NapariGanError
from napari_gan.core.families import Images
from napari_gan.core.families.cyclegan import (
    CycleGANConfig, CycleGANTrainer, Domain, ImagePool, build_discriminator, build_generator,
)
from napari_gan.core.models.resnet import ResNetGenerator
from napari_gan.core.training.base import Budget
from tests.core.conftest import smooth_image

CPU = torch.device("cpu")
# float32: faster than bf16 for networks this small
TINY = dict(width=4, blocks=1, disc_width=4, disc_layers=2, patch=24, batch=2, amp=False)
TINY_CLI = ["--width", "4", "--blocks", "1", "--disc-width", "4", "--disc-layers", "2", "--patch", "24",
            "--batch", "2", "--device", "cpu", "--quiet"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Networks this small gain nothing from a second thread, and on a busy machine two
    threads wait for each other (steps many times slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_domains(n_a=2, n_b=1):
    """A: smooth images; B: inverted smooth images of other fields and sizes (no pairs)."""
    a = [smooth_image((64, 56), seed=s)[None] for s in range(n_a)]
    b = [200.0 - smooth_image((48, 72), seed=10 + s)[None] for s in range(n_b)]
    return a, b


def make_trainer(out, steps, cfg=None, **kw):
    cfg = cfg or CycleGANConfig(**{**TINY, **kw})
    a, b = toy_domains()
    A, B = Domain.build(a, None, cfg.patch, "A"), Domain.build(b, None, cfg.patch, "B")
    return CycleGANTrainer(cfg, A, B, out, Budget(steps=steps), CPU, seed=0, log_every=1, val_every=4)


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code, err, pattern):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert pattern.lower() in err.lower(), err


# ----------------------------------------------------------------------------- networks
@pytest.mark.parametrize("generator", ["resnet", "unet"])
@pytest.mark.parametrize("channels", [1, 2])
def test_both_generators_keep_the_shape_of_any_input(generator, channels):
    cfg = CycleGANConfig(generator=generator, channels=channels, width=4, blocks=2, depth=2)
    torch.manual_seed(0)
    g_a2b, g_b2a = build_generator(cfg), build_generator(cfg)
    for h, w in ((24, 24), (37, 50), (5, 9)):
        x = torch.rand(2, channels, h, w)
        assert g_a2b(x).shape == x.shape and g_b2a(x).shape == x.shape
    d = build_discriminator(cfg)
    assert d(torch.rand(2, channels, 32, 32)).shape[:2] == (2, 1)


def test_residual_resnet_starts_near_the_identity_and_has_no_transposed_convolutions():
    g = ResNetGenerator(1, 1, width=8, blocks=2, residual=True)
    x = torch.rand(1, 1, 32, 32)
    assert (g(x) - x).abs().mean() < 0.1 * x.abs().mean()
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())


def test_unconditional_patchgan_keeps_the_conditional_one_unchanged():
    from napari_gan.core.models.patchgan import PatchGANDiscriminator

    torch.manual_seed(0)
    cond = PatchGANDiscriminator(1, 1, 8, 2)
    uncond = PatchGANDiscriminator(1, 1, 8, 2, conditional=False)
    assert cond.state_dict().keys() == uncond.state_dict().keys()
    assert cond.net[0].parametrizations.weight.original.shape[1] == 2
    assert uncond.net[0].parametrizations.weight.original.shape[1] == 1
    x = torch.rand(2, 1, 32, 32)
    assert uncond(x).shape == cond(x, x).shape == uncond(None, x).shape


def test_image_pool_fills_then_swaps_with_probability_one_half():
    pool, rng = ImagePool(3), np.random.default_rng(0)
    first = torch.arange(3.0).reshape(3, 1, 1, 1)
    out = pool.query(first, rng)
    assert torch.equal(out, first) and len(pool.images) == 3    # filling: stored and returned
    out = pool.query(torch.full((200, 1, 1, 1), 9.0), rng)
    old = int((out != 9).sum())
    assert 3 <= old and 50 < 200 - old     # some history came back, most are the new ones
    assert torch.equal(ImagePool(0).query(first, rng), first)


def test_device_cutting_matches_host_cutting():
    from napari_gan.core.families.cyclegan import DomainSampler

    a, _ = toy_domains()
    domain = Domain.build(a, None, 16, "A")
    sampler = DomainSampler(domain, 16, np.random.default_rng(0))
    draws = sampler.draw(16)        # all 8 flips/rotations with high probability, both planes
    host = sampler.cut(draws, CPU)
    sampler.on_device = [torch.from_numpy(domain.norm_for(i).normalize(p)) for i, p in enumerate(domain.planes)]
    torch.testing.assert_close(sampler.cut(draws, CPU), host, rtol=1e-6, atol=1e-6)


def test_learning_rate_is_constant_then_falls_linearly_to_zero(tmp_path):
    trainer = make_trainer(tmp_path, 4)
    lrs = []
    for progress in (0.0, 0.5, 0.75, 1.0):
        trainer._set_lr(progress)
        lrs.append((trainer.opt_g.param_groups[0]["lr"], trainer.opt_d.param_groups[0]["lr"]))
    assert lrs == [(2e-4, 2e-4), (2e-4, 2e-4), (1e-4, 1e-4), (0.0, 0.0)]


# ----------------------------------------------------------------------------- training
def test_a_few_steps_lower_the_cycle_loss(tmp_path):
    # generators that start far from the identity: the cycle loss starts high
    trainer = make_trainer(tmp_path, 40, residual=False, width=8, lr=2e-3, lr_decay=False, identity_weight=0)
    events = list(trainer.run())
    cycle = [e.losses["cycle"] for e in events if e.kind in ("progress", "validation")]
    assert np.mean(cycle[-5:]) < 0.7 * np.mean(cycle[:5]), cycle
    done = events[-1]
    assert done.kind == "done" and list(done.metrics) == ["neg_swd", "cycle_psnr"]
    assert all(math.isfinite(v) for v in done.metrics.values())
    assert done.preview is not None and done.preview.shape == trainer.eval_a.shape[-2:]
    for name in (checkpoint.MODEL_FILENAME, checkpoint.LAST_FILENAME, checkpoint.STATE_FILENAME):
        assert (tmp_path / name).is_file()
    header = checkpoint.read_header(tmp_path / checkpoint.LAST_FILENAME, expect_role="model")
    assert header.family == "cyclegan" and header.networks == ["generator_a2b", "generator_b2a"]
    assert set(header.normalization) == {"a", "b"} and header.normalization["a"]["per_image"] is True


@pytest.mark.parametrize("mode", ["vanilla", "hinge", "wgan-gp"])
def test_every_gan_loss_trains_with_finite_losses(tmp_path, mode):
    events = list(make_trainer(tmp_path, 2, gan_mode=mode).run())
    assert all(math.isfinite(v) for e in events for v in e.losses.values())
    assert {"cycle", "identity", "g_adv", "d"} <= set(events[-1].losses)


def test_resume_is_exact(tmp_path):
    """Stopped at step 4 and resumed to 8 == straight to 8, bit for bit (the learning-rate decay,
    the image pools and their random stream included)."""
    kw = dict(pool_size=3)      # the pool fills and starts swapping within the run
    straight = make_trainer(tmp_path / "a", 8, **kw)
    list(straight.run())

    first = make_trainer(tmp_path / "b", 8, **kw)
    for event in first.run():
        if event.step == 4:
            first.request_stop()
    assert event.message == "stopped" and event.step == 4
    resumed = make_trainer(tmp_path / "b", 8, **kw)
    resumed.resume_from(tmp_path / "b")
    assert resumed.step == 4 and len(resumed.pool_a.images) == 3
    list(resumed.run())
    for x, y in zip(straight.networks, resumed.networks):
        for a, b in zip(x.state_dict().values(), y.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    for x, y in ((straight.pool_a, resumed.pool_a), (straight.pool_b, resumed.pool_b)):
        torch.testing.assert_close(x.state(), y.state(), rtol=0, atol=0)
    assert straight.pool_rng.bit_generator.state == resumed.pool_rng.bit_generator.state


def test_paired_validation_scores_a2b_against_val_b(tmp_path):
    family = families.get("cyclegan")
    a, b = toy_domains()
    va = smooth_image((40, 40), seed=5)
    images = {"a": Images(a, ["a0", "a1"]), "b": Images(b, ["b0"]),
              "val_a": Images([va[None]], ["va"]), "val_b": Images([(200 - va)[None]], ["va"])}
    cfg = family.make_config(TINY, CPU)
    trainer = family.make_trainer(cfg, images, tmp_path, Budget(steps=2), CPU, 0, None, val_every=2)
    done = list(trainer.run())[-1]
    assert list(done.metrics)[:2] == ["val_psnr", "val_ssim"] and trainer.best_score == done.metrics["val_psnr"]
    assert done.preview.shape == (40, 40)


# ------------------------------------------------------------------------ command line
def test_train_help_lists_cyclegan(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "cyclegan" in capsys.readouterr().out
    assert families.get("cyclegan").apply_settings().direction == "a2b"


def test_both_directions_predict_through_the_cli(tmp_path, capsys):
    (tmp_path / "A").mkdir()
    tifffile.imwrite(tmp_path / "A" / "f0.tif", smooth_image((48, 40), seed=1).astype(np.uint8))
    tifffile.imwrite(tmp_path / "A" / "f1.tif", (smooth_image((64, 64), seed=2) * 100).astype(np.uint16))
    b = np.stack([200 - smooth_image((32, 36), seed=s) for s in (3, 4, 5)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "b_stack.tif", b)          # a stack: 3 images of B
    tifffile.imwrite(tmp_path / "va.tif", smooth_image((32, 32), seed=6).astype(np.uint8))
    tifffile.imwrite(tmp_path / "vb.tif", (200 - smooth_image((32, 32), seed=6)).astype(np.uint8))
    run = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", "cyclegan", "--a", tmp_path / "A", "--b", tmp_path / "b_stack.tif",
                             "--val-a", tmp_path / "va.tif", "--val-b", tmp_path / "vb.tif", "--out", run,
                             "--steps", "2", "--val-every", "2", *TINY_CLI)
    assert code == 0, err
    assert "val_psnr" in out and "model saved to" in out
    code, out, err = run_cli(capsys, "train", "cyclegan", "--a", tmp_path / "A", "--b", tmp_path / "b_stack.tif",
                             "--out", run, "--resume", "--steps", "3", "--device", "cpu", "--quiet")
    assert code == 0 and "after 3 steps" in out, err

    image = tmp_path / "A" / "f1.tif"
    results = {}
    for direction in ("a2b", "b2a"):
        target = tmp_path / f"{direction}.tif"
        code, out, err = run_cli(capsys, "predict", "--model", run, "--input", image, "--output", target,
                                 "--direction", direction, "--tile", "32", "--overlap", "8", "--device", "cpu")
        assert code == 0, err
        results[direction] = tifffile.imread(target)
        assert results[direction].shape == (64, 64) and results[direction].dtype == np.float32
        assert np.isfinite(results[direction]).all()
        # the same as the family's predictor for that direction
        header = checkpoint.read_header(checkpoint.resolve_model_path(run), expect_role="model")
        predictor = families.get("cyclegan").load_applier(header, "cpu", direction=direction)
        expected = predictor.predict(tifffile.imread(image), tile=32, overlap=8)
        np.testing.assert_allclose(results[direction], expected, rtol=1e-5, atol=1e-4)
    assert not np.allclose(results["a2b"], results["b2a"])
    # the default direction is a2b; a stack predicts plane by plane
    code, _, err = run_cli(capsys, "predict", "--model", run, "--input", image, "--output", tmp_path / "d.tif",
                           "--tile", "32", "--overlap", "8", "--device", "cpu")
    assert code == 0, err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "d.tif"), results["a2b"])
    code, _, err = run_cli(capsys, "predict", "--model", run, "--input", tmp_path / "b_stack.tif",
                           "--output", tmp_path / "s.tif", "--direction", "b2a", "--device", "cpu")
    assert code == 0 and tifffile.imread(tmp_path / "s.tif").shape == (3, 32, 36), err
    code, _, err = run_cli(capsys, "predict", "--model", run, "--input", image, "--output", tmp_path / "x.tif",
                           "--direction", "sideways")
    assert_one_error_line(code, err, "a2b, b2a")


def test_channels_translate_both_ways(tmp_path, capsys):
    a = np.stack([smooth_image((40, 40), seed=s) for s in (1, 2)]).astype(np.float32)    # CYX
    b = np.stack([200 - smooth_image((36, 44), seed=s) for s in (3, 4)]).astype(np.float32)
    tifffile.imwrite(tmp_path / "a.tif", a, imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "b.tif", b, imagej=True, metadata={"axes": "CYX"})
    code, _, err = run_cli(capsys, "train", "cyclegan", "--a", tmp_path / "a.tif", "--b", tmp_path / "b.tif",
                           "--channels", "2", "--out", tmp_path / "run", "--steps", "1", *TINY_CLI)
    assert code == 0, err
    for direction in ("a2b", "b2a"):
        code, _, err = run_cli(capsys, "predict", "--model", tmp_path / "run", "--input", tmp_path / "a.tif",
                               "--output", tmp_path / f"{direction}.tif", "--direction", direction, "--device", "cpu")
        assert code == 0, err
        assert tifffile.imread(tmp_path / f"{direction}.tif").shape == (2, 40, 40)


def test_bad_input_gives_one_error_line(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "a.tif", smooth_image((40, 40)))
    tifffile.imwrite(tmp_path / "b.tif", 200 - smooth_image((40, 40), seed=3))
    (tmp_path / "empty").mkdir()
    args = ["--out", tmp_path / "r", "--steps", "1", *TINY_CLI]
    code, _, err = run_cli(capsys, "train", "cyclegan", "--a", tmp_path / "empty", "--b", tmp_path / "b.tif", *args)
    assert_one_error_line(code, err, "No TIFF files")
    tifffile.imwrite(tmp_path / "small.tif", smooth_image((20, 60)))
    code, _, err = run_cli(capsys, "train", "cyclegan", "--a", tmp_path / "a.tif", "--b", tmp_path / "small.tif",
                           *args)
    assert_one_error_line(code, err, "smaller than the 24x24 training patches")
    two = np.stack([smooth_image((40, 40), seed=s) for s in (1, 2)])
    tifffile.imwrite(tmp_path / "two.tif", two, imagej=True, metadata={"axes": "CYX"})
    code, _, err = run_cli(capsys, "train", "cyclegan", "--a", tmp_path / "two.tif", "--b", tmp_path / "b.tif",
                           "--channels", "2", *args)
    assert_one_error_line(code, err, "channel")
    code, _, err = run_cli(capsys, "train", "cyclegan", "--a", tmp_path / "a.tif", "--b", tmp_path / "b.tif",
                           "--val-b", tmp_path / "b.tif", *args)
    assert_one_error_line(code, err, "--val-a")
    assert not (tmp_path / "r" / checkpoint.MODEL_FILENAME).exists()
    # a direction means nothing to a Pix2Pix model
    code, _, err = run_cli(capsys, "train", "pix2pix", "--input", tmp_path / "a.tif", "--target", tmp_path / "b.tif",
                           "--out", tmp_path / "p", "--steps", "1", "--depth", "2", "--width", "4",
                           "--disc-width", "4", "--patch", "24", "--batch", "2", "--device", "cpu", "--quiet")
    assert code == 0, err
    code, _, err = run_cli(capsys, "predict", "--model", tmp_path / "p", "--input", tmp_path / "a.tif",
                           "--output", tmp_path / "o.tif", "--direction", "b2a")
    assert_one_error_line(code, err, "--direction applies to CycleGAN models")


def test_bad_domains_through_the_core(tmp_path):
    family = families.get("cyclegan")
    cfg = family.make_config(TINY, CPU)
    a, b = toy_domains()

    def make(images):
        return family.make_trainer(cfg, images, tmp_path, Budget(steps=1), CPU, 0, None)

    with pytest.raises(NapariGanError, match="Domain B has no images"):
        make({"a": Images(a, ["a0", "a1"]), "b": Images([], [])})
    with pytest.raises(NapariGanError, match="domain A images have 2 channel.* domain B images have 1"):
        make({"a": Images([np.concatenate([a[0], a[0]])], ["a"]), "b": Images(b, ["b"])})
    with pytest.raises(NapariGanError, match="'tiny' \\(domain A\\) is only 16x16 pixels"):
        make({"a": Images([a[0][:, :16, :16]], ["'tiny'"]), "b": Images(b, ["b"])})


def test_torchrun_two_processes_match_one_process(tmp_path):
    """DDP: two gloo processes with half the batch each (and one image pool holding the global
    batch) end where one process with the whole batch does."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    a, b = toy_domains()
    tifffile.imwrite(tmp_path / "a.tif", np.stack([x[0] for x in a]))
    tifffile.imwrite(tmp_path / "b.tif", b[0][0])
    args = ["train", "cyclegan", "--a", str(tmp_path / "a.tif"), "--b", str(tmp_path / "b.tif"), "--steps", "4",
            *TINY_CLI, "--batch", "4", "--pool-size", "6", "--val-every", "2",
            "--no-amp"]   # float32: bf16 rounds a split batch differently from a whole one
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "napari_gan.cli", *args, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("model saved to") == 1          # only rank 0 reports and writes
    for name in ("last.safetensors", "training_state.safetensors"):
        one, two = load_file(tmp_path / "one" / name), load_file(tmp_path / "two" / name)
        assert one.keys() == two.keys()
        for key in one:
            if one[key].is_floating_point():
                torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)
