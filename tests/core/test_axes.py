import numpy as np
import pytest
import tifffile

from napari_gan.core.axes import (
    AxesImage, guess_axes, parse_axes, read_image, to_planes, write_image,
)
from napari_gan.core.data import check_finite
from napari_gan.core.data import to_planes as data_to_planes
from napari_gan.core.errors import NapariGanError


def coded_tzcyx(t=2, z=3, c=3, h=16, w=20, dtype=np.uint16):
    """Every pixel's value says where it is: 1000*t + 100*z + 10*c (+ a small y/x ramp)."""
    tt, zz, cc, yy, xx = np.indices((t, z, c, h, w))
    return (1000 * tt + 100 * zz + 10 * cc + (yy + xx) % 10).astype(dtype)


# ------------------------------------------------------------------------- parse / guess
@pytest.mark.parametrize("text, ndim, expected", [
    ("tzcyx", 5, "TZCYX"), (" yx ", 2, "YX"), ("CZYX", 4, "CZYX"), ("zyxs", 4, "ZYXS"),
])
def test_parse_axes_accepts(text, ndim, expected):
    assert parse_axes(text, ndim) == expected


@pytest.mark.parametrize("text, ndim, match", [
    ("TZCYX", 4, "has 4"),
    ("ZQYX", 4, "Unknown axis letter.*'Q'"),
    ("ZZYX", 4, "more than once"),
    ("ZYXC", 4, "must end with YX"),
    ("YXZ", 3, "must end with YX"),
    ("SZYX", 4, "must end with YX"),
    ("", 2, "letters"),
])
def test_parse_axes_errors(text, ndim, match):
    with pytest.raises(NapariGanError, match=match):
        parse_axes(text, ndim)


@pytest.mark.parametrize("shape, kw, expected", [
    ((16, 20), {}, "YX"),
    ((5, 16, 20), {}, "ZYX"),
    ((2, 5, 16, 20), {}, "TZYX"),
    ((3, 16, 20), {"channels": 3}, "CYX"),
    ((5, 3, 16, 20), {"channels": 3}, "ZCYX"),
    ((2, 5, 3, 16, 20), {"channels": 3}, "TZCYX"),
    ((3, 3, 16, 20), {"channels": 3, "channel_axis": 1}, "ZCYX"),
    ((4, 2, 16, 20), {"channel_axis": -3}, "ZCYX"),
    ((16, 20, 3), {}, "YXS"),
    ((5, 16, 20, 4), {}, "ZYXS"),
])
def test_guess_axes(shape, kw, expected):
    assert guess_axes(shape, **kw) == expected


def test_guess_axes_errors():
    with pytest.raises(NapariGanError, match="ambiguous"):   # Z == C without metadata: not guessed
        guess_axes((3, 3, 16, 20), channels=3)
    with pytest.raises(NapariGanError, match="expects 3 channels"):
        guess_axes((2, 16, 16), channels=3)
    with pytest.raises(NapariGanError, match="last two"):
        guess_axes((2, 16, 16), channel_axis=-1)
    with pytest.raises(NapariGanError, match="at least 2"):
        guess_axes((16,))
    with pytest.raises(NapariGanError, match="only T and Z"):
        guess_axes((2, 2, 2, 16, 16))


def test_axes_image_validates_and_normalises():
    image = AxesImage(np.zeros((3, 8, 8)), "zyx", {"z": 2.0, "X": 0.5, "Y": 0.5, "T": 1.0}, "µm")
    assert image.axes == "ZYX" and image.unit == "micron"
    assert image.pixel_size == {"Z": 2.0, "X": 0.5, "Y": 0.5}  # T is no pixel size
    with pytest.raises(NapariGanError, match="has 3"):
        AxesImage(np.zeros((3, 8, 8)), "TZYX")


# ------------------------------------------------------------------------- planes
def test_z_equal_c_takes_channels_from_the_c_axis():
    data = coded_tzcyx()  # T=2, Z=3, C=3: guessing would pick Z as the channel axis
    image = AxesImage(data, "TZCYX", {"Z": 0.5, "Y": 0.2, "X": 0.2}, "micron")
    planes, layout = to_planes(image, channels=3)
    assert planes.shape == (6, 3, 16, 20) and layout.lead_axes == "TZ"
    assert np.shares_memory(planes, data)
    for t in range(2):
        for z in range(3):
            for c in range(3):
                assert planes[t * 3 + z, c, 0, 0] == 1000 * t + 100 * z + 10 * c
    assert layout.output_axes(3) == "TZCYX"
    np.testing.assert_array_equal(layout.restore(planes), data)
    # without axes the length of Z and C alone cannot tell them apart: refused, not guessed
    with pytest.raises(NapariGanError, match="ambiguous"):
        data_to_planes(data, channels=3)


def test_restore_channel_rules_and_super_resolution():
    data = coded_tzcyx(t=2, z=3, c=3, h=8, w=10)
    image = AxesImage(data, "TZCYX", {"Z": 0.5, "Y": 0.2, "X": 0.25}, "micron")
    planes, layout = to_planes(image, 3)
    out = np.repeat(np.repeat(planes[:, :1], 2, axis=-2), 2, axis=-1).astype(np.float32)  # x2, 1 ch
    restored = layout.restore_image(out, 1, scale=2)
    assert restored.axes == "TZCYX" and restored.shape == (2, 3, 1, 16, 20)  # C kept in place
    assert restored.pixel_size == {"Z": 0.5, "Y": 0.1, "X": 0.125}
    assert image.scaled_pixel_size(4) == {"Z": 0.5, "Y": 0.05, "X": 0.0625}
    np.testing.assert_array_equal(restored.data[1, 2, 0, ::2, ::2], data[1, 2, 0])

    stack = AxesImage(data[:, :, 0], "TZYX")
    planes, layout = to_planes(stack, 1)
    assert layout.output_axes(1) == "TZYX" and layout.restore(planes).shape == (2, 3, 8, 10)
    two = np.concatenate([planes, planes + 1], axis=1)
    assert layout.output_axes(2) == "TZCYX"
    np.testing.assert_array_equal(layout.restore(two)[:, :, 1], data[:, :, 0] + 1)


def test_other_orders_and_rgb():
    data = coded_tzcyx(t=1, z=3, c=2, h=8, w=10)[0]  # (Z, C, Y, X)
    czyx = np.ascontiguousarray(np.moveaxis(data, 1, 0))
    planes, layout = to_planes(AxesImage(czyx, "CZYX"), 2)
    np.testing.assert_array_equal(planes, data)
    assert np.shares_memory(planes, czyx)
    np.testing.assert_array_equal(layout.restore(planes), czyx)

    rgb = np.random.default_rng(0).integers(0, 255, (2, 16, 20, 3)).astype(np.uint8)
    planes, layout = to_planes(AxesImage(rgb, "ZYXS"), 3)
    np.testing.assert_array_equal(planes[1, 2], rgb[1, ..., 2])
    assert layout.output_axes(3) == "ZYXS" and layout.output_axes(1) == "ZYX"
    np.testing.assert_array_equal(layout.restore(planes), rgb)
    with pytest.raises(NapariGanError, match="RGB"):
        to_planes(AxesImage(rgb, "ZYXS"), 1)


def test_channel_count_mismatch():
    with pytest.raises(NapariGanError, match="has 3 channels .*axis C.* expects 2"):
        to_planes(AxesImage(np.zeros((2, 3, 8, 8)), "ZCYX"), 2)
    with pytest.raises(NapariGanError, match="has 1 channel .*no C axis.* expects 2"):
        to_planes(AxesImage(np.zeros((3, 8, 8)), "ZYX"), 2)
    with pytest.raises(NapariGanError, match="pick a single channel"):
        to_planes(AxesImage(np.zeros((2, 3, 8, 8)), "ZCYX"), 1)


def test_memmap_stays_lazy(tmp_path):
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, coded_tzcyx(), imagej=True, metadata={"axes": "TZCYX"})
    image = read_image(path)
    assert isinstance(image.data, np.memmap)
    planes, _ = to_planes(image, 3)
    assert np.shares_memory(planes, image.data)
    assert read_image(path, memmap=False).data.__class__ is np.ndarray


# ------------------------------------------------------------------------- files
def test_imagej_round_trip_keeps_axes_and_pixel_size(tmp_path):
    data = coded_tzcyx()
    path = write_image(tmp_path / "ij.tif",
                       AxesImage(data, "TZCYX", {"Z": 0.5, "Y": 0.2, "X": 0.25}, "micron"))
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and not tif.is_ome
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    image = read_image(path)
    assert image.axes == "TZCYX" and image.unit == "micron" and image.series_count == 1
    assert image.pixel_size == pytest.approx({"Z": 0.5, "Y": 0.2, "X": 0.25})
    np.testing.assert_array_equal(image.data, data)

    # through the model layout and back to disk
    planes, layout = to_planes(image, 3)
    outputs = planes.astype(np.float32) * 2
    out = write_image(tmp_path / "out.tif", layout.restore_image(outputs))
    again = read_image(out)
    assert again.axes == "TZCYX" and again.dtype == np.float32
    assert again.pixel_size == pytest.approx(image.pixel_size)
    np.testing.assert_array_equal(again.data, data.astype(np.float32) * 2)


def test_ome_round_trip_in_a_non_imagej_order(tmp_path):
    data = np.ascontiguousarray(np.moveaxis(coded_tzcyx(t=1)[0], 1, 0))  # (C, Z, Y, X)
    path = write_image(tmp_path / "czyx.tif", data, axes="czyx",
                       pixel_size={"Z": 1.5, "Y": 0.1, "X": 0.1}, unit="micron")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and not tif.is_imagej
    image = read_image(path)
    assert image.axes == "CZYX" and image.unit == "micron"
    assert image.pixel_size == pytest.approx({"Z": 1.5, "Y": 0.1, "X": 0.1})
    np.testing.assert_array_equal(image.data, data)
    planes, layout = to_planes(image, 3)
    assert planes[2, 1, 0, 0] == 100 * 2 + 10 * 1  # plane z=2, channel 1
    restored = layout.restore_image(planes.astype(np.float32), scale=2)
    assert restored.axes == "CZYX" and restored.pixel_size == pytest.approx({"Z": 1.5, "Y": 0.05, "X": 0.05})


def test_plain_tiff_axes_are_mapped_and_overridable(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((3, 4, 16, 20), np.uint16), photometric="minisblack")
    image = read_image(path)
    assert image.axes == "TZYX" and image.pixel_size == {} and image.unit is None
    assert read_image(path, axes="zcyx").axes == "ZCYX"
    with pytest.raises(NapariGanError, match="has 4"):
        read_image(path, axes="CYX")
    tifffile.imwrite(path, np.zeros((16, 20), np.uint8), resolution=(1e4 / 0.5, 1e4 / 0.5),
                     resolutionunit="CENTIMETER")
    image = read_image(path)
    assert image.axes == "YX" and image.unit == "micron"
    assert image.pixel_size == pytest.approx({"Y": 0.5, "X": 0.5})
    with pytest.raises(NapariGanError, match="does not exist"):
        read_image(tmp_path / "missing.tif")


def test_multi_series_needs_a_choice(tmp_path):
    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(np.ones((3, 16, 20), np.uint16), photometric="minisblack", metadata={"axes": "ZYX"})
        tw.write(np.zeros((8, 8), np.uint8), photometric="minisblack")
    with pytest.raises(NapariGanError, match=r"2 images \(series\).*series 1: shape \(8, 8\).*--series"):
        read_image(path)
    image = read_image(path, series=0)
    assert image.series_count == 2 and image.axes == "ZYX" and image.shape == (3, 16, 20)
    second = read_image(path, series=1)
    assert second.shape == (8, 8) and second.dtype == np.uint8
    with pytest.raises(NapariGanError, match="no series 2"):
        read_image(path, series=2)


# ------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.int64, np.uint32, np.float16,
                                   ">u2", ">f4", np.float64])
def test_dtypes_survive_files_and_planes(tmp_path, dtype):
    rng = np.random.default_rng(0)
    data = (rng.random((2, 3, 16, 20)) * (1 if np.dtype(dtype) == bool else 100)).astype(dtype)
    if np.dtype(dtype).kind == "b":
        data = rng.random((2, 3, 16, 20)) > 0.5
    path = write_image(tmp_path / "d.tif", data, axes="ZCYX", pixel_size={"X": 0.3, "Y": 0.3})
    image = read_image(path)
    assert image.axes == "ZCYX" and image.pixel_size == pytest.approx({"Y": 0.3, "X": 0.3})
    np.testing.assert_array_equal(image.data, data)
    planes, _ = to_planes(image, 3)
    assert planes.dtype == image.native_dtype or planes.dtype.newbyteorder("=") == image.native_dtype
    check_finite(planes[0], "plane")
    x = np.ascontiguousarray(planes[1], np.float32)  # as tiles are converted for the models
    assert x.dtype.isnative
    np.testing.assert_allclose(x, data[1].astype(np.float32))


def test_big_endian_memmap(tmp_path):
    path = tmp_path / "be.tif"
    data = np.arange(2 * 16 * 20, dtype=">u2").reshape(2, 16, 20)
    tifffile.imwrite(path, data, byteorder=">", photometric="minisblack")
    image = read_image(path)
    assert isinstance(image.data, np.memmap) and image.dtype.byteorder == ">"
    assert image.native_dtype == np.dtype("=u2")
    planes, _ = to_planes(image, 1)
    np.testing.assert_array_equal(np.asarray(planes[1, 0], np.float32), data[1].astype(np.float32))


def test_float64_beyond_float32_is_refused():
    data = np.ones((3, 16, 20))
    data[2, 5, 5] = 1e39
    with pytest.raises(NapariGanError, match="beyond the float32 range"):
        to_planes(AxesImage(data, "ZYX"), 1)
    with pytest.raises(NapariGanError, match="beyond the float32 range"):
        data_to_planes(data)
    data[2, 5, 5] = 3e38  # still representable
    assert to_planes(AxesImage(data, "ZYX"), 1)[0].shape == (3, 1, 16, 20)


def test_range_check_reads_in_chunks(monkeypatch):
    import napari_gan.core.axes as axes_mod

    data = np.arange(4 * 16 * 20, dtype=np.float64).reshape(4, 16, 20)
    pieces = list(axes_mod._chunks(data[:, ::2], 100))  # a strided view, as from a memmap
    assert max(p.size for p in pieces) <= 100
    np.testing.assert_array_equal(np.concatenate([p.ravel() for p in pieces]), data[:, ::2].ravel())
    monkeypatch.setattr(axes_mod, "_CHUNK", 100)
    data[3, 15, 19] = -1e300
    with pytest.raises(NapariGanError, match="float64 values up to 1e\\+300"):
        axes_mod.check_float32_range(data, "img")
