"""StyleGAN2: generation of images like the user's own, from Gaussian noise; optionally
class-conditional (``--classes``: one sub-folder of images per class, or ``--labels`` a CSV
of file name, class), as in stylegan2-ada: the one-hot class enters the mapping network
and the discriminator's projection (:mod:`..models.stylegan2`); the class names are stored
in the model file (architecture ``c_dim``, ``class_names``, only for conditional models, so
unconditional files keep their header and state_dict keys).

Pieces, in the order they are used:

* :class:`ImageSet` / :class:`CropSampler`: unpaired training images (a stack, one large
  image or a folder), percentile-normalised like Pix2Pix, sampled as random crops with
  random flips and 90-degree rotations (microscopy has no preferred orientation).
* :func:`auto_hyperparameters`: the one place where batch, learning rate, R1 weight,
  EMA length and network width are derived from the resolution and batch (after
  stylegan2-ada-pytorch's ``auto`` configuration). :class:`StyleGAN2Config` fills every
  field left as ``None`` from it; any field can be overridden.
* :class:`AdaptiveAugment`: ADA. Flips, 90-degree rotations, integer translation,
  brightness and contrast are applied to everything the discriminator sees with a
  probability ``p`` that rises while the discriminator is over-confident on real images
  (the sign of its logits is above ``target``) and falls otherwise. All operations are
  index gathers and arithmetic, so R1's double backward passes through them.
* :class:`StyleGAN2Trainer`: non-saturating loss, lazy R1 (every ``r1_interval`` D steps),
  path-length regularisation (every ``pl_interval`` G steps), style mixing, EMA generator.
  Networks and batches are channels-last (NHWC) on CPUs and GPUs. Main passes run under
  bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16 or AMX), regularisation
  passes in float32;
  ``compile`` compiles the networks for the main passes only (no double backward there).
  Quality is measured by a multi-scale patch sliced Wasserstein distance (SWD) between
  fixed real crops and images of the EMA generator from fixed latents. Under ``torchrun``
  gradients, the path-length mean, ``w_avg`` and ADA's statistics are averaged over the
  processes by hand (DDP cannot differentiate twice), as the reference does.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint, distributed, settings
from ..data import Normalizer, check_finite, dihedral, to_planes
from ..device import autocast, configure_backends, prefers_channels_last
from ..errors import NapariGanError
from ..losses import discriminator_loss, generator_loss, path_length_penalty, r1_penalty
from ..metrics import patch_swd
from ..models.stylegan2 import Discriminator, Generator
from ..settings import setting
from . import DataInput, Family, Images, Plot, register
from ..training.base import Budget, Trainer

MIN_CROPS = 8
MIN_RESOLUTION, MAX_RESOLUTION = 8, 1024
AUGMENT_MODES = ("ada", "none")
# Network sizes and what goes with them. "full" is the reference's (stylegan2-ada-pytorch
# "auto"); "small" is for CPUs: like the reference's CIFAR configuration it has no path-length
# regularisation and no style mixing (at 64x64 on a 2-core CPU both cost time and slowed early
# learning: docs/benchmarks_stylegan2.md), and at most 4 images per step (more updates in a
# short run: batch 4 matched batch 8's SWD in 10 CPU minutes without its regular streak
# artefact). z_dim is also w_dim.
SIZES = {
    "small": dict(channel_base=2048, channel_max=64, z_dim=64, max_batch=4, pl_weight=0.0, style_mixing=0.0),
    "medium": dict(channel_base=8192, channel_max=256, z_dim=256, max_batch=32, pl_weight=2.0, style_mixing=0.9),
    "full": dict(channel_base=16384, channel_max=512, z_dim=512, max_batch=32, pl_weight=2.0, style_mixing=0.9),
}


# ---------------------------------------------------------------------------- data
@dataclass
class ImageSet:
    """Raw training planes ``(C, H, W)`` (possibly memory-mapped) and their normaliser.

    Model space is ``[-1, 1]``: the percentile normaliser maps to about ``[0, 1]``, then
    ``2x - 1``. :meth:`to_model` / :meth:`from_model` convert both ways.
    """

    planes: list[np.ndarray]
    norm: Normalizer
    names: list[str] = field(default_factory=list)
    classes: list[int] | None = None        # class-conditional: the class index of each plane

    @classmethod
    def build(cls, planes: list[np.ndarray], resolution: int, names: list[str] | None = None,
              norm: Normalizer | None = None, classes: list[int] | None = None) -> "ImageSet":
        names = names or [f"image {i + 1}" for i in range(len(planes))]
        if not planes:
            raise NapariGanError("No training images were given.")
        for plane, name in zip(planes, names):
            if plane.shape[0] != planes[0].shape[0]:
                raise NapariGanError(f"{name}: all images must have the same number of channels.")
            h, w = plane.shape[-2:]
            if min(h, w) < resolution:
                raise NapariGanError(
                    f"{name} is only {h}x{w} pixels, smaller than the training resolution "
                    f"{resolution}x{resolution}; choose a lower --resolution or larger images.")
            check_finite(plane, name)
        crops = sum((p.shape[-2] // resolution) * (p.shape[-1] // resolution) for p in planes)
        if crops < MIN_CROPS:
            raise NapariGanError(
                f"Too few images: {len(planes)} image(s) hold only {crops} distinct "
                f"{resolution}x{resolution} crop(s), and StyleGAN2 needs at least {MIN_CROPS} "
                "(tens to hundreds work well). Add images or choose a lower --resolution.")
        norm = norm or Normalizer.fit(planes, name="the training images")
        if classes is not None and len(classes) != len(planes):
            raise NapariGanError(f"{len(classes)} class label(s) for {len(planes)} image(s).")
        return cls(list(planes), norm, names, None if classes is None else [int(k) for k in classes])

    @property
    def channels(self) -> int:
        return int(self.planes[0].shape[0])

    def to_model(self, crop: np.ndarray) -> np.ndarray:
        """One raw ``(C, h, w)`` crop -> float32 in model space (about [-1, 1])."""
        return self.norm.normalize(crop) * 2.0 - 1.0

    def from_model(self, images: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` model-space images -> float32 in the training images' units."""
        per_channel_first = np.moveaxis(np.asarray(images, np.float32), 1, 0)
        return np.moveaxis(self.norm.denormalize((per_channel_first + 1.0) * 0.5), 0, 1)


def image_set_from_files(path, resolution: int, channels: int = 1,
                         norm: Normalizer | None = None) -> ImageSet:
    """A TIFF stack, one large image, or a folder of TIFFs -> :class:`ImageSet`."""
    from ..io import expand_paths, read_tiff

    planes, names = [], []
    for file in expand_paths(path):
        stack, _ = to_planes(read_tiff(file, memmap=True), channels, name=f"'{file.name}'")
        for i in range(len(stack)):
            planes.append(stack[i])
            names.append(f"'{file.name}'" if len(stack) == 1 else f"'{file.name}' plane {i + 1}")
    return ImageSet.build(planes, resolution, names, norm)


class CropSampler:
    """Random ``size x size`` crops in model space; planes are drawn in proportion to
    their area, and ``mirror`` adds a random flip/90-degree rotation per crop."""

    def __init__(self, data: ImageSet, size: int, rng: np.random.Generator, mirror: bool = True):
        self.data, self.size, self.rng, self.mirror = data, size, rng, mirror
        areas = np.array([p.shape[-2] * p.shape[-1] for p in data.planes], np.float64)
        self.weights = areas / areas.sum()

    def sample(self, n: int) -> np.ndarray:
        return self._sample(n)[0]

    def sample_labelled(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` crops and the class index of each (a class-conditional data set)."""
        crops, picked = self._sample(n)
        return crops, np.asarray([self.data.classes[i] for i in picked], np.int64)

    def class_weights(self, c_dim: int) -> np.ndarray:
        """How often each class is drawn (by area, as the crops are)."""
        w = np.zeros(c_dim, np.float64)
        np.add.at(w, np.asarray(self.data.classes, np.int64), self.weights)
        return w / w.sum()

    def _sample(self, n: int) -> tuple[np.ndarray, list[int]]:
        s, crops, picked = self.size, [], []
        for _ in range(n):
            i = int(self.rng.choice(len(self.data.planes), p=self.weights))
            plane = self.data.planes[i]
            picked.append(i)
            r = int(self.rng.integers(0, plane.shape[-2] - s + 1))
            c = int(self.rng.integers(0, plane.shape[-1] - s + 1))
            crop = self.data.to_model(plane[:, r:r + s, c:c + s])
            if self.mirror:
                crop = dihedral(crop, int(self.rng.integers(0, 8)))
            crops.append(np.ascontiguousarray(crop))
        return np.stack(crops), picked


# -------------------------------------------------------------------------- config
def auto_hyperparameters(resolution: int, batch: int | None = None, size: str = "small") -> dict:
    """Hyper-parameters derived from resolution, batch and size (stylegan2-ada-pytorch "auto").

    batch: 4096 / resolution, at most 32 (4 for "small"); minibatch-std group: 4; learning
    rate 0.0025 (0.002 from 1024); R1 weight gamma = 0.0002 * resolution^2 / batch; EMA
    half-life batch * 10/32 kimg; width, path-length weight and style mixing from ``size``
    (:data:`SIZES`; "full" doubles the reference's channel_base from 512).
    """
    spec = SIZES[size]
    batch = batch or max(1, min(4096 // resolution, spec["max_batch"]))
    channel_base = spec["channel_base"]
    if size == "full" and resolution >= 512:
        channel_base *= 2
    return {
        "batch": batch,
        "mbstd_group": min(batch, 4),
        "lr": 0.002 if resolution >= 1024 else 0.0025,
        "gamma": 0.0002 * resolution ** 2 / batch,
        "ema_kimg": batch * 10 / 32,
        "channel_base": channel_base,
        "channel_max": spec["channel_max"],
        "z_dim": spec["z_dim"],
        "w_dim": spec["z_dim"],
        "pl_weight": spec["pl_weight"],
        "style_mixing": spec["style_mixing"],
    }


SIZE_CHOICES = ("auto", *SIZES)
#: network fields stored as the model file's architecture (the rest goes in its training record)
ARCHITECTURE = ("resolution", "channels", "size", "z_dim", "w_dim", "mapping_layers", "channel_base",
                "channel_max", "mbstd_group", "c_dim", "class_names")
#: architecture fields of class-conditional models only (unconditional files keep their header)
CLASS_FIELDS = ("c_dim", "class_names")
MAX_CLASSES = 1000


@dataclass
class StyleGAN2Config:
    """A StyleGAN2 model and its training (saved in the model file).

    Fields left as ``None`` are filled by :func:`auto_hyperparameters`.
    """

    resolution: int = setting(64, "size of the generated images (random crops of this size are learnt)",
                              choices=tuple(2**k for k in range(3, 11)))
    channels: int = setting(1, "channels per image", min=1, max=16, widget=False)
    classes: bool = setting(False, "class-conditional: --images holds one sub-folder of images per class "
                            "(the sub-folder names are the class names); generate images of a chosen class",
                            widget=False, label="Class-conditional")
    labels: str | None = setting(None, "class-conditional, classes from a CSV file of 'file name,class name' "
                                 "lines (implies --classes)", auto="none", widget=False, label="Class labels (CSV)")
    size: str = setting("auto", "network width; auto: small on a CPU, full on a GPU", choices=SIZE_CHOICES,
                        label="Network size")
    batch: int | None = setting(None, "images per step, over all processes under torchrun", min=1, max=1024,
                                auto="4096/resolution, at most 32; 4 for small", label="Batch size")
    z_dim: int | None = setting(None, "latent (noise vector) length; also the w length", min=1, max=4096,
                                auto="from the size", advanced=True)
    w_dim: int | None = None
    mapping_layers: int = setting(2, "layers of the mapping network", min=1, max=16, advanced=True)
    channel_base: int | None = setting(None, "feature maps = channel_base / resolution ...", min=1,
                                       max=2**20, auto="from the size", advanced=True)
    channel_max: int | None = setting(None, "... capped at channel_max", min=1, max=4096,
                                      auto="from the size", advanced=True)
    mbstd_group: int | None = None
    c_dim: int = 0                          # number of classes (0: unconditional), set from the data
    class_names: list | None = None         # their names, in the order of the one-hot labels
    lr: float | None = setting(None, "Adam learning rate", min=0, min_exclusive=True, max=1,
                               auto="0.0025", advanced=True, label="Learning rate")
    gamma: float | None = setting(None, "R1 regularisation weight", min=0, max=1e6,
                                  auto="0.0002 * resolution^2 / batch", advanced=True)
    ema_kimg: float | None = setting(None, "half-life of the generator's moving average, in kimg", min=0,
                                     max=1e6, auto="batch * 10/32", advanced=True)
    ema_rampup: float = 0.05
    r1_interval: int = 16
    pl_weight: float | None = setting(None, "path-length regularisation weight, 0: off", min=0, max=1e6,
                                      auto="0 for small, else 2", advanced=True)
    pl_interval: int = 4
    pl_batch_shrink: int = 2
    pl_decay: float = 0.01
    style_mixing: float | None = setting(None, "style-mixing probability", min=0, max=1,
                                         auto="0 for small, else 0.9", advanced=True)
    augment: str = setting("ada", "ada: adaptive discriminator augmentation; none: fixed probability "
                           "--aug-p", choices=(("adaptive (ADA)", "ada"), ("none", "none")),
                           label="Augmentation")
    aug_p: float = setting(0.0, "initial (or, with --augment none, fixed) augmentation probability",
                           min=0, max=1, advanced=True)
    ada_target: float = setting(0.6, "ADA's target for the sign of the real logits", min=0,
                                min_exclusive=True, max=0.999, advanced=True)
    ada_interval: int = 4
    ada_kimg: float = setting(100.0, "kimg for the augmentation probability to go from 0 to 1", min=0,
                              min_exclusive=True, max=1e6, advanced=True)
    mirror: bool = setting(True, "random flips and 90-degree rotations of the training crops",
                           flag="--no-mirror", advanced=True, label="Flips and rotations")
    eval_images: int = setting(64, "images generated for the SWD quality figure", min=2, max=10_000,
                               advanced=True)
    preview_grid: int = 4
    amp: bool = setting(True, "bf16 autocast on CUDA and on CPUs with native bf16 (off: float32 "
                        "throughout)", flag="--no-amp", advanced=True, label="bf16 where it is faster")
    compile: bool = setting(False, "torch.compile the main passes (not the regularisers)", widget=False)

    def __post_init__(self):
        settings.check(self)
        if self.size == "auto":
            import torch

            self.size = "full" if torch.cuda.is_available() else "small"
        if self.w_dim is None and self.z_dim is not None:
            self.w_dim = self.z_dim
        for name, value in auto_hyperparameters(self.resolution, self.batch, self.size).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        self._check()

    def to_dict(self) -> dict:
        return asdict(self)

    def _check(self) -> None:
        if self.channels < 1:
            raise NapariGanError("The number of channels must be positive.")
        if min(self.z_dim, self.w_dim, self.channel_base, self.channel_max, self.mapping_layers) < 1:
            raise NapariGanError("Network dimensions (z, w, channels, mapping layers) must be positive.")
        if not self.lr > 0 or self.gamma < 0 or self.pl_weight < 0 or self.ema_kimg < 0:
            raise NapariGanError("The learning rate must be positive; gamma, pl_weight and ema_kimg not negative.")
        if min(self.r1_interval, self.pl_interval, self.ada_interval, self.pl_batch_shrink) < 1:
            raise NapariGanError("Regularisation and augmentation intervals must be at least 1.")
        if self.augment not in AUGMENT_MODES:
            raise NapariGanError(f"Unknown augmentation '{self.augment}'; choose one of {', '.join(AUGMENT_MODES)}.")
        if not (0 <= self.aug_p <= 1 and 0 <= self.style_mixing <= 1 and 0 < self.ada_target < 1):
            raise NapariGanError("aug_p and style_mixing must be in [0, 1], ada_target in (0, 1).")
        if self.eval_images < 2 or self.preview_grid < 1 or self.ada_kimg <= 0:
            raise NapariGanError("eval_images must be at least 2, preview_grid and ada_kimg positive.")
        if self.labels is not None:
            self.classes = True
        if isinstance(self.class_names, tuple):
            self.class_names = list(self.class_names)
        if not isinstance(self.c_dim, int) or isinstance(self.c_dim, bool) or not 0 <= self.c_dim <= MAX_CLASSES:
            raise NapariGanError(f"The number of classes (c_dim) must be a whole number from 0 to {MAX_CLASSES}, "
                                 f"not {self.c_dim!r}.")
        if self.c_dim == 1:
            raise NapariGanError("A class-conditional model needs at least 2 classes.")
        if self.c_dim == 0 and self.class_names is not None:
            raise NapariGanError("Class names are given for an unconditional model (c_dim 0).")
        if self.c_dim:
            names = self.class_names
            if (not isinstance(names, list) or len(names) != self.c_dim
                    or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names)):
                raise NapariGanError(f"A model of {self.c_dim} classes needs {self.c_dim} different class names, "
                                     f"not {names!r}.")



def build_generator(cfg: StyleGAN2Config) -> Generator:
    return Generator(cfg.z_dim, cfg.w_dim, cfg.resolution, cfg.channels, cfg.mapping_layers,
                     cfg.channel_base, cfg.channel_max, c_dim=cfg.c_dim)


def build_discriminator(cfg: StyleGAN2Config) -> Discriminator:
    return Discriminator(cfg.resolution, cfg.channels, cfg.channel_base, cfg.channel_max, cfg.mbstd_group,
                         c_dim=cfg.c_dim, cmap_layers=cfg.mapping_layers)


# -------------------------------------------------------------------------- classes
def one_hot(classes, c_dim: int, device=None) -> torch.Tensor | None:
    """(N,) class indices -> (N, c_dim) float32 one-hot labels; None for unconditional models."""
    if not c_dim:
        return None
    index = torch.as_tensor(np.asarray(classes), dtype=torch.long)
    return torch.nn.functional.one_hot(index, c_dim).float().to(device)


def read_class_csv(path) -> dict[str, str]:
    """``file name -> class name`` from a CSV file of ``file,class`` lines (a header line whose
    second column is "class" or "label", empty lines and lines starting with # are skipped)."""
    import csv

    path = Path(path).expanduser()
    if not path.is_file():
        raise NapariGanError(f"The class labels file '{path}' does not exist.")
    mapping: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NapariGanError(f"Cannot read the class labels file '{path}': {exc}.") from exc
    for number, row in enumerate(rows, start=1):
        row = [cell.strip() for cell in row]
        if not row or not any(row) or row[0].startswith("#"):
            continue
        if len(row) < 2 or not row[0] or not row[1]:
            raise NapariGanError(f"'{path}' line {number}: expected 'file name,class name', not {','.join(row)!r}.")
        if number == 1 and row[1].lower() in ("class", "label", "class_name", "classes", "labels"):
            continue
        name = Path(row[0]).name
        if mapping.get(name, row[1]) != row[1]:
            raise NapariGanError(f"'{path}' gives '{name}' two classes: '{mapping[name]}' and '{row[1]}'.")
        mapping[name] = row[1]
    if not mapping:
        raise NapariGanError(f"The class labels file '{path}' holds no 'file name,class name' lines.")
    return mapping


def plane_classes(images, cfg: StyleGAN2Config) -> tuple[list[str], list[int]] | None:
    """``(class names, class index of each plane)`` of the training images, or None for an
    unconditional model. The classes come from ``cfg.labels`` (a CSV mapping file names to
    classes) or from the images' own class names (one sub-folder per class, see
    :meth:`StyleGAN2Family.read_input`, or given by the caller as ``images.classes``).
    Resuming, the classes must be those the model was trained on."""
    if not cfg.classes:
        return None
    files = getattr(images, "files", None)
    if cfg.labels is not None:
        if not files:
            raise NapariGanError("Class labels from a CSV file (--labels) need the training images as files.")
        mapping = read_class_csv(cfg.labels)
        unlisted = sorted({f.name for f in files if f.name not in mapping})
        if unlisted:
            shown = ", ".join(f"'{n}'" for n in unlisted[:3]) + (" ..." if len(unlisted) > 3 else "")
            raise NapariGanError(f"{len(unlisted)} training image(s) have no class in '{cfg.labels}': {shown}.")
        per_plane = [mapping[f.name] for f in files]
    else:
        per_plane = images.classes
        if not per_plane:
            raise NapariGanError("Class-conditional training (--classes) needs the images of each class in "
                                 "their own sub-folder of --images (the sub-folder names are the class names), "
                                 "or a CSV file mapping file names to classes (--labels).")
    names = sorted(set(per_plane))
    if cfg.class_names is not None:   # resuming: the classes of the model
        if sorted(cfg.class_names) != names:
            raise NapariGanError(f"This run was trained on the classes {', '.join(cfg.class_names)}, but the "
                                 f"images now have the classes {', '.join(names)}.")
        names = list(cfg.class_names)
    if len(names) < 2:
        raise NapariGanError(f"Class-conditional training needs at least 2 classes; the images have only "
                             f"'{names[0]}'.")
    if len(names) > MAX_CLASSES:
        raise NapariGanError(f"{len(names)} classes; at most {MAX_CLASSES} are supported.")
    index = {n: i for i, n in enumerate(names)}
    return names, [index[n] for n in per_plane]


# --------------------------------------------------------------------- augmentation
def _reflect(v: torch.Tensor, n: int) -> torch.Tensor:
    period = 2 * (n - 1)
    v = torch.remainder(v, period)
    return torch.where(v >= n, period - v, v)


def augment(images: torch.Tensor, p: float) -> torch.Tensor:
    """ADA's "bgc"-style pipeline for microscopy, each transform applied with probability p:
    horizontal flip, 90-degree rotation, integer translation (up to 1/8 of the size, mirror
    padding), brightness shift and contrast scaling. Differentiable, double backward included."""
    if p <= 0:
        return images
    n, c, h, w = images.shape
    dev = images.device
    apply = lambda: torch.rand(n, device=dev) < p  # noqa: E731
    ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    ys, xs = ys.expand(n, h, w), xs.expand(n, h, w)
    shift = torch.round((torch.rand(n, 2, device=dev) * 2 - 1) * 0.125 * torch.tensor([h, w], device=dev))
    shift = shift.long() * apply()[:, None]
    ys, xs = _reflect(ys - shift[:, :1, None], h), _reflect(xs - shift[:, 1:, None], w)
    if h == w:
        turns = torch.randint(0, 4, (n,), device=dev) * apply()
        for k in range(1, 4):
            ys, xs = (torch.where((turns >= k)[:, None, None], xs, ys),
                      torch.where((turns >= k)[:, None, None], w - 1 - ys, xs))
    xs = torch.where(apply()[:, None, None], w - 1 - xs, xs)
    index = (ys * w + xs).reshape(n, 1, h * w).expand(n, c, h * w)
    out = images.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)
    brightness = torch.randn(n, 1, 1, 1, device=dev, dtype=out.dtype) * 0.2 * apply()[:, None, None, None]
    contrast = torch.exp2(torch.randn(n, 1, 1, 1, device=dev) * 0.5 * apply()[:, None, None, None])
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return (out - mean) * contrast.to(out.dtype) + mean + brightness


class AdaptiveAugment:
    """Augmentation probability tuned on the fly from the discriminator's real logits.

    ``r_t = E[sign(D(real))]`` is measured over ``interval`` steps; ``p`` moves up when
    ``r_t > target`` (D is overfitting) and down otherwise, at a speed at which it could
    go from 0 to 1 in ``speed_kimg`` thousand images.
    """

    def __init__(self, p: float = 0.0, target: float = 0.6, interval: int = 4,
                 speed_kimg: float = 100.0, adaptive: bool = True):
        self.p, self.target, self.interval = float(p), target, interval
        self.speed_kimg, self.adaptive = speed_kimg, adaptive
        self.sign_sum, self.count, self.steps, self.rt = 0.0, 0, 0, 0.0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return augment(images, self.p)

    def observe(self, real_logits: torch.Tensor) -> None:
        self.sign_sum += float(torch.sign(real_logits.detach()).sum())
        self.count += real_logits.numel()

    def step(self, batch: int, reduce=None) -> None:
        """Call once per training step (``batch``: images in it, over all processes); adjusts
        ``p`` every ``interval`` steps. ``reduce`` sums ``[sign_sum, count]`` over processes."""
        self.steps += 1
        if not self.adaptive or self.steps % self.interval:
            return
        if reduce is not None:
            sign_sum, count = reduce([self.sign_sum, float(self.count)])
            self.sign_sum, self.count = sign_sum, int(count)
        if self.count == 0:
            return
        self.rt = self.sign_sum / self.count
        adjust = math.copysign(batch * self.interval / (self.speed_kimg * 1000), self.rt - self.target)
        self.p = min(1.0, max(0.0, self.p + adjust))
        self.sign_sum, self.count = 0.0, 0

    def state(self) -> dict:
        return {"p": self.p, "sign_sum": self.sign_sum, "count": self.count, "steps": self.steps, "rt": self.rt}

    def load(self, state: dict) -> None:
        self.p, self.sign_sum = float(state["p"]), float(state["sign_sum"])
        self.count, self.steps, self.rt = int(state["count"]), int(state["steps"]), float(state["rt"])


# ------------------------------------------------------------------------------ EMA
def ema_beta(batch: int, images_seen: int, ema_kimg: float, rampup: float | None) -> float:
    """Per-step EMA decay: half-life ``ema_kimg`` thousand images, shorter early on (rampup)."""
    ema_nimg = ema_kimg * 1000
    if rampup:
        ema_nimg = min(ema_nimg, images_seen * rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    """``ema = beta * ema + (1 - beta) * model``; buffers (w_avg, noise) are copied."""
    ema_params, params = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(ema_params, params, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def image_grid(images: np.ndarray, cols: int) -> np.ndarray:
    """(N, C, H, W) -> (H*rows, W*cols) for one channel, else (C, H*rows, W*cols)."""
    n, c, h, w = images.shape
    rows = -(-n // cols)
    grid = np.zeros((c, rows * h, cols * w), np.float32)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        grid[:, r * h:(r + 1) * h, k * w:(k + 1) * w] = img
    return grid[0] if c == 1 else grid


# -------------------------------------------------------------------------- trainer
class StyleGAN2Trainer(Trainer):
    """Trains G and D on random crops; yields events with losses, R1, path length,
    augmentation probability, kimg, and every ``val_every`` steps SWD and a preview grid
    from fixed latents (EMA generator)."""

    kind = "stylegan2"
    state_parts = ("generator", "discriminator", "generator_ema", "opt_g", "opt_d", "ada", "pl_mean")

    def __init__(self, cfg: StyleGAN2Config, data: ImageSet, out_dir: str | Path, budget: Budget,
                 device: torch.device, seed: int = 0, log_every: int = 10, val_every: int = 200):
        if data.channels != cfg.channels:
            raise NapariGanError(f"The images have {data.channels} channel(s) but the model expects {cfg.channels}.")
        # cfg.batch is the global batch; under torchrun each of the N processes trains on
        # batch/N images with its own random crops, latents, noise and augmentation, and
        # gradients are averaged by hand after each backward pass (R1 and path length
        # differentiate twice, which DistributedDataParallel does not support).
        per_process = distributed.share_of_batch(cfg.batch, device)
        super().__init__(out_dir, budget, device, seed, log_every, val_every, per_process)
        self.cfg, self.data = cfg, data
        # bf16 main passes where autocast() finds it pays: CUDA, and CPUs with native bf16
        self.amp = cfg.amp
        ImageSet.build(data.planes, cfg.resolution, data.names, data.norm)  # size checks
        self.sampler = CropSampler(data, cfg.resolution, self.rng, cfg.mirror)
        # class-conditional: real crops come with their class, fakes get classes drawn as often
        # as the real crops' (the one-hot labels of this step: _real_c, _fake_c)
        self.c_dim = cfg.c_dim
        self._real_c = self._fake_c = None
        if self.c_dim:
            if data.classes is None or max(data.classes) >= self.c_dim or min(data.classes) < 0:
                raise NapariGanError(f"A model of {self.c_dim} classes needs a class index (0..{self.c_dim - 1}) "
                                     "for every training image.")
            self.class_probs = torch.from_numpy(self.sampler.class_weights(self.c_dim)).float()
        configure_backends(device)
        self.G = build_generator(cfg).to(device)
        self.D = build_discriminator(cfg).to(device)
        self.memory_format = torch.channels_last if prefers_channels_last(device) else torch.contiguous_format
        self.G.to(memory_format=self.memory_format)   # NHWC: 1.09x at batch 4 on a 2-core CPU (benchmarks_stylegan2.md)
        self.D.to(memory_format=self.memory_format)
        distributed.broadcast_module(self.G, device)
        distributed.broadcast_module(self.D, device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        fused = device.type == "cuda"
        self.opt_g = torch.optim.Adam(self.G.parameters(), cfg.lr, betas=(0.0, 0.99), eps=1e-8, fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg.lr, betas=(0.0, 0.99), eps=1e-8, fused=fused)
        self.ada = AdaptiveAugment(cfg.aug_p, cfg.ada_target, cfg.ada_interval, cfg.ada_kimg,
                                   adaptive=cfg.augment == "ada")
        self.pl_mean = torch.zeros([], device=device)
        self.last_reg = {"r1": 0.0, "pl": 0.0}
        # torch.compile cannot differentiate twice: compiled copies serve the main passes only
        self.synthesis_main = torch.compile(self.G.synthesis) if cfg.compile else self.G.synthesis
        self.D_main = torch.compile(self.D) if cfg.compile else self.D
        self._eval_setup(seed)
        if self.dist.enabled:   # the same networks everywhere, different random draws
            self._separate_random_streams()

    def _eval_setup(self, seed: int) -> None:
        """Fixed latents for previews/SWD and fixed real crops (no flips) to compare with."""
        gen = torch.Generator().manual_seed(seed + 1_000_003)
        self.eval_z = torch.randn(self.cfg.eval_images, self.cfg.z_dim, generator=gen)
        eval_rng = np.random.default_rng([seed, 7])
        sampler = CropSampler(self.data, self.cfg.resolution, eval_rng, mirror=False)
        self.eval_c = None
        if self.c_dim:   # the generated images get the classes of the real crops they are compared with
            self.eval_real, classes = sampler.sample_labelled(self.cfg.eval_images)
            self.eval_c = one_hot(classes, self.c_dim)
        else:
            self.eval_real = sampler.sample(self.cfg.eval_images)

    def describe(self) -> str:
        c = self.cfg
        shown = ", ".join(c.class_names[:8]) + (", ..." if c.c_dim > 8 else "") if c.c_dim else ""
        what = f" of {c.c_dim} classes ({shown})" if c.c_dim else ""
        return (f"{c.resolution}x{c.resolution} ({c.size}, batch {c.batch}) on {len(self.data.planes)} "
                f"image(s){what}")

    @property
    def images_seen(self) -> int:
        return self.step * self.cfg.batch

    # -------------------------------------------------------------------- steps
    def _real_batch(self) -> torch.Tensor:
        if self.c_dim:
            crops, classes = self.sampler.sample_labelled(self.batch)
            self._real_c = one_hot(classes, self.c_dim, self.device)
        else:
            crops = self.sampler.sample(self.batch)
        x = torch.from_numpy(crops)
        x = x.pin_memory().to(self.device, non_blocking=True) if self.device.type == "cuda" else x.to(self.device)
        return x.contiguous(memory_format=self.memory_format)

    def _random_classes(self, n: int) -> torch.Tensor | None:
        """One-hot labels of ``n`` classes drawn as often as the real crops' (None: unconditional)."""
        if not self.c_dim:
            return None
        return one_hot(torch.multinomial(self.class_probs, n, replacement=True), self.c_dim, self.device)

    def _styles(self, n: int, update_w_avg: bool = False, c: torch.Tensor | None = None) -> torch.Tensor:
        """Styles for ``n`` random latents (of classes ``c``), with style mixing: with probability
        ``style_mixing`` the layers from a random cutoff on take a second latent's style."""
        z = torch.randn(n, self.cfg.z_dim, device=self.device)
        ws = self.G.mapping(z, update_w_avg=update_w_avg, c=c)
        if self.cfg.style_mixing > 0 and float(torch.rand(())) < self.cfg.style_mixing:
            cutoff = int(torch.randint(1, ws.shape[1], ()))
            ws = torch.cat([ws[:, :cutoff], self.G.mapping(torch.randn_like(z), c=c)[:, cutoff:]], dim=1)
        return ws

    def _fakes(self) -> torch.Tensor:
        """This step's generated batch, with the generator's graph kept for its update."""
        self.G.requires_grad_(True)
        self._fake_c = self._random_classes(self.batch)
        with autocast(self.device, self.amp):
            return self.synthesis_main(self._styles(self.batch, update_w_avg=True, c=self._fake_c))

    def _generator_step(self, fake: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        self.D.requires_grad_(False)
        with autocast(self.device, self.amp):
            loss = generator_loss("vanilla", self.D_main(self.ada(fake), self._fake_c))
        total = loss
        if cfg.pl_weight > 0 and self.step % cfg.pl_interval == 0:
            n = max(1, self.batch // cfg.pl_batch_shrink)
            ws = self._styles(n, c=self._random_classes(n))
            penalty, self.pl_mean = path_length_penalty(self.G.synthesis(ws), ws, self.pl_mean, cfg.pl_decay)
            distributed.average_tensors([self.pl_mean], self.device)
            total = total + penalty * cfg.pl_weight * cfg.pl_interval
            self.last_reg["pl"] = float(penalty.detach())
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        distributed.average_gradients(self.G, self.device)
        self.opt_g.step()
        distributed.average_tensors([self.G.mapping.w_avg], self.device)
        return loss.detach()

    def _discriminator_step(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """One D update on real images and detached fakes (no gradient reaches G)."""
        cfg = self.cfg
        self.D.requires_grad_(True)
        with autocast(self.device, self.amp):
            fake_logits = self.D_main(self.ada(fake.detach().float()), self._fake_c)
        regularise = cfg.gamma > 0 and self.step % cfg.r1_interval == 0
        if regularise:  # one float32 pass on the reals serves both the loss and R1
            real = real.detach().requires_grad_(True)
            real_logits = self.D(self.ada(real), self._real_c)
        else:
            with autocast(self.device, self.amp):
                real_logits = self.D_main(self.ada(real), self._real_c)
        loss = discriminator_loss("vanilla", real_logits, fake_logits)
        total = loss
        if regularise:
            r1 = r1_penalty(real_logits, real)
            total = total + r1 * (cfg.gamma / 2) * cfg.r1_interval
            self.last_reg["r1"] = float(r1.detach())
        self.ada.observe(real_logits)
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        distributed.average_gradients(self.D, self.device)
        self.opt_d.step()
        return loss.detach()

    def train_step(self, progress: float) -> dict[str, float]:
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = self.cfg.lr * self.lr_scale
        self.G.train()
        self.D.train()
        # one synthesis pass serves both updates (a generator forward pass fewer): D learns on the fakes
        # detached, then G backpropagates through them into the updated D
        real = self._real_batch()
        fake = self._fakes()
        d_loss = self._discriminator_step(real, fake)
        g_loss = self._generator_step(fake)
        # losses of the global batch: every process sees the same numbers (and the same NaN)
        g_loss, d_loss = distributed.mean_values([g_loss, d_loss], self.device)
        seen = self.images_seen + self.cfg.batch
        ema_update(self.G_ema, self.G, ema_beta(self.cfg.batch, seen, self.cfg.ema_kimg, self.cfg.ema_rampup))
        self.ada.step(self.cfg.batch, lambda v: distributed.sum_values(v, self.device))
        losses = {"g": g_loss, "d": d_loss, **self.last_reg, "aug_p": self.ada.p, "kimg": seen / 1000}
        if not self._weights_finite():
            losses["weights"] = math.nan  # the base loop rolls back to the last good state
        return losses

    def _weights_finite(self) -> bool:
        params = [p.detach() for net in (self.G, self.D) for p in net.parameters()]
        return bool(torch.isfinite(torch.stack(torch._foreach_norm(params))).all())

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def generate_eval(self) -> np.ndarray:
        """Images of the EMA generator from the fixed latents, model space, (N, C, H, W)."""
        out = []
        for i, z in enumerate(self.eval_z.split(16)):
            c = None if self.eval_c is None else self.eval_c[16 * i:16 * i + len(z)].to(self.device)
            with autocast(self.device, self.amp):
                out.append(self.G_ema(z.to(self.device), noise_mode="const", c=c).float().cpu())
        return torch.cat(out).numpy()

    def validate(self) -> tuple[dict[str, float], np.ndarray | None]:
        if not self.dist.is_main:   # under torchrun rank 0 measures (the EMA nets are identical)
            return {}, None
        fake = self.generate_eval()
        if not np.isfinite(fake).all():
            return {"swd": math.inf}, None
        metrics = patch_swd(self.eval_real, fake)
        n = self.cfg.preview_grid
        preview = image_grid(self.data.from_model(fake[: n * n]), n)
        return metrics, preview

    def score(self, metrics: dict[str, float]) -> float:
        swd = metrics.get("swd", math.inf)
        return -swd if math.isfinite(swd) else -math.inf

    # --------------------------------------------------------------------- state
    def model_networks(self) -> dict:
        return {"generator": self.G_ema}

    def normalization(self) -> dict:
        return {"images": self.data.norm.to_dict()}

    def data_record(self) -> dict:
        return {"train_images": len(self.data.planes), "kimg": round(self.images_seen / 1000, 2)}

    def training_state(self) -> dict:
        return {"generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                "generator_ema": self.G_ema.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "ada": self.ada.state(),
                "pl_mean": self.pl_mean.detach().clone(), "last_reg": dict(self.last_reg)}

    def load_training_state(self, state: dict) -> None:
        path = self.paths["state"]
        checkpoint.load_weights(self.G, state["generator"], path)
        checkpoint.load_weights(self.D, state["discriminator"], path)
        checkpoint.load_weights(self.G_ema, state["generator_ema"], path)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.ada.load(state["ada"])
        self.pl_mean = state["pl_mean"].to(self.device).clone()
        self.last_reg = {k: float(v) for k, v in state["last_reg"].items()}
        if self.dist.enabled:   # the saved random state is one process's: give each its own again
            self._separate_random_streams()

    def _separate_random_streams(self) -> None:
        """Under torchrun every process draws its own crops, latents, noise and augmentation."""
        torch.manual_seed(self.seed + 1_000_033 * self.dist.rank + 7919 * self.step)
        self.rng = np.random.default_rng([self.seed, self.dist.rank, self.step])
        self.sampler.rng = self.rng


class StyleGAN2Family(Family):
    name = "stylegan2"
    title = "StyleGAN2"
    summary = "generate new images like yours from Gaussian noise"
    config_class = StyleGAN2Config
    inputs = (DataInput("images", "a TIFF stack, one large image (random crops are taken) or a folder of "
                        "TIFFs", label="Images"),)
    apply_mode = "noise"
    plot = Plot(losses=("g", "d", "r1", "pl"), metrics=("swd",), status=("kimg", "aug_p"))
    architecture_fields = ARCHITECTURE

    def make_config(self, values, device):
        values = dict(values)
        if values.get("size", "auto") == "auto":
            values["size"] = "small" if device.type == "cpu" else "full"
        return super().make_config(values, device)

    def split_config(self, cfg) -> tuple[dict, dict]:
        """The class fields are architecture of class-conditional models only (unconditional
        files keep their header)."""
        arch, training = super().split_config(cfg)
        if not cfg.c_dim:
            for k in CLASS_FIELDS:
                arch.pop(k, None)
        return arch, training

    def read_input(self, inp, path, read):
        """The training images, read here to know where each plane comes from: its file (for
        --labels) and, for a folder whose images are in sub-folders (one per class, nothing at
        the top), the sub-folder's name as its class."""
        from ..io import expand_paths, list_images
        from ..zarr_io import is_zarr_path

        path = Path(path).expanduser()
        layout: list[tuple[Path, str | None]]
        subs = []
        if path.is_dir() and not is_zarr_path(path):
            try:
                list_images(path)
            except NapariGanError:   # no images at the top: one sub-folder per class?
                subs = sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith(".")
                              and not is_zarr_path(d))
        if subs:
            layout = []
            for sub in subs:
                try:
                    layout += [(f, sub.name) for f in list_images(sub)]
                except NapariGanError:
                    continue   # a sub-folder without images is no class
            if not layout:
                raise NapariGanError(f"No TIFF files (.tif/.tiff) or OME-Zarr folders (.zarr) found in folder "
                                     f"'{path}' or in its sub-folders.")
        else:
            layout = [(f, None) for f in expand_paths(path)]
        images = ClassedImages()
        for f, cls in layout:
            planes = read(f)
            where = f"'{cls}/{f.name}'" if cls else f"'{f.name}'"
            images.planes += planes
            images.names += [where if len(planes) == 1 else f"{where} plane {i + 1}" for i in range(len(planes))]
            images.files += [f] * len(planes)
            if cls is not None:
                images.classes += [cls] * len(planes)
        return images

    def make_trainer(self, cfg, images, out_dir, budget, device, seed, normalization, **run):
        norm = Normalizer.from_dict(normalization["images"]) if normalization else None
        found = plane_classes(images["images"], cfg)
        classes = None
        if found is not None:
            cfg.class_names, classes = found
            cfg.c_dim = len(cfg.class_names)
        elif cfg.c_dim:
            raise NapariGanError("This run is class-conditional; its images need their classes.")
        data = ImageSet.build(images["images"].planes, cfg.resolution, images["images"].names, norm, classes)
        return StyleGAN2Trainer(cfg, data, out_dir, budget, device, seed, **run)

    def load_applier(self, header, device="auto", amp=True):
        from ..device import resolve_device
        from ..generation import ImageGenerator

        if header.role != "model":
            raise NapariGanError(f"'{header.path}' is a {header.role} file, not a model; give the run folder "
                                 f"or its {checkpoint.MODEL_FILENAME}.")
        cfg = self.config_from_header(header)
        try:
            norm = Normalizer.from_dict(header.normalization["images"])
        except (KeyError, TypeError, ValueError, NapariGanError) as exc:
            raise NapariGanError(f"'{header.path}': {exc}") from exc
        weights = checkpoint.load_networks(header, ["generator"])["generator"]
        generator = checkpoint.build_checked(lambda: build_generator(cfg), weights, header.path)
        return ImageGenerator(generator, norm, resolve_device(device), cfg.to_dict(), header.path)

    def describe(self, header) -> str:
        res = header.architecture.get("resolution")
        names = header.architecture.get("class_names")
        classes = f", classes {', '.join(map(str, names))}" if isinstance(names, list) and names else ""
        return "StyleGAN2 generator" + (f", {res}x{res} pixels" if res else "") + classes

    def bioimageio_exporter(self):
        from ..export import StyleGAN2Exporter

        return StyleGAN2Exporter()


class ClassedImages(Images):
    """Training images with the file of each plane and, when read from one sub-folder per
    class, its class name (``classes``; empty otherwise)."""

    def __init__(self, planes=None, names=None, files=None, classes=None):
        super().__init__(list(planes or []), list(names or []), list(classes or []))
        self.files: list[Path] = list(files or [])


register(StyleGAN2Family())
