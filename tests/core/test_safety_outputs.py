"""Inputs and models are never written to: predict, generate and demo refuse an output that
is, or would replace, an input, a model file, a training state or a file napari-gan did not
write, and an output name their writers do not write; the user's files stay byte-identical."""

import os

import numpy as np
import pytest
import tifffile

from tests.core.safety_common import assert_one_error, hashes, run_cli, shared_runs


@pytest.fixture
def runs(tmp_path_factory):
    return shared_runs(tmp_path_factory)


def test_predict_never_writes_over_its_inputs(runs, tmp_path, capsys, monkeypatch):
    cells = tmp_path / "cells"
    cells.mkdir()
    for f in runs["in"].iterdir():
        (cells / f.name).write_bytes(f.read_bytes())
    (tmp_path / "elsewhere").mkdir()
    os.symlink(cells / "f0.tif", tmp_path / "elsewhere" / "link.tif")
    before = hashes(cells, runs["run"])
    model = runs["run"]
    cases = [
        (cells, cells),                                        # a folder into itself
        (cells / "f1.tif", cells),                             # a file into its own folder
        (cells / "f0.tif", cells / "f0.tif"),                  # a file onto itself
        (cells / "f0.tif", tmp_path / "cells" / ".." / "cells" / "f0.tif"),
        (cells / "f0.tif", tmp_path / "elsewhere" / "link.tif"),   # a link to the input
    ]
    for inputs, output in cases:
        code, out, err = run_cli(capsys, "predict", "--model", model, "--input", inputs, "--output", output)
        assert_one_error(code, err, "would replace the input image", "never writes over")
    monkeypatch.chdir(cells)                                   # "--output ." next to the input
    code, out, err = run_cli(capsys, "predict", "--model", model, "--input", ".", "--output", ".")
    assert_one_error(code, err, "would replace the input image")
    code, out, err = run_cli(capsys, "predict", "--model", model, "--input", "f0.tif", "--output", ".")
    assert_one_error(code, err, "would replace the input image")
    assert hashes(cells, runs["run"]) == before
    assert sorted(p.name for p in cells.iterdir()) == ["f0.tif", "f1.tif"]


def test_predict_never_writes_over_a_model(runs, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for f in runs["run"].iterdir():
        (run / f.name).write_bytes(f.read_bytes())
    (tmp_path / "model.tif").write_bytes((run / "model.safetensors").read_bytes())  # a model with a TIFF name
    before = hashes(run, tmp_path / "model.tif")
    image = runs["in"] / "f0.tif"
    for output, message in [(run / "model.safetensors", "must be a TIFF file name"),
                            (run / "training_state.safetensors", "must be a TIFF file name"),
                            (run / "last.safetensors", "must be a TIFF file name"),
                            (tmp_path / "model.tif", "would replace the model file")]:
        model = tmp_path / "model.tif" if output.name == "model.tif" else run
        code, out, err = run_cli(capsys, "predict", "--model", model, "--input", image, "--output", output)
        assert_one_error(code, err, message)
    assert hashes(run, tmp_path / "model.tif") == before


def test_outputs_need_a_suffix_their_writer_writes(runs, tmp_path, capsys):
    image = runs["in"] / "f0.tif"
    code, _, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", image, "--output", tmp_path / "o.png")
    assert_one_error(code, err, "must be a TIFF file name", ".tif")
    code, _, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", runs["in"],
                           "--output", tmp_path / "o.tif")
    assert_one_error(code, err, "--output must be a folder too")
    code, _, err = run_cli(capsys, "generate", "--model", runs["sg"], "--output", tmp_path / "g.png")
    assert_one_error(code, err, "must be a TIFF file name")
    code, _, err = run_cli(capsys, "generate", "--model", runs["sg"], "--output", tmp_path / "g.tif",
                           "--save-latents", tmp_path / "z.txt")
    assert_one_error(code, err, "--save-latents", ".npy")
    assert list(tmp_path.iterdir()) == []


def test_files_napari_gan_did_not_write_are_never_replaced(runs, tmp_path, capsys):
    image = runs["in"] / "f0.tif"
    mine = tmp_path / "precious.tif"
    tifffile.imwrite(mine, np.arange(64, dtype=np.uint16).reshape(8, 8))
    notes = tmp_path / "notes.npy"
    np.save(notes, np.arange(5))
    before = hashes(mine, notes)
    code, _, err = run_cli(capsys, "predict", "--model", runs["run"], "--input", image, "--output", mine)
    assert_one_error(code, err, "was not written by napari-gan", "never replaced")
    code, _, err = run_cli(capsys, "generate", "--model", runs["sg"], "--output", mine)
    assert_one_error(code, err, "was not written by napari-gan")
    code, _, err = run_cli(capsys, "generate", "--model", runs["sg"], "--output", tmp_path / "g.tif",
                           "--save-latents", notes)
    assert_one_error(code, err, "--save-latents", "not written by napari-gan")
    assert hashes(mine, notes) == before
    # napari-gan's own outputs may be written again (a repeated command)
    for _ in range(2):
        assert run_cli(capsys, "predict", "--model", runs["run"], "--input", image, "--output", tmp_path / "p.tif")[0] == 0
        assert run_cli(capsys, "generate", "--model", runs["sg"], "--n", "2", "--output", tmp_path / "g.tif",
                       "--save-latents", tmp_path / "z.npy")[0] == 0


def test_generate_never_writes_over_its_model_or_latents(runs, tmp_path, capsys):
    sg = runs["sg"]
    z = tmp_path / "z.npy"
    assert run_cli(capsys, "generate", "--model", sg, "--n", "2", "--output", tmp_path / "g.tif",
                   "--save-latents", z)[0] == 0
    as_tif = tmp_path / "gen_model.tif"
    as_tif.write_bytes((sg / "model.safetensors").read_bytes())
    before = hashes(sg, z, as_tif)
    code, _, err = run_cli(capsys, "generate", "--model", as_tif, "--output", as_tif)
    assert_one_error(code, err, "would replace the model file")
    code, _, err = run_cli(capsys, "generate", "--model", sg, "--latents", z, "--output", tmp_path / "h.tif",
                           "--save-latents", z)
    assert_one_error(code, err, "would replace the latent vectors given with --latents")
    code, _, err = run_cli(capsys, "generate", "--model", sg / "model.safetensors",
                           "--output", sg / "model.safetensors")
    assert_one_error(code, err, "must be a TIFF file name")
    assert hashes(sg, z, as_tif) == before
    assert not (tmp_path / "h.tif").exists()


def test_demo_never_replaces_files_in_its_folder(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "noisy.tif").write_bytes(b"the user's own file, not a TIFF at all")
    (out / "demo.png").write_bytes(b"and another one")
    before = hashes(out)
    code, stdout, err = run_cli(capsys, "demo", "--out", out, "--steps", "1")
    assert code == 0, err
    assert hashes(out / "noisy.tif", out / "demo.png") == before
    assert "already holds files; writing this demo to" in stdout
    new = out / "demo-1"
    for name in ("noisy.tif", "clean.tif", "denoised.tif", "demo.png", "model/model.safetensors"):
        assert (new / name).is_file(), name
    code, _, err = run_cli(capsys, "demo", "--out", out / "noisy.tif", "--steps", "1")
    assert_one_error(code, err, "is a file")
    assert hashes(out / "noisy.tif", out / "demo.png") == before
