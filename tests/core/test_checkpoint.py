import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_gan.core import checkpoint
from napari_gan.core.errors import NapariGanError
from napari_gan.core.models.unet import UNetGenerator


def test_round_trip_is_bit_exact_with_nested_state(tmp_path):
    g = UNetGenerator(1, 1, depth=2, width=4)
    opt = torch.optim.Adam(g.parameters())
    g(torch.rand(1, 1, 16, 16)).mean().backward()
    opt.step()
    state = {"generator": g.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state(),
             "np_rng": np.random.default_rng(5).bit_generator.state, "tuple": (1, 2.5, None, "x")}
    path = checkpoint.save(tmp_path / "m.safetensors", "pix2pix", "model", {"depth": 2}, state,
                           normalization={"input": {"low": [0.0]}})
    loaded = checkpoint.load(path, expect_kind="pix2pix")
    assert loaded.kind == "pix2pix" and loaded.config == {"depth": 2}
    assert loaded.normalization == {"input": {"low": [0.0]}}
    for k, v in g.state_dict().items():
        assert torch.equal(v, loaded.state["generator"][k])
    assert loaded.state["opt"]["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(loaded.state["opt"]["state"]) == set(opt.state_dict()["state"])  # int keys kept
    assert torch.equal(loaded.state["rng"], torch.get_rng_state()) or loaded.state["rng"].dtype == torch.uint8
    assert loaded.state["np_rng"] == np.random.default_rng(5).bit_generator.state
    assert loaded.state["tuple"] == (1, 2.5, None, "x")


def test_folder_resolves_to_best_model(tmp_path):
    checkpoint.save(tmp_path / "model.safetensors", "pix2pix", "model", {}, {})
    assert checkpoint.load(tmp_path).path.name == "model.safetensors"
    with pytest.raises(NapariGanError, match="holds no napari-gan model"):
        checkpoint.load(tmp_path / "..")


def test_missing_file(tmp_path):
    with pytest.raises(NapariGanError, match="does not exist"):
        checkpoint.load(tmp_path / "nope.safetensors")


def test_truncated_file_is_reported(tmp_path):
    path = checkpoint.save(tmp_path / "m.safetensors", "pix2pix", "model", {},
                           {"w": torch.rand(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NapariGanError, match="corrupt, truncated"):
        checkpoint.load(path)


def test_foreign_safetensors_and_random_bytes_are_reported(tmp_path):
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"), metadata={"x": "y"})
    with pytest.raises(NapariGanError, match="not a napari-gan model"):
        checkpoint.load(tmp_path / "foreign.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(NapariGanError, match="not a readable"):
        checkpoint.load(tmp_path / "junk.safetensors")


class Boom:
    def __reduce__(self):
        return (open, ("/tmp/napari_gan_pwned", "w"))


def test_a_pickle_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(NapariGanError):
        checkpoint.load(path)
    import os

    assert not os.path.exists("/tmp/napari_gan_pwned")


def test_newer_format_version_is_refused(tmp_path):
    header = {"format": "napari-gan", "format_version": 99, "kind": "pix2pix", "role": "model",
              "skeleton": {"__dict__": []}}
    save_file({"w": torch.zeros(1)}, str(tmp_path / "new.safetensors"),
              metadata={"napari_gan": json.dumps(header)})
    with pytest.raises(NapariGanError, match="newer"):
        checkpoint.load(tmp_path / "new.safetensors")


def test_interrupted_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = checkpoint.save(tmp_path / "m.safetensors", "pix2pix", "model", {"v": 1}, {"w": torch.ones(3)})
    before = path.read_bytes()

    def dies(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", dies)
    with pytest.raises(NapariGanError, match="No space left"):
        checkpoint.save(path, "pix2pix", "model", {"v": 2}, {"w": torch.zeros(3)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind
