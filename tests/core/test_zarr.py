"""OME-Zarr in and out: lazy views, metadata round trips, the pyramid, streamed prediction
through the CLI (Zarr -> Zarr, TIFF -> Zarr, Zarr -> TIFF) equal to prediction in memory, and
inputs that are read tile by tile, never whole."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_gan.cli import main
from napari_gan.core import inference
from napari_gan.core.axes import AxesImage, read_image, write_image
from napari_gan.core.errors import NapariGanError

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")


def make_model(path: Path, scale: int = 1, in_channels: int = 1, out_channels: int = 1, seed: int = 0,
               width: int = 4, depth: int = 2) -> Path:
    """A small random Pix2Pix uNet saved as a model file (no training needed)."""
    from napari_gan.core import checkpoint
    from napari_gan.core.families import get
    from napari_gan.core.families.pix2pix import Pix2PixConfig, build_generator
    from napari_gan.core.normalization import Normalizer

    cfg = Pix2PixConfig(task="sr" if scale > 1 else "denoise", scale=scale, in_channels=in_channels,
                        out_channels=out_channels, depth=depth, width=width, patch=32)
    torch.manual_seed(seed)
    g = build_generator(cfg)
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 0.2)
    arch, training = get("pix2pix").split_config(cfg)
    norms = {"input": Normalizer([0.0] * in_channels, [1000.0] * in_channels).to_dict(),
             "target": Normalizer([0.0] * out_channels, [500.0] * out_channels).to_dict()}
    return checkpoint.save_model(path, "pix2pix", arch, {"generator": g}, norms, training=training)


def stack(shape, seed=0, dtype=np.uint16):
    return np.random.default_rng(seed).integers(0, 1000, shape).astype(dtype)


def cli(*args) -> int:
    return main([str(a) for a in args])


def record_reads(monkeypatch, cls=None) -> list[int]:
    """The number of elements of every region read from now on from any array of ``cls``
    (default: zarr arrays)."""
    cls = cls or zarr.Array
    regions = []
    original = cls.__getitem__

    def recording(self, selection):
        out = original(self, selection)
        regions.append(int(np.size(out)))
        return out

    monkeypatch.setattr(cls, "__getitem__", recording)
    return regions


def predict_in_memory(model, image: AxesImage, tile: int):
    from napari_gan.core.inference import load_predictor

    return load_predictor(model, "cpu").predict_image(image, tile)


# ------------------------------------------------------------------------ lazy views
def test_lazy_array_indexes_like_numpy():
    from napari_gan.core.zarr_io import LazyArray

    a = np.arange(3 * 4 * 5 * 6).reshape(3, 4, 5, 6)
    lazy = LazyArray(a)
    keys = [(1,), (slice(None), 2), (Ellipsis, 3), (slice(1, None, 2), slice(None), slice(0, 5, 2), -1),
            (0, None, slice(1, 3)), (-1, Ellipsis, slice(2, 5), slice(None, None, 3))]
    for key in keys:
        np.testing.assert_array_equal(np.asarray(lazy[key]), a[key])
    t = lazy.transpose(2, 0, 3, 1)
    np.testing.assert_array_equal(np.asarray(t), a.transpose(2, 0, 3, 1))
    np.testing.assert_array_equal(np.asarray(t[1:4, 2][:, ::2]), a.transpose(2, 0, 3, 1)[1:4, 2][:, ::2])
    assert t.shape == (5, 3, 6, 4) and lazy[0, 1].shape == (5, 6) and lazy.size == a.size
    np.testing.assert_array_equal(np.asarray(lazy[[0, 2]]), a[[0, 2]])     # fancy: read, then index
    assert np.asarray(lazy.view(np.float32)).dtype == np.float32


def test_to_planes_of_a_lazy_image_are_views(tmp_path):
    from napari_gan.core.axes import to_planes
    from napari_gan.core.zarr_io import LazyArray

    data = stack((2, 3, 2, 20, 24))                     # TZCYX
    image = AxesImage(LazyArray(data), "TCZYX".replace("CZ", "ZC"), {}, None)
    planes, layout = to_planes(image, channels=2)
    assert planes.shape == (6, 2, 20, 24) and layout.lead_axes == "TZ"
    ref, _ = to_planes(AxesImage(data, "TZCYX"), channels=2)
    for i in range(6):
        np.testing.assert_array_equal(np.asarray(planes[i][:, 3:9, 4:20]), ref[i][:, 3:9, 4:20])


def test_split_rows_covers_every_chunk_row_once():
    from napari_gan.core.inference import split_rows

    for planes, rows, chunk, world in [(1, 100, 32, 2), (3, 96, 32, 2), (2, 50, 16, 3), (1, 10, 32, 4)]:
        seen = []
        for rank in range(world):
            for p, r0, r1 in split_rows(planes, rows, chunk, rank, world):
                assert r0 % chunk == 0 and (r1 % chunk == 0 or r1 == rows) and r0 < r1
                seen += [(p, r) for r in range(r0, r1)]
        assert sorted(seen) == [(p, r) for p in range(planes) for r in range(rows)]


# ------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_round_trip_keeps_axes_pixel_sizes_and_builds_a_pyramid(tmp_path, version):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    from napari_gan.core.zarr_io import write_ome_zarr

    data = stack((2, 3, 2, 70, 50))                       # ImageJ order TZCYX
    image = AxesImage(data, "TZCYX", {"Z": 2.0, "Y": 0.25, "X": 0.3}, "micron", "cells")
    path = write_ome_zarr(tmp_path / "img.ome.zarr", image, chunk=16, version=version)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.ome.zarr"]   # no temporary left

    back = read_image(path)
    assert back.axes == "TCZYX" and back.shape == (2, 2, 3, 70, 50) and back.dtype == np.uint16
    assert back.pixel_size == pytest.approx({"Z": 2.0, "Y": 0.25, "X": 0.3}) and back.unit == "micron"
    np.testing.assert_array_equal(np.asarray(back.data), data.transpose(0, 2, 1, 3, 4))

    # ome-zarr-py reads it: axes, levels halved in Y/X, scales doubling per level
    node = next(n for n in Reader(parse_url(str(path)))() if n.load(Multiscales))
    assert [a["name"] for a in node.metadata["axes"]] == ["t", "c", "z", "y", "x"]
    assert [a.get("unit") for a in node.metadata["axes"]] == [None, None] + ["micrometer"] * 3
    shapes = [tuple(d.shape) for d in node.data]
    assert shapes == [(2, 2, 3, 70, 50), (2, 2, 3, 35, 25), (2, 2, 3, 18, 13), (2, 2, 3, 9, 7)]  # until one chunk
    scales = [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]
    for k, scale in enumerate(scales):
        assert scale == pytest.approx([1, 1, 2.0, 0.25 * 2 ** k, 0.3 * 2 ** k])
    level0, level1 = np.asarray(node.data[0], np.float64), np.asarray(node.data[1])
    np.testing.assert_array_equal(level1, np.rint(level0.reshape(2, 2, 3, 35, 2, 25, 2).mean(axis=(4, 6))))
    one = read_image(path, level=1)
    assert one.shape == shapes[1] and one.pixel_size == pytest.approx({"Z": 2.0, "Y": 0.5, "X": 0.6})
    with pytest.raises(NapariGanError, match="no level 9"):
        read_image(path, level=9)


def test_plain_write_image_dispatches_by_suffix(tmp_path):
    data = stack((30, 40)).astype(np.float32)
    write_image(tmp_path / "a.zarr", AxesImage(data, "YX", {"Y": 0.5, "X": 0.5}, "nm"))
    back = read_image(tmp_path / "a.zarr")
    assert back.axes == "YX" and back.unit == "nm" and back.pixel_size == {"Y": 0.5, "X": 0.5}
    np.testing.assert_array_equal(np.asarray(back.data), data)


# ------------------------------------------------------------------------ predict
@pytest.mark.parametrize("scale,strips", [(1, False), (2, False), (2, True)])
def test_predict_zarr_to_zarr_equals_in_memory_prediction(tmp_path, monkeypatch, scale, strips):
    if strips:   # column strips of 32 output pixels (2 chunks) instead of 4096
        monkeypatch.setattr(inference, "STRIP_COLUMNS", 32)
        monkeypatch.setattr(inference, "STRIP_TILES", 0)
    model = make_model(tmp_path / "m.safetensors", scale=scale)
    data = stack((2, 2, 40, 36))
    image = AxesImage(data, "TZYX", {"Z": 1.5, "Y": 0.4, "X": 0.4}, "micron")
    write_image(tmp_path / "in.ome.zarr", image)
    assert cli("predict", "--model", model, "--input", tmp_path / "in.ome.zarr", "--output",
               tmp_path / "out.ome.zarr", "--tile", 32, "--chunk", 16, "--device", "cpu") == 0
    out = read_image(tmp_path / "out.ome.zarr")
    expected = predict_in_memory(model, image, 32)
    assert out.axes == "TZYX" and out.shape == expected.shape == (2, 2, 40 * scale, 36 * scale)
    np.testing.assert_allclose(np.asarray(out.data), expected.data, rtol=1e-6, atol=1e-6)
    assert out.pixel_size == pytest.approx({"Z": 1.5, "Y": 0.4 / scale, "X": 0.4 / scale})
    assert out.unit == "micron"
    levels = zarr.open_group(str(tmp_path / "out.ome.zarr"))
    assert levels["1"].shape == (2, 2, 20 * scale, 18 * scale)
    if scale > 1:
        return
    # run again over its own output: replaced (napari-gan wrote it)
    assert cli("predict", "--model", model, "--input", tmp_path / "in.ome.zarr", "--output",
               tmp_path / "out.ome.zarr", "--tile", 32, "--device", "cpu", "--levels", 1) == 0
    assert "1" not in zarr.open_group(str(tmp_path / "out.ome.zarr"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.zarr", "m.safetensors", "out.ome.zarr"]


def test_predict_tiff_to_zarr_keeps_channels_and_axes(tmp_path):
    model = make_model(tmp_path / "m.safetensors", in_channels=2, out_channels=2)
    data = stack((3, 2, 40, 36))                         # ZCYX, ImageJ order
    tifffile.imwrite(tmp_path / "in.tif", data, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "ZCYX", "spacing": 0.8, "unit": "um"})
    image = read_image(tmp_path / "in.tif")
    assert cli("predict", "--model", model, "--input", tmp_path / "in.tif", "--output", tmp_path / "o.ome.zarr",
               "--tile", 32, "--device", "cpu") == 0
    out = read_image(tmp_path / "o.ome.zarr")
    expected = predict_in_memory(model, image, 32)
    assert out.axes == "CZYX"                           # the same axes, in NGFF order
    np.testing.assert_allclose(np.asarray(out.data), expected.data.transpose(1, 0, 2, 3), rtol=1e-6, atol=1e-6)
    assert out.pixel_size == pytest.approx({"Z": 0.8, "Y": 0.2, "X": 0.2}) and out.unit == "micron"


@pytest.mark.parametrize("streamed", [False, True])
def test_predict_zarr_to_tiff_equals_in_memory_prediction(tmp_path, monkeypatch, streamed):
    import napari_gan.core.inference as inference

    if streamed:   # as for a huge output: through a temporary store, written tile by tile
        monkeypatch.setattr(inference, "STREAM_TIFF_BYTES", 0)
    model = make_model(tmp_path / "m.safetensors", scale=2)
    image = AxesImage(stack((2, 40, 50)), "ZYX", {"Z": 3.0, "Y": 0.5, "X": 0.5}, "micron")
    write_image(tmp_path / "in.ome.zarr", image)
    assert cli("predict", "--model", model, "--input", tmp_path / "in.ome.zarr", "--output", tmp_path / "o.tif",
               "--tile", 32, "--chunk", 32, "--device", "cpu") == 0
    out = read_image(tmp_path / "o.tif")
    expected = predict_in_memory(model, image, 32)
    assert out.axes == "ZYX" and out.shape == (2, 80, 100)
    np.testing.assert_allclose(np.asarray(out.data), expected.data, rtol=1e-6, atol=1e-6)
    assert out.pixel_size == pytest.approx({"Z": 3.0, "Y": 0.25, "X": 0.25})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ome.zarr", "m.safetensors", "o.tif"]
    if streamed:
        with tifffile.TiffFile(tmp_path / "o.tif") as tif:
            assert tif.pages[0].is_tiled and tif.is_ome


def test_a_lazy_input_is_read_tile_by_tile_never_whole(tmp_path, monkeypatch):
    """Prediction reads tile-sized regions of a Zarr input; training reads patch-sized ones."""
    from napari_gan.core.data import PairedPatchSampler, PairedSet
    from napari_gan.core.families import get, images_from_files

    h = w = 256
    tile = 48
    model = make_model(tmp_path / "m.safetensors")
    write_image(tmp_path / "in.ome.zarr", AxesImage(stack((h, w)), "YX"))
    write_image(tmp_path / "gt.ome.zarr", AxesImage(stack((h, w), seed=1), "YX"))
    regions = record_reads(monkeypatch)
    assert cli("predict", "--model", model, "--input", tmp_path / "in.ome.zarr", "--output",
               tmp_path / "out.ome.zarr", "--tile", tile, "--overlap", 8, "--levels", 1, "--device", "cpu") == 0
    reads = list(regions)
    assert len(reads) > 10 and max(reads) <= tile * tile < h * w

    # training: planes stay lazy; patches are cut one by one
    images = images_from_files(get("pix2pix"), {"input": tmp_path / "in.ome.zarr", "target": tmp_path / "gt.ome.zarr"})
    data = PairedSet.build(images["input"].planes, images["target"].planes)
    regions.clear()
    x, y = PairedPatchSampler(data, 32, np.random.default_rng(0)).sample(4)
    assert x.shape == y.shape == (4, 1, 32, 32)
    assert regions and max(regions) <= 32 * 32


@pytest.mark.parametrize("compressed", [True, False])
def test_a_large_tiff_is_read_tile_by_tile(tmp_path, monkeypatch, compressed):
    """Large TIFFs (here: any size) are read lazily: compressed/tiled ones (slide scanners'
    OME-TIFFs) through tifffile's Zarr store, uncompressed ones mapped per read (so the pages
    read do not stay resident)."""
    import napari_gan.core.axes as axes_mod
    from napari_gan.core.zarr_io import MappedFile

    monkeypatch.setattr(axes_mod, "LAZY_TIFF_BYTES", 0)
    model = make_model(tmp_path / "m.safetensors")
    data = stack((2, 96, 80))
    how = {"compression": "zlib", "tile": (32, 32)} if compressed else {}
    tifffile.imwrite(tmp_path / "in.tif", data, metadata={"axes": "ZYX"}, **how)
    image = read_image(tmp_path / "in.tif")
    assert type(image.data).__name__ == "LazyArray" and image.axes == "ZYX"
    assert isinstance(image.data.base, MappedFile) != compressed
    regions = record_reads(monkeypatch, zarr.Array if compressed else MappedFile)
    assert cli("predict", "--model", model, "--input", tmp_path / "in.tif", "--output", tmp_path / "o.ome.zarr",
               "--tile", 32, "--overlap", 8, "--levels", 1, "--device", "cpu") == 0
    assert regions and max(regions) <= 32 * 32
    monkeypatch.undo()
    np.testing.assert_allclose(np.asarray(read_image(tmp_path / "o.ome.zarr").data),
                               predict_in_memory(model, AxesImage(data, "ZYX"), 32).data, rtol=1e-6, atol=1e-6)


def test_outputs_are_checked_and_failures_leave_nothing(tmp_path, capsys):
    model = make_model(tmp_path / "m.safetensors")
    write_image(tmp_path / "in.ome.zarr", AxesImage(stack((40, 40)), "YX"))
    base = ["predict", "--model", model, "--device", "cpu", "--input", tmp_path / "in.ome.zarr", "--output"]
    assert cli(*base, tmp_path / "in.ome.zarr") == 2
    assert "never writes over its inputs" in capsys.readouterr().err
    assert cli(*base, tmp_path / "in.ome.zarr" / "inside.zarr") == 2
    (tmp_path / "foreign.zarr").mkdir()
    assert cli(*base, tmp_path / "foreign.zarr") == 2
    assert "was not written by napari-gan" in capsys.readouterr().err
    # a NaN in a float input: an error naming it, and no output or temporary folder left
    bad = stack((40, 40)).astype(np.float32)
    bad[30, 5] = np.nan
    write_image(tmp_path / "nan.zarr", AxesImage(bad, "YX"))
    assert cli(*base[:-3], "--input", tmp_path / "nan.zarr", "--output", tmp_path / "o.ome.zarr") == 2
    assert "NaN" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.zarr", "in.ome.zarr", "m.safetensors", "nan.zarr"]


def test_a_folder_mixing_tiffs_and_zarr_images(tmp_path):
    from napari_gan.core.io import expand_paths

    model = make_model(tmp_path / "m.safetensors")
    (tmp_path / "in").mkdir()
    a, b = stack((36, 40)), stack((40, 36), seed=2)
    tifffile.imwrite(tmp_path / "in" / "a.tif", a)
    write_image(tmp_path / "in" / "b.ome.zarr", AxesImage(b, "YX"))
    assert [p.name for p in expand_paths(tmp_path / "in")] == ["a.tif", "b.ome.zarr"]
    assert cli("predict", "--model", model, "--input", tmp_path / "in", "--output", tmp_path / "out",
               "--tile", 32, "--device", "cpu") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.tif", "b.ome.zarr"]
    np.testing.assert_allclose(np.asarray(read_image(tmp_path / "out" / "b.ome.zarr").data),
                               predict_in_memory(model, AxesImage(b, "YX"), 32).data, rtol=1e-6, atol=1e-6)
