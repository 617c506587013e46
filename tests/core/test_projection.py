"""Projection of real images into a StyleGAN2 generator's W space: the weight-free loss, the
recovery of generated images, latents that reproduce the reconstruction, and ``napari-gan
project``. A tiny untrained generator (16x16) keeps the file to seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_gan.cli import main
from napari_gan.core import checkpoint, families
from napari_gan.core.errors import NapariGanError
from napari_gan.core.families.stylegan2 import StyleGAN2Config, build_generator
from napari_gan.core.generation import ImageGenerator, load_generator
from napari_gan.core.normalization import Normalizer
from napari_gan.core.projection import ProjectSettings, _w_statistics, image_distance, project, ssim

CPU = torch.device("cpu")
TINY = dict(resolution=16, channel_base=128, channel_max=16, z_dim=16, w_dim=16, batch=4, eval_images=8)
NORM = Normalizer([100.0], [900.0])


@pytest.fixture(autouse=True)
def one_thread(_few_threads):
    """One thread (after conftest's two): tiny networks on a busy 2-core machine run fastest so."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny untrained generator saved as a model file (its w_avg: the average of its w)."""
    torch.manual_seed(0)
    cfg = StyleGAN2Config(**TINY)
    G = build_generator(cfg)
    G.mapping.w_avg.copy_(_w_statistics(G, None, 10_000, CPU)[0])
    arch, training = families.get("stylegan2").split_config(cfg)
    path = tmp_path_factory.mktemp("model") / "model.safetensors"
    checkpoint.save_model(path, "stylegan2", arch, {"generator": G}, {"images": NORM.to_dict()}, training=training)
    return path


def test_distance_and_ssim():
    torch.manual_seed(0)
    a = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.allclose(ssim(a, a), torch.ones(2))
    assert torch.allclose(image_distance(a, a), torch.zeros(2), atol=1e-6)
    b = a + 0.1 * torch.randn_like(a)
    d = image_distance(a, b)
    assert d.shape == (2,) and (d > 0).all()
    assert (image_distance(a, a + 0.3 * torch.randn_like(a)) > d).all()


def test_projection_recovers_generated_images(model_file):
    gen = load_generator(model_file, "cpu")
    target = gen.generate(4, seed=7, truncation=0.5)
    start = project(gen, target, ProjectSettings(steps=1))
    result = project(gen, target, ProjectSettings(steps=60))
    assert result.styles.shape == (4, gen.num_ws, gen.w_dim) and result.reconstruction.shape == target.shape
    assert np.median(result.psnr) > 25 and np.median(result.psnr) > np.median(start.psnr) + 8
    # generating from the latents gives the reconstruction exactly (the model's fixed noise)
    np.testing.assert_allclose(gen.generate_from_latents(result.styles), result.reconstruction, rtol=1e-5,
                               atol=1e-3)
    # deterministic for a seed; one image gives one image
    assert np.array_equal(project(gen, target[0], ProjectSettings(steps=5)).reconstruction,
                          project(gen, target[0], ProjectSettings(steps=5)).reconstruction)
    assert project(gen, target[0], ProjectSettings(steps=2)).reconstruction.shape == (16, 16)


def test_projection_with_fitted_noise_and_interpolation(model_file):
    gen = load_generator(model_file, "cpu")
    target = gen.generate(1, seed=3, truncation=0.5)
    result = project(gen, target, ProjectSettings(steps=20, optimize_noise=True))
    assert np.isfinite(result.reconstruction).all() and result.styles.shape == (1, gen.num_ws, gen.w_dim)
    a, b = gen.latents(2, seed=1)
    path = gen.latent_path(result.styles[0], result.styles[0] + 1, 5)
    assert path.shape == (5, gen.num_ws, gen.w_dim)
    assert np.allclose(path[2], result.styles[0] + 0.5, atol=1e-6)
    z_path = gen.latent_path(a, b, 4)
    assert np.allclose(z_path[0], a, atol=1e-6) and np.allclose(z_path[-1], b, atol=1e-6)


def test_projection_refuses_images_of_the_wrong_size(model_file):
    gen = load_generator(model_file, "cpu")
    with pytest.raises(NapariGanError, match="is 20x16 pixels but the model makes 16x16 images; crop"):
        project(gen, np.zeros((20, 16), np.float32))
    with pytest.raises(NapariGanError, match="shape"):
        project(gen, np.zeros((2, 2, 16, 16), np.float32))
    with pytest.raises(NapariGanError, match="Latent vectors must be an array of shape"):
        gen.generate_from_latents(np.zeros((1, gen.num_ws + 1, gen.w_dim), np.float32))


def test_cli_project_then_generate_from_the_latents(model_file, tmp_path, capsys):
    gen = load_generator(model_file, "cpu")
    tifffile.imwrite(tmp_path / "cells.tif", gen.generate(2, seed=5, truncation=0.5))
    latents, recon, seq = tmp_path / "w.npy", tmp_path / "recon.tif", tmp_path / "seq.tif"
    assert main(["project", "--model", str(model_file), "--input", str(tmp_path / "cells.tif"), "--output",
                 str(latents), "--steps", "10", "--reconstruction", str(recon), "--sequence", str(seq),
                 "--frames", "4"]) == 0
    assert "reconstruction PSNR" in capsys.readouterr().out
    styles = np.load(latents)
    assert styles.shape == (2, gen.num_ws, gen.w_dim) and styles.dtype == np.float32
    assert tifffile.imread(recon).shape == (2, 16, 16) and tifffile.imread(seq).shape == (4, 16, 16)
    again = tmp_path / "again.tif"
    assert main(["generate", "--model", str(model_file), "--latents", str(latents), "--output", str(again)]) == 0
    np.testing.assert_allclose(tifffile.imread(again), tifffile.imread(recon), rtol=1e-5, atol=1e-3)
    # a second projection may replace its own latents, never the input image
    assert main(["project", "--model", str(model_file), "--input", str(tmp_path / "cells.tif"), "--output",
                 str(latents), "--steps", "1"]) == 0
    capsys.readouterr()
    assert main(["project", "--model", str(model_file), "--input", str(tmp_path / "cells.tif"), "--output",
                 str(latents), "--steps", "1", "--reconstruction", str(tmp_path / "cells.tif")]) == 2
    assert "never writes over its inputs" in capsys.readouterr().err
    assert main(["project", "--model", str(model_file), "--input", str(tmp_path / "cells.tif"), "--output",
                 str(latents), "--class", "dim"]) == 2
    assert "is not class-conditional" in capsys.readouterr().err


def test_conditional_projection_starts_from_the_class(tmp_path):
    torch.manual_seed(1)
    cfg = StyleGAN2Config(**TINY, c_dim=2, class_names=["a", "b"])
    gen = ImageGenerator(build_generator(cfg), NORM, CPU, cfg.to_dict())
    target = gen.generate(2, seed=2, class_name="b", truncation=0.5)
    result = project(gen, target, ProjectSettings(steps=40), class_name="b")
    assert np.median(result.psnr) > 20
    with pytest.raises(NapariGanError, match="Unknown class 'c'"):
        project(gen, target, ProjectSettings(steps=1), class_name="c")
