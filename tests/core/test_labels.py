"""Images from label masks: label encoding, synthetic masks, Pix2Pix task "labels" (training,
prediction) and the ``train --task labels`` / ``predict`` / ``synthesize`` commands.

Tiny networks and a few steps: the file takes seconds on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_gan.cli import main
from napari_gan.core import checkpoint, families
from napari_gan.core.errors import NapariGanError
from napari_gan.core.families import Images, open_model
from napari_gan.core.labels import (channel_names, encode_labels, encoded_channels, instance_boundaries,
                                    synthetic_masks)
from napari_gan.core.training.base import Budget

CPU = torch.device("cpu")
TINY = dict(depth=2, width=8, disc_width=8, disc_layers=2, patch=32, batch=2)
TINY_ARGS = ["--depth", "2", "--width", "8", "--disc-width", "8", "--disc-layers", "2", "--patch", "32",
             "--batch", "2", "--quiet"]


@pytest.fixture(autouse=True)
def one_thread(_few_threads):
    """One thread (after conftest's two): tiny networks on a busy 2-core machine run fastest so."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def cells(seed: int = 0, size: int = 48) -> np.ndarray:
    """An instance label image: three rectangles, two of them touching."""
    lab = np.zeros((size, size), np.uint16)
    lab[5:15, 5:15] = 11
    lab[5:15, 15:22] = 4        # touches 11 along a column
    lab[28:40, 25:40] = 9
    return np.roll(lab, seed, axis=1)


def image_of(mask: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (100 + 500 * (mask > 0) + rng.normal(0, 10, mask.shape)).astype(np.float32)


# ----------------------------------------------------------------------------- encoding
def test_encoding_channels_and_values():
    lab = cells()
    enc = encode_labels(lab)
    assert enc.shape == (4, 48, 48) and enc.dtype == np.float32
    assert channel_names() == ["background", "objects", "boundaries", "distance"]
    assert np.array_equal(enc[0] + enc[1], np.ones((48, 48)))           # one-hot
    assert np.array_equal(enc[1] > 0, lab > 0)
    assert enc.min() >= 0 and enc.max() <= 1
    assert encode_labels(lab, distance=False).shape == (3, 48, 48) == (encoded_channels(0, False), 48, 48)
    # the raw ids do not matter: relabelling gives the same encoding
    relabelled = np.select([lab == 11, lab == 4, lab == 9], [1, 2, 3], 0)
    assert np.array_equal(encode_labels(relabelled), enc)


def test_boundaries_separate_touching_objects_and_distance_peaks_inside():
    lab = cells()
    enc = encode_labels(lab)
    edges, dist = enc[2], enc[3]
    assert edges[10, 14] == 1 and edges[10, 15] == 1      # both sides of the contact between 11 and 4
    assert edges[10, 10] == 0 and edges[20, 20] == 0       # inside an object, background
    assert np.array_equal(instance_boundaries(lab) > 0, edges > 0)
    assert (dist[edges > 0] == 0).all() and (dist[lab == 0] == 0).all()
    for i in (11, 4, 9):                                   # per object, 1 at its centre
        assert dist[lab == i].max() == pytest.approx(1.0)
    # touching objects merged into one id lose the boundary between them
    merged = np.where(lab == 4, 11, lab)
    assert encode_labels(merged)[2][10, 14] == 0


def test_objects_at_the_image_border_have_no_border_edge():
    lab = np.zeros((16, 16), np.int32)
    lab[:, :8] = 1
    edges = encode_labels(lab)[2]
    assert edges[:, 7].all() and not edges[:, :7].any()


def test_semantic_classes():
    lab = np.zeros((32, 32), np.uint8)
    lab[2:10, 2:10] = 1
    lab[2:10, 10:18] = 2        # another class, touching
    lab[20:30, 20:30] = 1
    enc = encode_labels(lab, classes=2)
    assert enc.shape == (5, 32, 32) and channel_names(2)[1:3] == ["class 1", "class 2"]
    assert np.array_equal(enc[1] > 0, lab == 1) and np.array_equal(enc[2] > 0, lab == 2)
    assert enc[3][5, 9] == 1 and enc[3][5, 10] == 1
    with pytest.raises(NapariGanError, match=r"holds id 2 but the model knows the classes 1\.\.1"):
        encode_labels(lab, classes=1)


@pytest.mark.parametrize("bad,message", [
    (np.zeros((16, 16), np.uint16), "has no objects"),
    (np.full((16, 16), 0.5, np.float32), "fractional values"),
    (np.full((16, 16), -1, np.int16), "negative ids"),
    (np.zeros((2, 16, 16), np.uint16), "a label image is 2-D"),
])
def test_not_label_images_are_refused(bad, message):
    with pytest.raises(NapariGanError, match=message):
        encode_labels(bad, name="'masks.tif'")


def test_whole_number_floats_and_booleans_are_labels():
    lab = cells()
    assert np.array_equal(encode_labels(lab.astype(np.float32)), encode_labels(lab))
    assert np.array_equal(encode_labels(lab > 0)[:2], encode_labels(lab)[:2])


# -------------------------------------------------------------------------- synthetic
def test_synthetic_masks_place_transformed_objects():
    lab = cells()
    masks = synthetic_masks([lab, cells(7)], 4, (64, 80), np.random.default_rng(0))
    assert len(masks) == 4
    sizes = []
    for m in masks:
        assert m.shape == (64, 80) and m.dtype == np.uint16
        ids = np.unique(m[m > 0])
        assert np.array_equal(ids, np.arange(1, len(ids) + 1))   # one id per object
        sizes += [np.count_nonzero(m == i) for i in ids]
    # objects keep about their size (rotated, deformed, maybe cut by the canvas border)
    assert 20 < np.median(sizes) < 300
    again = synthetic_masks([lab, cells(7)], 4, (64, 80), np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(masks, again))
    assert synthetic_masks([lab], 1, rng=np.random.default_rng(1))[0].shape == lab.shape


def test_synthetic_masks_keep_semantic_classes_and_refuse_empty_sets():
    lab = np.zeros((32, 32), np.uint8)
    lab[2:10, 2:10] = 1
    lab[15:25, 15:28] = 2
    for m in synthetic_masks([lab], 3, (48, 48), np.random.default_rng(2), classes=2):
        assert set(np.unique(m)) <= {0, 1, 2} and m.any()
    with pytest.raises(NapariGanError, match="have no objects"):
        synthetic_masks([np.zeros((16, 16), np.uint8)], 2)


# --------------------------------------------------------------------- Pix2Pix labels
def _data(n: int = 3):
    masks = [cells(5 * i) for i in range(n)]
    return (Images([m[None] for m in masks], [f"'m{i}.tif'" for i in range(n)]),
            Images([image_of(m, i)[None] for i, m in enumerate(masks)], [f"'m{i}.tif'" for i in range(n)]))


def test_labels_model_trains_on_encoded_masks_and_predicts_from_label_images(tmp_path):
    family = families.get("pix2pix")
    cfg = family.make_config(dict(task="labels", **TINY), CPU)
    masks, images = _data()
    trainer = family.make_trainer(cfg, {"input": masks, "target": images}, tmp_path / "run", Budget(steps=2),
                                  CPU, 0, None, val_every=2)
    assert trainer.data.inputs[0].shape == (4, 48, 48)
    assert trainer.data.input_norm.low == [0.0] * 4 and trainer.data.input_norm.high == [1.0] * 4
    for _ in trainer.run():
        pass
    header = checkpoint.read_header(tmp_path / "run" / checkpoint.MODEL_FILENAME)
    assert header.architecture["task"] == "labels" and header.architecture["in_channels"] == 4
    assert header.architecture["label_classes"] == 0 and header.architecture["label_distance"] is True
    fam, header, predictor = open_model(tmp_path / "run", "image", "cpu")
    assert predictor.in_channels == 1 and predictor.encoded_channels == 4
    assert "label images (instance labels)" in fam.describe(header)
    out = predictor.predict(cells(3))
    assert out.shape == (48, 48) and out.dtype == np.float32 and np.isfinite(out).all()
    with pytest.raises(NapariGanError, match="'empty.tif' has no objects"):
        predictor.predict(np.zeros((48, 48), np.uint16), name="'empty.tif'")


def test_other_tasks_keep_their_header():
    family = families.get("pix2pix")
    arch, training = family.split_config(family.make_config(dict(TINY), CPU))
    assert not {"label_classes", "label_distance"} & (set(arch) | set(training))


def test_label_data_sets_are_checked():
    family = families.get("pix2pix")
    cfg = family.make_config(dict(task="labels", **TINY), CPU)
    masks, images = _data()
    masks.planes[1] = np.zeros((1, 48, 48), np.uint16)
    with pytest.raises(NapariGanError, match="'m1.tif' has no objects"):
        family.make_trainer(cfg, {"input": masks, "target": images}, "unused", Budget(steps=1), CPU, 0, None)
    masks, images = _data()
    masks.planes[2] = cells()[None, :40]
    with pytest.raises(NapariGanError, match="'m2.tif' is 40x48 pixels but its image is 48x48"):
        family.make_trainer(cfg, {"input": masks, "target": images}, "unused", Budget(steps=1), CPU, 0, None)
    with pytest.raises(NapariGanError, match="the scale must be 1"):
        family.make_config(dict(task="labels", scale=2, **TINY), CPU)


# ------------------------------------------------------------------------ command line
def test_cli_train_labels_predict_and_synthesize(tmp_path, capsys):
    for folder in ("masks", "images"):
        (tmp_path / folder).mkdir()
    for i in range(3):
        tifffile.imwrite(tmp_path / "masks" / f"m{i}.tif", cells(5 * i))
        tifffile.imwrite(tmp_path / "images" / f"m{i}.tif", image_of(cells(5 * i), i))
    run = tmp_path / "run"
    assert main(["train", "pix2pix", "--task", "labels", "--input", str(tmp_path / "masks"), "--target",
                 str(tmp_path / "images"), "--out", str(run), "--steps", "2", "--val-every", "2", *TINY_ARGS]) == 0
    assert "images from labels" in capsys.readouterr().out
    assert main(["predict", "--model", str(run), "--input", str(tmp_path / "masks" / "m1.tif"),
                 "--output", str(tmp_path / "pred.tif")]) == 0
    pred = tifffile.imread(tmp_path / "pred.tif")
    assert pred.shape == (48, 48) and pred.dtype == np.float32

    out = tmp_path / "synth"
    assert main(["synthesize", "--model", str(run), "--masks", str(tmp_path / "masks"), "--n", "2",
                 "--output", str(out), "--seed", "3"]) == 0
    names = ["synthetic_0001.tif", "synthetic_0002.tif"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == names
    assert sorted(p.name for p in (out / "images").iterdir()) == names
    mask, image = tifffile.imread(out / "masks" / names[0]), tifffile.imread(out / "images" / names[0])
    assert mask.dtype == np.uint16 and mask.shape == (48, 48) and mask.max() >= 1
    assert image.dtype == np.float32 and image.shape == (48, 48) and np.isfinite(image).all()

    capsys.readouterr()
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((48, 48), np.uint16))
    assert main(["predict", "--model", str(run), "--input", str(tmp_path / "empty.tif"),
                 "--output", str(tmp_path / "e.tif")]) == 2
    assert "empty.tif has no objects" in capsys.readouterr().err
    # synthesize needs a labels model
    denoise = Path(__file__).resolve().parents[1] / "data" / "format1" / "pix2pix_denoise_v1.safetensors"
    assert main(["synthesize", "--model", str(denoise), "--masks", str(tmp_path / "masks"), "--n", "1",
                 "--output", str(tmp_path / "s2")]) == 2
    assert "trained with --task labels" in capsys.readouterr().err
