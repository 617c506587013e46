"""Class-conditional StyleGAN2: networks, class storage in model files, generation of a chosen
class, and the ``train stylegan2 --classes`` / ``generate --class`` commands.

Everything runs at 16x16 with a few feature maps and a few steps.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
import torch

from napari_gan.cli import main
from napari_gan.core import checkpoint, families
from napari_gan.core.errors import NapariGanError
from napari_gan.core.families.stylegan2 import ClassedImages, StyleGAN2Config, read_class_csv
from napari_gan.core.generation import load_generator
from napari_gan.core.models.stylegan2 import Discriminator, Generator
from napari_gan.core.training.base import Budget
from tests.core.test_stylegan2 import TINY_ARGS, blobs

CPU = torch.device("cpu")
TINY = dict(resolution=16, channel_base=128, channel_max=16, z_dim=16, w_dim=16, batch=4, eval_images=8)


@pytest.fixture(autouse=True)
def one_thread(_few_threads):
    """One thread (after conftest's two): tiny networks on a busy 2-core machine run fastest so."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def class_folders(root, n_classes: int = 2):
    """One sub-folder per class: 'bright' blobs and 'dim' ones (a quarter of the intensity)."""
    for k, name in enumerate(["bright", "dim", "other"][:n_classes]):
        folder = root / name
        folder.mkdir(parents=True)
        stack = blobs(2, 32, seed=k)
        tifffile.imwrite(folder / f"{name}.tif", stack if k == 0 else (stack // (4 * k)).astype(np.uint16))
    return root


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    images = class_folders(tmp_path_factory.mktemp("classes") / "images")
    out = tmp_path_factory.mktemp("run") / "run"
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["train", "stylegan2", "--images", str(images), "--classes", "--out", str(out), "--steps",
                     "2", "--val-every", "2", *TINY_ARGS]) == 0
    finally:
        torch.set_num_threads(previous)
    return out


# ------------------------------------------------------------------------ networks
def test_conditional_network_shapes():
    torch.manual_seed(0)
    G = Generator(8, 8, 16, 1, 2, channel_base=64, channel_max=8, c_dim=3)
    D = Discriminator(16, 1, channel_base=64, channel_max=8, c_dim=3)
    z, c = torch.randn(4, 8), torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0]), 3).float()
    with torch.no_grad():
        img = G(z, noise_mode="const", c=c)
        assert img.shape == (4, 1, 16, 16)
        assert G.mapping(z, c=c).shape == (4, G.num_ws, 8)
        logits = D(img, c)
        assert logits.shape == (4, 1)
        other = torch.nn.functional.one_hot(torch.tensor([1, 2, 0, 1]), 3).float()
        assert not torch.allclose(G(z, noise_mode="const", c=other), img)      # the class matters
        assert not torch.allclose(D(img, other), logits)
    with pytest.raises(ValueError, match="needs class labels"):
        G(z)
    with pytest.raises(ValueError, match="shape \\(4, 3\\)"):
        D(img, c[:, :2])
    with pytest.raises(ValueError, match="unconditional"):
        Generator(8, 8, 16, 1, 2, channel_base=64, channel_max=8)(z, c=c)


def test_unconditional_networks_keep_their_keys():
    G0 = Generator(8, 8, 16, 1, 2, channel_base=64, channel_max=8)
    Gc = Generator(8, 8, 16, 1, 2, channel_base=64, channel_max=8, c_dim=2)
    D0 = Discriminator(16, 1, channel_base=64, channel_max=8)
    Dc = Discriminator(16, 1, channel_base=64, channel_max=8, c_dim=2)
    g0, gc, d0, dc = (net.state_dict() for net in (G0, Gc, D0, Dc))
    assert not any("embed" in k or "cmap" in k for k in list(g0) + list(d0))
    assert set(gc) - set(g0) == {"mapping.embed.weight", "mapping.embed.bias"} and set(g0) <= set(gc)
    assert g0["mapping.layers.0.weight"].shape == (8, 8) and gc["mapping.layers.0.weight"].shape == (8, 16)
    assert set(d0) <= set(dc) and all(k.startswith("cmap.") for k in set(dc) - set(d0))
    assert d0["out.weight"].shape == (1, 8) and dc["out.weight"].shape == (8, 8)


# ------------------------------------------------------------------------ training
def test_class_storage_round_trip_and_unconditional_header(conditional_run, tmp_path):
    header = checkpoint.read_header(conditional_run / checkpoint.MODEL_FILENAME)
    assert header.architecture["c_dim"] == 2 and header.architecture["class_names"] == ["bright", "dim"]
    assert "classes bright, dim" in families.for_header(header).describe(header)
    gen = load_generator(conditional_run, "cpu")
    assert gen.class_names == ["bright", "dim"] and gen.c_dim == 2
    # resuming keeps the classes, and refuses images of other classes
    run = tmp_path / "run"
    shutil.copytree(conditional_run, run)
    (run / ".napari-gan.lock").unlink(missing_ok=True)
    other = class_folders(tmp_path / "other", n_classes=3)
    assert main(["train", "stylegan2", "--images", str(other), "--out", str(run), "--resume", "--steps", "3",
                 *TINY_ARGS]) == 2
    assert main(["train", "stylegan2", "--images", str(class_folders(tmp_path / "images")), "--out", str(run),
                 "--resume", "--steps", "3", "--val-every", "3", *TINY_ARGS]) == 0
    assert load_generator(run, "cpu").class_names == ["bright", "dim"]
    arch, _ = families.get("stylegan2").split_config(StyleGAN2Config(**TINY))
    assert "c_dim" not in arch and "class_names" not in arch


def test_generation_per_class_is_deterministic(conditional_run):
    gen = load_generator(conditional_run, "cpu")
    a = gen.generate(3, seed=4, class_name="dim")
    assert a.shape == (3, 16, 16)
    assert np.array_equal(a, gen.generate(3, seed=4, class_name="dim"))
    assert np.array_equal(a, load_generator(conditional_run, "cpu").generate(3, seed=4, class_name="dim"))
    assert not np.allclose(a, gen.generate(3, seed=4, class_name="bright"))
    assert not np.allclose(a, gen.generate(3, seed=5, class_name="dim"))
    # no class: an equal mix, image i of class i mod 2
    mixed = gen.generate(4, seed=4)
    z = gen.latents(4, seed=4)
    assert np.allclose(mixed[1], gen.generate_from_latents(z[1:2], class_name="dim")[0], rtol=1e-4, atol=1e-3)
    assert np.allclose(mixed[2], gen.generate_from_latents(z[2:3], class_name="bright")[0], rtol=1e-4, atol=1e-3)
    assert np.array_equal(gen.class_indices(3, ["dim", "bright", "dim"]), [1, 0, 1])
    # truncation pulls towards the class's own average
    typical = gen.generate(2, seed=4, truncation=0.0, class_name="dim")
    assert np.allclose(typical[0], typical[1], atol=1e-4)
    with pytest.raises(NapariGanError, match="Unknown class 'nope'; this model knows 2 classes: bright, dim"):
        gen.generate(1, class_name="nope")
    with pytest.raises(NapariGanError, match="shows one class"):
        gen.interpolate(1, 2, frames=3)
    assert gen.interpolate(1, 2, frames=3, class_name="bright").shape == (3, 16, 16)


def test_unconditional_models_refuse_a_class(tmp_path):
    images = tmp_path / "stack.tif"
    tifffile.imwrite(images, blobs(3))
    family = families.get("stylegan2")
    data = family.read_input(family.inputs[0], images, lambda f: [p[None] for p in tifffile.imread(f)])
    cfg = family.make_config(TINY, CPU)
    trainer = family.make_trainer(cfg, {"images": data}, tmp_path / "run", Budget(steps=1), CPU, 0, None)
    assert trainer.c_dim == 0 and cfg.c_dim == 0
    from napari_gan.core.generation import ImageGenerator

    gen = ImageGenerator(trainer.G_ema, trainer.data.norm, CPU, cfg.to_dict())
    with pytest.raises(NapariGanError, match="is not class-conditional"):
        gen.generate(1, class_name="dim")


def test_classes_from_a_csv_file(tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    for name, k in (("a.tif", 0), ("b.tif", 1), ("c.tif", 2)):
        tifffile.imwrite(folder / name, blobs(2, 32, seed=k))
    csv = tmp_path / "labels.csv"
    csv.write_text("file,class\na.tif,round\n# a comment\nsub/b.tif,long\nc.tif,round\n")
    assert read_class_csv(csv) == {"a.tif": "round", "b.tif": "long", "c.tif": "round"}
    family = families.get("stylegan2")
    data = family.read_input(family.inputs[0], folder, lambda f: [p[None] for p in tifffile.imread(f)])
    assert isinstance(data, ClassedImages) and len(data.files) == 6 and data.classes == []
    cfg = family.make_config({**TINY, "labels": str(csv)}, CPU)
    assert cfg.classes
    trainer = family.make_trainer(cfg, {"images": data}, tmp_path / "run", Budget(steps=1), CPU, 0, None)
    assert cfg.class_names == ["long", "round"] and trainer.data.classes == [1, 1, 0, 0, 1, 1]
    csv.write_text("a.tif,round\n")
    with pytest.raises(NapariGanError, match=r"2 training image\(s\) have no class .*'b.tif', 'c.tif'"):
        family.make_trainer(family.make_config({**TINY, "labels": str(csv)}, CPU), {"images": data},
                            tmp_path / "run2", Budget(steps=1), CPU, 0, None)


# ------------------------------------------------------------------------ command line
def test_cli_generate_class(conditional_run, tmp_path, capsys):
    out = tmp_path / "dim.tif"
    assert main(["generate", "--model", str(conditional_run), "--output", str(out), "--n", "3", "--seed", "2",
                 "--class", "dim"]) == 0
    images = tifffile.imread(out)
    assert images.shape == (3, 16, 16)
    np.testing.assert_allclose(images, load_generator(conditional_run, "cpu").generate(3, seed=2, class_name="dim"),
                               rtol=1e-6, atol=1e-4)
    capsys.readouterr()
    assert main(["generate", "--model", str(conditional_run), "--output", str(tmp_path / "x.tif"),
                 "--class", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Unknown class 'nope'; this model knows 2 classes: bright, dim." in err


def test_cli_classes_need_class_folders(tmp_path, capsys):
    stack = tmp_path / "flat"
    stack.mkdir()
    tifffile.imwrite(stack / "s.tif", blobs(3))
    assert main(["train", "stylegan2", "--images", str(stack), "--classes", "--out", str(tmp_path / "r"),
                 "--steps", "1", *TINY_ARGS]) == 2
    assert "own sub-folder of --images" in capsys.readouterr().err
    one = class_folders(tmp_path / "one", n_classes=1)
    assert main(["train", "stylegan2", "--images", str(one), "--classes", "--out", str(tmp_path / "r"),
                 "--steps", "1", *TINY_ARGS]) == 2
    assert "at least 2 classes" in capsys.readouterr().err
