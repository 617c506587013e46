"""Fixtures for the widget tests: a real napari viewer (napari's make_napari_viewer, run
under Xvfb), tiny images and tiny model settings so the whole suite stays fast on 2 CPU
cores, and a record of the notifications the user would see."""

from __future__ import annotations

import numpy as np
import pytest

WAIT_MS = 120_000


from tests.images import smooth_image  # noqa: F401  (re-exported for the tests)


@pytest.fixture
def pair():
    """(noisy, clean) 64x64 float32."""
    from napari_gan.core.data import poisson_gaussian_noise

    clean = smooth_image((64, 64))
    noisy = poisson_gaussian_noise(clean, 30, 0.02, np.random.default_rng(1))
    return noisy, clean


@pytest.fixture
def notes():
    """The notifications napari shows during the test, as (severity, message) pairs."""
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)

    class Notes:
        def all(self):
            return [(str(n.severity), str(n.message)) for n in notification_manager.records[start:]]

        def errors(self):
            return [m for s, m in self.all() if s.lower() == "error"]

        def infos(self):
            return [m for s, m in self.all() if s.lower() == "info"]

        def warnings(self):
            return [m for s, m in self.all() if s.lower() == "warning"]

    return Notes()


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def gen_widget(viewer):
    """A Generate Data widget docked in the viewer, on the CPU."""
    from napari_gan._widgets import GenerateWidget

    widget = GenerateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Generate Data")
    widget.device.value = "cpu"
    return widget


def tiny_training(widget, out_dir, steps=4, preview_every=2, **settings):
    """Settings that make a Pix2Pix run take a second or two on a laptop CPU (fields are
    reached by setting name; ``settings`` overrides or adds some)."""
    values = dict(steps=steps, val_every=preview_every, log_every=1, patch=32, batch=2, width=4, depth=2,
                  val_fraction=0.2, amp=False, **settings)
    for name, value in values.items():
        widget.field(name).value = value
    widget.device.value = "cpu"
    widget.out_dir.value = str(out_dir)


def wait_idle(qtbot, widget, timeout=WAIT_MS):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


@pytest.fixture(scope="session")
def pix2pix_models(tmp_path_factory):
    """Tiny trained Pix2Pix models (denoise and x2 super-resolution), made through the core."""
    from napari_gan.core.data import PairedSet, blur_downsample
    from napari_gan.core.device import resolve_device
    from napari_gan.core.training.base import Budget
    from napari_gan.core.families.pix2pix import Pix2PixConfig, Pix2PixTrainer

    root = tmp_path_factory.mktemp("models")
    clean = smooth_image((64, 64))
    models = {}
    for name, task, scale in (("denoise", "denoise", 1), ("sr2", "sr", 2)):
        inp = clean + 5 if scale == 1 else blur_downsample(clean, 2)
        data = PairedSet.build([inp[None]], [clean[None]], scale)
        cfg = Pix2PixConfig(task=task, scale=scale, depth=2, width=4, disc_width=4, disc_layers=2,
                            patch=16, batch=1, val_fraction=0.0)
        trainer = Pix2PixTrainer(cfg, data, root / name, Budget(steps=1), resolve_device("cpu"))
        for _ in trainer.run():
            pass
        models[name] = root / name / "model.safetensors"
    # a two-channel denoiser
    two = np.stack([clean, clean[::-1]])
    data = PairedSet.build([two + 5], [two], 1)
    cfg = Pix2PixConfig(depth=2, width=4, disc_width=4, disc_layers=2, patch=16, batch=1, val_fraction=0.0)
    trainer = Pix2PixTrainer(cfg, data, root / "two", Budget(steps=1), resolve_device("cpu"))
    for _ in trainer.run():
        pass
    models["two_channels"] = root / "two" / "model.safetensors"
    return models


@pytest.fixture(scope="session")
def stylegan2_model(tmp_path_factory):
    """A tiny StyleGAN2 model (16x16), made through the core."""
    from napari_gan.core.device import resolve_device
    from napari_gan.core.samples import synthetic_nuclei
    from napari_gan.core.training.base import Budget
    from napari_gan.core.families.stylegan2 import ImageSet, StyleGAN2Config, StyleGAN2Trainer

    out = tmp_path_factory.mktemp("sg2") / "nuclei-run"
    stack = synthetic_nuclei(8, 32)
    cfg = StyleGAN2Config(resolution=16, size="small", batch=2, eval_images=8, preview_grid=2)
    trainer = StyleGAN2Trainer(cfg, ImageSet.build(list(stack[:, None]), 16), out, Budget(steps=1),
                               resolve_device("cpu"))
    for _ in trainer.run():
        pass
    return out / "model.safetensors"


# ------------------------------------------------------------------ a family only the tests know
@pytest.fixture
def tiny_family():
    """A tiny extra model family ("tiny": one input, two settings, apply mode "image"; its
    model multiplies the image by a stored weight), registered for the test only."""
    from dataclasses import dataclass

    from napari_gan.core import families
    from napari_gan.core.families import DataInput, Family
    from napari_gan.core.settings import setting

    @dataclass
    class TinyConfig:
        strength: float = setting(0.5, "how strongly to smooth", min=0, max=1)
        passes: int = setting(2, "smoothing passes", min=1, max=9, advanced=True, label="Number of passes")

    class TinyFamily(Family):
        name = "tiny"
        title = "Tiny smoother"
        summary = "a family only the tests know"
        config_class = TinyConfig
        inputs = (DataInput("pictures", "images to learn from", label="Pictures"),)
        apply_mode = "image"
        architecture_fields = ("strength", "passes")
        loaded_on: list = []            # the threads its weights were read on

        def load_applier(self, header, device="auto", amp=True):
            import threading

            import torch

            from napari_gan.core import checkpoint
            from napari_gan.core.device import resolve_device
            from napari_gan.core.inference import Predictor
            from napari_gan.core.normalization import Normalizer

            self.loaded_on.append(threading.current_thread())
            net = torch.nn.Conv2d(1, 1, 1, bias=False)
            net.load_state_dict(checkpoint.load_networks(header, ["generator"])["generator"])
            unit = Normalizer([0.0], [1.0])
            return Predictor(net, {"scale": 1}, unit, unit, resolve_device(device), header.path, amp=False)

        def describe(self, header):
            return f"Tiny smoother, strength {header.architecture['strength']:g}"

    families.all_families()             # the built-in families first
    family = families.register(TinyFamily())
    try:
        yield family
    finally:
        families.unregister(family.name)


@pytest.fixture
def tiny_model(tiny_family, tmp_path):
    """A model file of the tiny family whose network doubles every pixel."""
    import torch

    from napari_gan.core import checkpoint

    net = torch.nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(2.0)
    return checkpoint.save_model(tmp_path / "tiny-run" / "model.safetensors", "tiny",
                                 {"strength": 0.25, "passes": 3}, {"generator": net}, {},
                                 step=7, metrics={"score": 0.5})
