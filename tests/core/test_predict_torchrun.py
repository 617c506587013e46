"""``napari-gan predict`` under torchrun (2 gloo processes on the CPU) writes the same pixels
as one process: one image shared by planes and chunk rows (OME-Zarr output with its pyramid,
and a TIFF output), and a folder of TIFFs shared file by file."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_gan.core.axes import AxesImage, read_image, write_image

from .test_zarr import cli, make_model, stack

zarr = pytest.importorskip("zarr")


def torchrun(*args, timeout: int = 240, **env_vars) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", **env_vars)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "napari_gan.cli", "predict", *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.mark.parametrize("suffix", [".ome.zarr", ".tif"])
def test_one_image_shared_by_two_processes_equals_one_process(tmp_path, suffix):
    model = make_model(tmp_path / "m.safetensors", scale=2)
    image = AxesImage(stack((3, 40, 36)), "ZYX", {"Z": 2.0, "Y": 0.5, "X": 0.5}, "micron")
    write_image(tmp_path / "in.ome.zarr", image)
    opts = ["--model", model, "--input", tmp_path / "in.ome.zarr", "--tile", 32, "--chunk", 32, "--device", "cpu"]
    assert cli("predict", *opts, "--output", tmp_path / f"one{suffix}") == 0
    proc = torchrun(*opts, "--output", tmp_path / f"two{suffix}")
    assert "(2 processes)" in proc.stdout and proc.stdout.count("-> ") == 1     # rank 0 reports
    assert proc.stdout.count("predicting 1 file(s)") == 1
    one, two = read_image(tmp_path / f"one{suffix}"), read_image(tmp_path / f"two{suffix}")
    assert two.axes == one.axes == "ZYX" and two.shape == one.shape == (3, 80, 72)
    assert two.pixel_size == one.pixel_size == pytest.approx({"Z": 2.0, "Y": 0.25, "X": 0.25})
    np.testing.assert_allclose(np.asarray(two.data), np.asarray(one.data), rtol=1e-5, atol=1e-5)
    if suffix == ".ome.zarr":   # the pyramid too, level by level
        g1, g2 = zarr.open_group(str(tmp_path / "one.ome.zarr")), zarr.open_group(str(tmp_path / "two.ome.zarr"))
        assert sorted(g1.array_keys()) == sorted(g2.array_keys()) == ["0", "1", "2"]
        for key in ("1", "2"):
            np.testing.assert_allclose(g2[key][:], g1[key][:], rtol=1e-5, atol=1e-5)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())     # no temporary store left


def test_two_processes_predicting_in_column_strips_equal_one_process_without(tmp_path):
    model = make_model(tmp_path / "m.safetensors", scale=2)
    write_image(tmp_path / "in.ome.zarr", AxesImage(stack((2, 24, 280)), "ZYX"))
    opts = ["--model", model, "--input", tmp_path / "in.ome.zarr", "--tile", 32, "--chunk", 32, "--device", "cpu"]
    assert cli("predict", *opts, "--output", tmp_path / "one.ome.zarr") == 0
    # 560 output columns: two strips of 8 tiles (512 columns at most) instead of the whole width
    torchrun(*opts, "--output", tmp_path / "two.ome.zarr", NAPARI_GAN_STRIP_COLUMNS="64")
    g1, g2 = zarr.open_group(str(tmp_path / "one.ome.zarr")), zarr.open_group(str(tmp_path / "two.ome.zarr"))
    assert g2["0"].shape == (2, 48, 560)
    for key in g1.array_keys():
        np.testing.assert_allclose(g2[key][:], g1[key][:], rtol=1e-5, atol=1e-5)


def test_a_folder_of_tiffs_shared_by_two_processes_equals_one_process(tmp_path):
    model = make_model(tmp_path / "m.safetensors")
    (tmp_path / "in").mkdir()
    for i in range(3):
        tifffile.imwrite(tmp_path / "in" / f"f{i}.tif", stack((40 + 4 * i, 36), seed=i))
    opts = ["--model", model, "--input", tmp_path / "in", "--tile", 32, "--device", "cpu"]
    assert cli("predict", *opts, "--output", tmp_path / "one") == 0
    torchrun(*opts, "--output", tmp_path / "two")
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir()) == ["f0.tif", "f1.tif", "f2.tif"]
    for name in names:
        np.testing.assert_allclose(tifffile.imread(tmp_path / "two" / name), tifffile.imread(tmp_path / "one" / name),
                                   rtol=1e-5, atol=1e-5)
