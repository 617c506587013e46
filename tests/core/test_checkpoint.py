"""Model-file format 2 (and reading format 1): round trips, interoperability, old files."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.torch
import torch
from safetensors import safe_open

from napari_gan.core import checkpoint
from napari_gan.core.errors import NapariGanError
from napari_gan.core.models.patchgan import PatchGANDiscriminator
from napari_gan.core.models.stylegan2 import Discriminator, Generator
from napari_gan.core.models.unet import UNetGenerator

FORMAT1 = Path(__file__).resolve().parents[1] / "data" / "format1"
NORM = {"input": {"low": [0.0], "high": [1.0]}, "target": {"low": [0.0], "high": [2.0]}}


def _unet():
    return UNetGenerator(1, 1, depth=2, width=4)


def _patchgan():
    return PatchGANDiscriminator(1, 1, width=4, n_layers=2, spectral_norm=True)


def _trained_pair():
    torch.manual_seed(0)
    g, d = _unet(), _patchgan()
    x = torch.rand(1, 1, 16, 16)
    d(x, g(x)).mean().backward()     # spectral norm's power iteration updates _u, _v
    return g, d


# ------------------------------------------------------------------------ model files
def test_model_file_round_trip_and_plain_safetensors_view(tmp_path):
    g, d = _trained_pair()
    path = checkpoint.save_model(tmp_path / "m.safetensors", "pix2pix", {"depth": 2, "width": 4},
                                 {"generator": g, "discriminator": d.state_dict()}, NORM,
                                 step=7, metrics={"psnr": np.float32(21.5), "ssim": float("nan")},
                                 training={"seed": 3, "patch": np.int64(32)})
    # any safetensors reader sees the networks' own state_dict names
    plain = safetensors.torch.load_file(str(path))
    assert set(plain) == ({f"generator.{k}" for k in g.state_dict()}
                          | {f"discriminator.{k}" for k in d.state_dict()})
    assert "generator.encoders.0.0.weight" in plain
    assert "discriminator.net.0.parametrizations.weight.original" in plain
    for k, v in g.state_dict().items():
        assert torch.equal(plain[f"generator.{k}"], v)
    with safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()[checkpoint.META_KEY],
                            parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
        assert set(f.keys()) == set(plain)
    assert header["format"] == "napari-gan" and header["format_version"] == 2
    assert header["family"] == "pix2pix" and header["role"] == "model"
    assert header["architecture"] == {"depth": 2, "width": 4} and header["normalization"] == NORM
    assert header["networks"] == ["generator", "discriminator"] and "skeleton" not in header
    assert header["step"] == 7 and header["metrics"] == {"psnr": 21.5, "ssim": None}
    assert header["training"] == {"seed": 3, "patch": 32}
    assert "napari_gan_version" in header and "saved" in header

    h = checkpoint.read_header(path, expect_role="model")
    assert (h.path, h.format_version, h.family, h.role) == (path, 2, "pix2pix", "model")
    assert h.architecture == {"depth": 2, "width": 4} and h.normalization == NORM
    assert h.networks == ["generator", "discriminator"] and h.raw == header
    assert h.step == 7 and h.metrics["psnr"] == 21.5 and h.extra["training"]["seed"] == 3
    assert h.tensor_info["generator.encoders.0.0.weight"] == ("F32", (4, 1, 3, 3))

    nets = checkpoint.load_networks(h, ["generator", "discriminator"])
    for net, loaded in ((g, nets["generator"]), (d, nets["discriminator"])):
        assert set(loaded) == set(net.state_dict())
        for k, v in net.state_dict().items():
            assert torch.equal(v, loaded[k])
    g2 = checkpoint.build_checked(_unet, nets["generator"], path)
    d2 = checkpoint.build_checked(_patchgan, nets["discriminator"], path)
    x = torch.rand(1, 1, 16, 16)
    for net in (g, g2, d, d2):
        net.eval()
    with torch.no_grad():
        assert torch.equal(g(x), g2(x)) and torch.equal(d(x, x), d2(x, x))
    assert set(checkpoint.load_state(h)) == {"generator", "discriminator"}


def test_stylegan2_networks_build_on_meta_and_round_trip(tmp_path):
    def G():
        return Generator(8, 8, 8, 1, 2, 64, 16)

    def D():
        return Discriminator(8, 1, 64, 16, 2)

    g, d = G(), D()
    path = checkpoint.save_model(tmp_path / "sg.safetensors", "stylegan2", {"resolution": 8},
                                 {"generator": g, "discriminator": d, "generator_ema": g},
                                 {"images": {"low": [0.0], "high": [1.0]}})
    h = checkpoint.read_header(path)
    nets = checkpoint.load_networks(h, ["generator_ema", "discriminator"])
    rng = torch.get_rng_state()
    g2 = checkpoint.build_checked(G, nets["generator_ema"], path)
    d2 = checkpoint.build_checked(D, nets["discriminator"], path)
    for a, b in ((g, g2), (d, d2)):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)
    # the meta build draws no random numbers: only the real builds do
    torch.set_rng_state(rng)
    G(), D()
    after_plain = torch.get_rng_state()
    torch.set_rng_state(rng)
    checkpoint.build_checked(G, nets["generator_ema"], path)
    checkpoint.build_checked(D, nets["discriminator"], path)
    assert torch.equal(torch.get_rng_state(), after_plain)


def test_saved_tensors_come_from_any_device_layout(tmp_path):
    w = torch.rand(4, 6).t()            # not contiguous
    path = checkpoint.save_model(tmp_path / "m.safetensors", "x", {}, {"net": {"w": w, "v": w}}, {})
    loaded = safetensors.torch.load_file(str(path))      # shared tensors stored separately
    assert torch.equal(loaded["net.w"], w) and loaded["net.w"].is_contiguous()


def test_bad_save_arguments_are_programming_errors(tmp_path):
    with pytest.raises(ValueError):
        checkpoint.save_model(tmp_path / "m.safetensors", "x", {}, {"a.b": {}}, {})
    with pytest.raises(TypeError):
        checkpoint.save_model(tmp_path / "m.safetensors", "x", {}, {"a": {}}, {}, role="other")
    with pytest.raises(TypeError):
        checkpoint.save_model(tmp_path / "m.safetensors", "x", [], {"a": {}}, {})
    with pytest.raises(TypeError):
        checkpoint.save_model(tmp_path / "m.safetensors", "x", {}, {"a": torch.zeros(1)}, {})
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- training states
def _nested_state():
    g, d = _trained_pair()
    opt = torch.optim.Adam(g.parameters())
    g(torch.rand(1, 1, 16, 16)).mean().backward()
    opt.step()
    return {"step": 5, "generator": g.state_dict(), "discriminator": d.state_dict(),
            "opt_g": opt.state_dict(), "rng_torch": torch.get_rng_state(),
            "rng_numpy": np.random.default_rng(5).bit_generator.state,
            "tuple": (1, 2.5, None, "x"), "best_score": float("-inf"), "arr": np.arange(3.0)}


def test_training_state_round_trip(tmp_path):
    state = _nested_state()
    path = checkpoint.save_state(tmp_path / checkpoint.STATE_FILENAME, "pix2pix", {"depth": 2},
                                 NORM, state, step=5)
    h = checkpoint.read_header(tmp_path, expect_role="training_state")      # a run folder
    assert h.path == path and h.role == "training_state" and h.format_version == 2
    assert h.networks == ["generator", "discriminator"] and h.step == 5
    loaded = checkpoint.load_state(h, require=("step", "generator", "opt_g"))
    for k, v in state["generator"].items():
        assert torch.equal(v, loaded["generator"][k])
    assert loaded["opt_g"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(loaded["opt_g"]["state"]) == set(state["opt_g"]["state"])   # int keys kept
    assert torch.equal(loaded["rng_torch"], state["rng_torch"])
    assert loaded["rng_numpy"] == state["rng_numpy"]
    assert loaded["tuple"] == (1, 2.5, None, "x") and loaded["best_score"] == float("-inf")
    np.testing.assert_array_equal(loaded["arr"], state["arr"])
    nets = checkpoint.load_networks(h, ["discriminator"])
    assert set(nets) == {"discriminator"}
    checkpoint.build_checked(_patchgan, nets["discriminator"], path)


def test_training_state_missing_a_part_is_refused(tmp_path):
    path = checkpoint.save_state(tmp_path / "s.safetensors", "pix2pix", {}, {}, {"step": 1})
    h = checkpoint.read_header(path)
    with pytest.raises(NapariGanError, match="training state with missing parts .*opt_g"):
        checkpoint.load_state(h, require=("step", "opt_g"))


def test_missing_network_is_refused(tmp_path):
    path = checkpoint.save_model(tmp_path / "m.safetensors", "pix2pix", {}, {"generator": _unet()}, {})
    with pytest.raises(NapariGanError, match="holds no discriminator network"):
        checkpoint.load_networks(checkpoint.read_header(path), ["discriminator"])


def test_roles_are_checked_with_a_plain_message(tmp_path):
    checkpoint.save_state(tmp_path / checkpoint.STATE_FILENAME, "pix2pix", {}, {}, {"step": 1})
    model = checkpoint.save_model(tmp_path / "x.safetensors", "pix2pix", {}, {"generator": _unet()}, {})
    with pytest.raises(NapariGanError, match="is a training_state file, not a model; give the run folder"):
        checkpoint.read_header(tmp_path / checkpoint.STATE_FILENAME, expect_role="model")
    with pytest.raises(NapariGanError, match="is a model file, not a training state"):
        checkpoint.read_header(model, expect_role="training_state")
    with pytest.raises(NapariGanError, match="holds no napari-gan model"):
        checkpoint.read_header(tmp_path)   # a folder with a state but no model


# ------------------------------------------------------------------- reading headers only
def test_read_header_never_reads_tensor_data(tmp_path, monkeypatch):
    path = checkpoint.save_model(tmp_path / "m.safetensors", "pix2pix", {"w": 1},
                                 {"generator": {"w": torch.rand(100_000)}}, {})
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    data[8 + n:] = b"\xff" * (len(data) - 8 - n)         # garbage tensor data, same size
    path.write_bytes(bytes(data))

    def no(*args, **kwargs):
        raise AssertionError("tensor data must not be read")

    monkeypatch.setattr(checkpoint, "safe_open", no)
    monkeypatch.setattr(safetensors, "safe_open", no)
    real_open = open
    reads = []

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def read(self, n=-1):
            out = self.f.read(n)
            reads.append(len(out))
            return out

    monkeypatch.setattr("builtins.open", lambda *a, **k: Counting(real_open(*a, **k)))
    h = checkpoint.read_header(path)
    assert h.architecture == {"w": 1} and h.tensor_info["generator.w"] == ("F32", (100_000,))
    assert sum(reads) == 8 + n < 2000


def test_format1_files_read_through_the_new_api():
    h = checkpoint.read_header(FORMAT1 / "pix2pix_denoise_v1.safetensors", expect_role="model")
    assert (h.format_version, h.family, h.role, h.networks) == (1, "pix2pix", "model", ["generator"])
    assert h.architecture["depth"] == 2 and h.architecture["task"] == "denoise"
    assert set(h.normalization) == {"input", "target"} and h.step == 3 and "train_psnr" in h.metrics
    assert "skeleton" not in h.extra and "kind" not in h.extra
    sd = checkpoint.load_networks(h, ["generator"])["generator"]
    cfg = h.architecture
    g = checkpoint.build_checked(
        lambda: UNetGenerator(cfg["in_channels"], cfg["out_channels"], cfg["depth"], cfg["width"],
                              cfg["scale"], cfg["norm"], cfg["residual"]), sd, h.path)
    assert isinstance(g, UNetGenerator)
    assert set(checkpoint.load_state(h)) == {"generator"}

    h = checkpoint.read_header(FORMAT1 / "stylegan2_v1.safetensors")
    assert (h.format_version, h.family, h.networks) == (1, "stylegan2", ["generator"])
    assert h.architecture["resolution"] == 8 and "images" in h.normalization and h.step == 2
    cfg = h.architecture
    sd = checkpoint.load_networks(h, ["generator"])["generator"]
    checkpoint.build_checked(lambda: Generator(cfg["z_dim"], cfg["w_dim"], cfg["resolution"],
                                               cfg["channels"], cfg["mapping_layers"],
                                               cfg["channel_base"], cfg["channel_max"]), sd, h.path)


def test_format1_pix2pix_fixture_predicts_as_released():
    from napari_gan.core.inference import load_predictor

    x = np.load(FORMAT1 / "pix2pix_denoise_v1_input.npy")
    expected = np.load(FORMAT1 / "pix2pix_denoise_v1_output.npy")
    # with the release's tiling (256-pixel tiles, 48-pixel mirrored margins): the same network,
    # the same pixels (the automatic tiling of today predicts this small image without margins)
    got = load_predictor(FORMAT1 / "pix2pix_denoise_v1.safetensors", "cpu").predict(x, tile=256, overlap=48)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_format1_stylegan2_fixture_generates_as_released():
    from napari_gan.core.generation import load_generator

    expected = np.load(FORMAT1 / "stylegan2_v1_seed5.npy")
    got = load_generator(FORMAT1 / "stylegan2_v1.safetensors", "cpu").generate(3, seed=5)
    # float32 sums run in another order on another CPU's kernels: tolerance relative to the range
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


# ---------------------------------------------------------------------- hostile files
def _raw_file(path, header_bytes: bytes, data: bytes = b"", length: int | None = None):
    n = len(header_bytes) if length is None else length
    path.write_bytes(n.to_bytes(8, "little") + header_bytes + data)
    return path


def _file_with(path, napari_gan, tensors=None, data=None):
    """A safetensors file whose napari_gan metadata is ``napari_gan`` (str or JSON-able)."""
    tensors = {"generator.w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}} \
        if tensors is None else tensors
    meta = napari_gan if isinstance(napari_gan, str) else json.dumps(napari_gan)
    header = json.dumps({"__metadata__": {"napari_gan": meta}, **tensors}).encode()
    size = max([t["data_offsets"][1] for t in tensors.values() if isinstance(t, dict)], default=0)
    return _raw_file(path, header, b"\0" * size if data is None else data)


def _bytes_file(path, data: bytes):
    path.write_bytes(data)
    return path


def _good_header(**changes):
    h = {"format": "napari-gan", "format_version": 2, "family": "pix2pix", "role": "model",
         "architecture": {}, "normalization": {}, "networks": ["generator"]}
    h.update(changes)
    return {k: v for k, v in h.items() if v is not ...}


def test_the_hostile_file_helper_makes_valid_files(tmp_path):
    h = checkpoint.read_header(_file_with(tmp_path / "ok.safetensors", _good_header()))
    assert h.networks == ["generator"]
    assert torch.equal(checkpoint.load_networks(h, ["generator"])["generator"]["w"], torch.zeros(2))


@pytest.mark.parametrize("changes, message", [
    ({"architecture": [1, 2]}, "'architecture' is a list, not a dict"),
    ({"architecture": ...}, "'architecture' is a NoneType, not a dict"),
    ({"normalization": "none"}, "'normalization' is a str, not a dict"),
    ({"family": 3}, "'family' is not a name"),
    ({"family": ""}, "'family' is not a name"),
    ({"role": "optimizer"}, "role 'optimizer' is none of model, training_state"),
    ({"format_version": 3}, "written by a newer napari-gan .*update napari-gan"),
    ({"format_version": "2"}, "format version 2 is not a positive whole number"),
    ({"format_version": True}, "not a positive whole number"),
    ({"networks": "generator"}, "'networks' is not a list of network names"),
    ({"networks": ["gen.erator"]}, "'networks' is not a list"),
    ({"role": "training_state"}, "description of the stored state is missing"),
    ({"format": "other"}, "safetensors file but not a napari-gan model"),
])
def test_bad_headers_are_refused(tmp_path, changes, message):
    path = _file_with(tmp_path / "bad.safetensors", _good_header(**changes))
    with pytest.raises(NapariGanError, match=message) as err:
        checkpoint.read_header(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("make, message", [
    (lambda p: _file_with(p, "[" * 100_000), "deeply nested JSON"),
    (lambda p: _file_with(p, '{"a":' * 100_000), "deeply nested JSON"),
    (lambda p: _raw_file(p, b'{"a":' + b"[" * 100_000), "deeply nested JSON"),
    (lambda p: _file_with(p, "[" * 65 + "]" * 65), "deeply nested JSON .more than 64 levels"),
    (lambda p: _file_with(p, "[" * 64 + "]" * 64), "not a napari-gan model"),      # deep, but legal
    (lambda p: _file_with(p, "[" + "[]," * 1_000_000 + "[]]"), "too many JSON arrays and objects"),
    (lambda p: _file_with(p, "{not json"), "not valid JSON"),
    (lambda p: _file_with(p, '"a string"'), "not a napari-gan model"),
    (lambda p: _raw_file(p, b"{}", length=2**62), "header claims .* more than"),
    (lambda p: _raw_file(p, b"{}" * 10, length=1000), "header claims 1000 bytes but the file holds only"),
    (lambda p: _bytes_file(p, b"abc"), "only 3 bytes long"),
    (lambda p: _bytes_file(p, pickle.dumps({"x": 1})), "not a readable napari-gan model"),
    (lambda p: _bytes_file(p, b"this is not a model file at all"), "not a readable napari-gan model"),
    (lambda p: _raw_file(p, "{\"é\": \xff}".encode("latin-1")), "header is not text"),
    (lambda p: _raw_file(p, b"[1, 2]"), "no safetensors header"),
    (lambda p: _raw_file(p, b'{"__metadata__": {"napari_gan": 5}}'), "metadata is not a map of strings"),
    (lambda p: _file_with(p, _good_header(), {"w": {"dtype": "F32", "shape": [2],
                                                    "data_offsets": [0, 8]}}, b"\0" * 4),
     "beyond the end of the file .*truncated"),
    (lambda p: _file_with(p, _good_header(), {"w": {"dtype": "F32", "shape": [3],
                                                    "data_offsets": [0, 8]}}), "does not match its shape"),
    (lambda p: _file_with(p, _good_header(), {"w": {"dtype": "F32", "shape": [2**40, 2**40],
                                                    "data_offsets": [0, 8]}}), "does not match its shape"),
    (lambda p: _file_with(p, _good_header(), {"w": {"dtype": "PY", "shape": [2],
                                                    "data_offsets": [0, 8]}}), "unknown type"),
    (lambda p: _file_with(p, _good_header(), {"w": {"dtype": "F32", "shape": [-2],
                                                    "data_offsets": [0, 8]}}), "invalid shape"),
    (lambda p: _file_with(p, _good_header(), {"w": {"dtype": "F32", "shape": [2],
                                                    "data_offsets": [8, 0]}}), "invalid data offsets"),
    (lambda p: _file_with(p, _good_header(), {"w": [1]}), "has no description"),
    (lambda p: _file_with(p, _good_header(), {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}), "overlap or leave gaps"),
    (lambda p: _file_with(p, _good_header(), data=b"\0" * 12), "4 bytes beyond its tensors"),
])
def test_hostile_files_are_refused_before_allocation(tmp_path, make, message):
    path = make(tmp_path / "hostile.safetensors")
    with pytest.raises(NapariGanError, match=message) as err:
        checkpoint.read_header(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_and_foreign_files(tmp_path):
    path = checkpoint.save_model(tmp_path / "m.safetensors", "pix2pix", {},
                                 {"generator": {"w": torch.rand(1000)}}, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NapariGanError, match="corrupt, truncated"):
        checkpoint.read_header(path)
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"),
                                metadata={"x": "y"})
    with pytest.raises(NapariGanError, match="is a safetensors file but not a napari-gan model"):
        checkpoint.read_header(tmp_path / "foreign.safetensors")
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(NapariGanError, match="not a napari-gan model"):
        checkpoint.read_header(tmp_path / "bare.safetensors")
    with pytest.raises(NapariGanError, match="does not exist"):
        checkpoint.read_header(tmp_path / "nope.safetensors")


def test_damaged_state_skeleton_is_refused(tmp_path):
    header = _good_header(role="training_state", networks=[],
                          skeleton={"__dict__": [["w", {"__tensor__": "missing"}]]})
    h = checkpoint.read_header(_file_with(tmp_path / "s.safetensors", header))
    with pytest.raises(NapariGanError, match="does not match its tensors"):
        checkpoint.load_state(h)
    header["skeleton"] = {"__dict__": [[["unhashable"], 1]]}
    h = checkpoint.read_header(_file_with(tmp_path / "s.safetensors", header))
    with pytest.raises(NapariGanError, match="does not match its tensors"):
        checkpoint.load_state(h)


def test_a_pickle_is_never_unpickled(tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(NapariGanError):
        checkpoint.read_header(path)
    with pytest.raises(NapariGanError):
        checkpoint.read_header(path, expect_role="training_state")
    assert not (tmp_path / "pwned").exists()


# ----------------------------------------------------------------------- build_checked
def test_build_checked_refuses_mismatched_weights(tmp_path):
    sd = _unet().state_dict()
    wrong = dict(sd, **{"head.weight": torch.zeros(1, 4, 3, 3)})
    with pytest.raises(NapariGanError, match=r"wrong shape for head.weight \(file \(1, 4, 3, 3\), "
                                             r"network \(1, 4, 1, 1\)\)"):
        checkpoint.build_checked(_unet, wrong, tmp_path / "m.safetensors")
    fewer = {k: v for k, v in sd.items() if k != "head.bias"}
    with pytest.raises(NapariGanError, match="missing head.bias"):
        checkpoint.build_checked(_unet, fewer, "m.safetensors")
    with pytest.raises(NapariGanError, match="unexpected extra.w"):
        checkpoint.build_checked(_unet, dict(sd, **{"extra.w": torch.zeros(1)}), "m.safetensors")
    # spectral norm's parametrisation state must be there too
    d = _patchgan().state_dict()
    with pytest.raises(NapariGanError, match="missing net.0.parametrizations.weight.0._u"):
        checkpoint.build_checked(_patchgan, {k: v for k, v in d.items() if not k.endswith("_u")}, "d")


def test_build_checked_refuses_absurd_sizes_without_allocating(tmp_path):
    import time

    start = time.perf_counter()
    with pytest.raises(NapariGanError, match=r"describes a network of [\d,.]+ GiB, more than"):
        checkpoint.build_checked(lambda: UNetGenerator(1, 1, depth=3, width=10_000_000), {},
                                 tmp_path / "huge.safetensors")
    assert time.perf_counter() - start < 3
    with pytest.raises(NapariGanError, match="more than"):
        checkpoint.build_checked(_unet, _unet().state_dict(), "m", max_bytes=1000)
    assert checkpoint.default_max_bytes() <= 8 * 1024**3


def test_build_checked_reports_unbuildable_networks():
    with pytest.raises(NapariGanError, match=r"cannot be built \(scale must be 1, 2 or 4\)"):
        checkpoint.build_checked(lambda: UNetGenerator(scale=3), {}, "m.safetensors")


# ---------------------------------------------------------------------- atomic saving
@pytest.mark.parametrize("save", [
    lambda p, w: checkpoint.save_model(p, "pix2pix", {}, {"generator": {"w": w}}, {}),
    lambda p, w: checkpoint.save_state(p, "pix2pix", {}, {}, {"w": w}),
])
def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch, save):
    path = save(tmp_path / "m.safetensors", torch.ones(3))
    before = path.read_bytes()

    def dies(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", dies)
    monkeypatch.setattr(safetensors.torch, "save_file", dies)
    with pytest.raises(NapariGanError, match="No space left"):
        save(path, torch.zeros(3))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind


# --------------------------------------------------- run folders, empty files, load_weights
def test_run_folders_resolve_to_their_model(tmp_path):
    g = _unet()
    path = checkpoint.save_model(tmp_path / checkpoint.MODEL_FILENAME, "pix2pix", {"depth": 2},
                                 {"generator": g}, NORM, step=3, metrics={})
    h = checkpoint.read_header(tmp_path, expect_role="model")       # folder -> model.safetensors
    assert h.path == path and (h.family, h.role, h.step) == ("pix2pix", "model", 3)
    assert h.architecture == {"depth": 2} and h.normalization == NORM
    last_only = tmp_path / "last_only"
    last = checkpoint.save_model(last_only / checkpoint.LAST_FILENAME, "pix2pix", {}, {"generator": g}, {})
    assert checkpoint.read_header(last_only).path == last == checkpoint.resolve_model_path(last_only)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(NapariGanError, match="holds no napari-gan model"):
        checkpoint.read_header(tmp_path / "empty_dir")
    with pytest.raises(NapariGanError, match="holds no training state"):
        checkpoint.read_header(tmp_path / "empty_dir", expect_role="training_state")


def test_load_weights_reports_a_network_that_does_not_fit(tmp_path):
    path = checkpoint.save_model(tmp_path / "m.safetensors", "pix2pix", {}, {"generator": _unet()}, {})
    sd = checkpoint.load_networks(checkpoint.read_header(path), ["generator"])["generator"]
    checkpoint.load_weights(_unet(), sd, path)
    with pytest.raises(NapariGanError, match="do not fit"):
        checkpoint.load_weights(UNetGenerator(1, 1, depth=3, width=4), sd, path)


def test_empty_states_and_models_round_trip(tmp_path):
    checkpoint.save_state(tmp_path / "empty.safetensors", "stylegan2", {}, {}, {})
    h = checkpoint.read_header(tmp_path / "empty.safetensors", expect_role="training_state")
    assert h.networks == [] and checkpoint.load_state(h) == {}
    checkpoint.save_model(tmp_path / "empty_model.safetensors", "stylegan2", {}, {}, {})
    h = checkpoint.read_header(tmp_path / "empty_model.safetensors", expect_role="model")
    assert h.networks == [] and checkpoint.load_state(h) == {}


def test_a_model_file_is_read_once_per_use(tmp_path, monkeypatch):
    """predict reads the header once and the weights once (not three times, as before)."""
    import tifffile

    from napari_gan.cli import main
    from tests.core.conftest import smooth_image

    image = smooth_image((48, 48)).astype(np.float32)
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "b.tif", image + 1)
    assert main(["train", "pix2pix", "--input", str(tmp_path / "a.tif"), "--target", str(tmp_path / "b.tif"),
                 "--out", str(tmp_path / "run"), "--steps", "1", "--patch", "32", "--batch", "2", "--width", "4",
                 "--depth", "2", "--disc-width", "4", "--quiet"]) == 0
    calls = {"header": 0, "weights": 0}
    read_header, load_networks = checkpoint.read_header, checkpoint.load_networks

    def counted_header(*args, **kwargs):
        calls["header"] += 1
        return read_header(*args, **kwargs)

    def counted_weights(*args, **kwargs):
        calls["weights"] += 1
        return load_networks(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "read_header", counted_header)
    monkeypatch.setattr(checkpoint, "load_networks", counted_weights)
    assert main(["predict", "--model", str(tmp_path / "run"), "--input", str(tmp_path / "a.tif"),
                 "--output", str(tmp_path / "out.tif")]) == 0
    assert calls == {"header": 1, "weights": 1}
