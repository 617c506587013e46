"""DDP: two gloo processes on CPU (torchrun) follow one process with the same global batch."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from .conftest import smooth_image


def test_global_slice_partitions_the_batch():
    from napari_gan.core.device import DistributedInfo
    from napari_gan.core.distributed import global_slice

    parts = [list(range(8))[global_slice(8, DistributedInfo(r, r, 4))] for r in range(4)]
    assert parts == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_single_process_helpers_are_no_ops():
    from napari_gan.core import distributed

    assert not distributed.active()
    assert distributed.agree((0.25, 0.5), False, torch.device("cpu")) == ((0.25, 0.5), False)
    assert distributed.mean_values([torch.tensor(2.0), torch.tensor(3.0)], torch.device("cpu")) == [2.0, 3.0]
    m = torch.nn.Linear(2, 2)
    assert distributed.wrap(m, torch.device("cpu")) is m


def test_draw_then_cut_equals_sample(toy_pair):
    from napari_gan.core.data import PairedPatchSampler, PairedSet

    noisy, clean = toy_pair
    data = PairedSet.build([noisy[None]], [clean[None]])
    a = PairedPatchSampler(data, 32, np.random.default_rng(3)).sample(5)
    s = PairedPatchSampler(data, 32, np.random.default_rng(3))
    b = s.cut(s.draw(5))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("scale", [1, 2])
def test_device_cutter_matches_host_cutting(toy_pair, scale):
    from napari_gan.core.data import PairedPatchSampler, PairedSet, blur_downsample
    from napari_gan.core.training.patches import DevicePatchCutter

    noisy, clean = toy_pair
    inp = noisy[None] if scale == 1 else blur_downsample(clean, scale)[None]
    data = PairedSet.build([inp], [clean[None]], scale=scale)
    sampler = PairedPatchSampler(data, 16, np.random.default_rng(0))
    draws = sampler.draw(16)   # covers all 8 dihedral transforms with high probability
    x, y = sampler.cut(draws)
    tx, ty = DevicePatchCutter(sampler, torch.device("cpu")).cut(draws)
    np.testing.assert_allclose(tx.numpy(), x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ty.numpy(), y, rtol=1e-6, atol=1e-6)


def test_torchrun_two_processes_match_one_process(tmp_path, toy_pair):
    import tifffile
    from safetensors.torch import load_file

    from napari_gan.cli import main

    noisy, clean = toy_pair
    tifffile.imwrite(tmp_path / "in.tif", noisy)
    tifffile.imwrite(tmp_path / "gt.tif", clean)
    args = ["train", "pix2pix", "--input", str(tmp_path / "in.tif"), "--target", str(tmp_path / "gt.tif"),
            "--steps", "4", "--batch", "4", "--patch", "32", "--depth", "2", "--width", "8",
            "--disc-width", "8", "--adv-warmup", "0", "--device", "cpu", "--val-every", "2",
            "--val-fraction", "0.2", "--quiet",
            "--no-amp"]   # float32: bf16 rounds a 2-way split batch differently from a whole one
    assert main(args + ["--out", str(tmp_path / "one")]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "napari_gan.cli", *args, "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("model saved to") == 1          # only rank 0 reports and writes
    for name in ("last.safetensors", "training_state.safetensors"):
        one, two = load_file(tmp_path / "one" / name), load_file(tmp_path / "two" / name)
        assert one.keys() == two.keys()
        for key in one:
            if one[key].is_floating_point():
                torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=key)


def _torchrun(args: list[str], timeout: int = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_stylegan2_hand_averaged_gradients_match_one_process(tmp_path):
    """R1 needs double backward, so StyleGAN2 averages gradients itself: two processes with
    half the batch each end with the gradients of one process with the whole batch."""
    from safetensors.torch import load_file

    from . import stylegan2_ddp_worker as worker

    out = tmp_path / "grads.safetensors"
    proc = _torchrun([worker.__file__, str(out)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    two, one = load_file(out), worker.step_gradients()
    assert two.keys() == one.keys() and len(one) > 20
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6, msg=key)


def test_stylegan2_trains_under_torchrun(tmp_path):
    import tifffile

    from napari_gan.core.generation import load_generator
    from napari_gan.core.samples import synthetic_nuclei

    tifffile.imwrite(tmp_path / "nuclei.tif", synthetic_nuclei(12, 16))
    args = ["-m", "napari_gan.cli", "train", "stylegan2", "--images", str(tmp_path / "nuclei.tif"),
            "--resolution", "16", "--batch", "4", "--steps", "4", "--channel-base", "64",
            "--channel-max", "8", "--z-dim", "8", "--val-every", "2", "--eval-images", "8",
            "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]
    proc = _torchrun(args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert proc.stdout.count("model saved to") == 1          # only rank 0 reports and writes
    assert proc.stdout.count("stylegan2: 16x16") == 1
    images = load_generator(tmp_path / "run", "cpu").generate(3, seed=1)
    assert images.shape == (3, 16, 16) and np.isfinite(images).all()
    resume = ["-m", "napari_gan.cli", "train", "stylegan2", "--images", str(tmp_path / "nuclei.tif"),
              "--out", str(tmp_path / "run"), "--resume", "--steps", "6", "--device", "cpu", "--quiet"]
    proc = _torchrun(resume)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "after 6 steps" in proc.stdout


def test_batch_must_split_evenly_over_processes(monkeypatch, tmp_path):
    from napari_gan.core.errors import NapariGanError
    from napari_gan.core.samples import synthetic_nuclei
    from napari_gan.core.training.base import Budget
    from napari_gan.core.families.stylegan2 import ImageSet, StyleGAN2Config, StyleGAN2Trainer

    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = StyleGAN2Config(resolution=16, batch=3, channel_base=64, channel_max=8, z_dim=8, w_dim=8)
    data = ImageSet.build([p[None] for p in synthetic_nuclei(8, 16)], 16)
    with pytest.raises(NapariGanError, match="divisible by the number of processes"):
        StyleGAN2Trainer(cfg, data, tmp_path, Budget(steps=1), torch.device("cpu"))
