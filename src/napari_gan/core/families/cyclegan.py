"""CycleGAN (Zhu et al. 2017): image-to-image translation learnt from unpaired images.

Two generators translate A -> B (``a2b``) and B -> A (``b2a``); two unconditional PatchGAN
discriminators tell real B from translated A (``D_b``) and real A from translated B
(``D_a``). The generators learn from the adversarial loss, a cycle loss (``b2a(a2b(a))``
should give ``a`` back, and the other way round) and an identity loss (``a2b(b)`` should
leave ``b`` alone). Defaults follow junyanz/pytorch-CycleGAN-and-pix2pix: LSGAN loss, cycle
weight 10, identity weight 0.5 x the cycle weight, a pool of the last 50 translated images
per discriminator, Adam 2e-4 with betas (0.5, 0.999), the learning rate constant for the
first half of the schedule and decaying linearly to zero over the second. The sizes are
chosen for CPUs (see :class:`CycleGANConfig`).

Pieces, in the order they are used:

* :class:`Domain` / :class:`DomainSampler`: the images of one domain (any number, any
  sizes, memory-mapped where possible) with their own normaliser (per image or over the
  domain), sampled as random patches with random flips and 90-degree rotations.
* :class:`ImagePool`: the history of translated images each discriminator learns from (its
  contents and random stream are part of the training state, so resuming is exact).
* :class:`CycleGANTrainer`: one step = a generator update (both directions, one forward call
  of :class:`CycleForward`, so DistributedDataParallel sees each generator once per step),
  then a discriminator update on real images and pooled translations.
* :class:`CycleGANFamily`: ``napari-gan train cyclegan --a A --b B``; ``napari-gan predict
  --direction a2b|b2a`` (a :class:`~napari_gan.core.inference.Predictor` for the chosen
  generator).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint, distributed, settings
from ..data import Normalizer, check_finite, dihedral
from ..device import autocast, configure_backends, prefers_channels_last
from ..errors import NapariGanError
from ..inference import PredictSettings
from ..losses import discriminator_loss, generator_loss, gradient_penalty
from ..metrics import patch_swd, psnr, ssim
from ..models.patchgan import PatchGANDiscriminator
from ..models.resnet import ResNetGenerator
from ..models.unet import UNetGenerator
from ..settings import setting
from ..training.base import Budget, Trainer
from . import DataInput, Family, Plot, adversarial, register, stored_config

GENERATORS = ("resnet", "unet")
DIRECTIONS = ("a2b", "b2a")
NORMALIZE_CHOICES = (("each image", "image"), ("whole domain", "dataset"))
#: network fields stored as the model file's architecture (the rest goes in its training record)
ARCHITECTURE = ("generator", "channels", "width", "blocks", "depth", "norm", "residual")
#: fixed crops of each domain for the validation metrics (SWD needs a few hundred patches)
EVAL_CROPS = 16
EVAL_CROP = 128
#: paired validation crops at most (with --val-a/--val-b)
VAL_PAIR_CROPS = 8


@dataclass
class CycleGANConfig:
    """Everything that defines a CycleGAN model and its training (saved in the model file)."""

    channels: int = setting(1, "channels per image, the same in both domains (the channel axis is read "
                            "from the file's axes)", min=1, max=64, widget=False)
    generator: str = setting("resnet", "generator network: resnet (CycleGAN's: residual blocks at 1/4 "
                             "resolution) or unet (faster, more local)", choices=GENERATORS,
                             label="Generator")
    width: int = setting(32, "generator channels at full resolution (the reference uses 64; 32 trains "
                         "about 3x faster on a CPU)", min=1, max=1024, label="Generator width")
    blocks: int = setting(6, "residual blocks of the resnet generator (the reference: 9 for 256-pixel "
                          "patches, 6 for 128)", min=0, max=64, advanced=True, label="ResNet blocks")
    depth: int = setting(3, "levels of the unet generator", min=1, max=6, advanced=True, label="uNet depth")
    norm: str = "none"
    # Off by default: started at the identity, the generators stay there. On W2S noisy -> clean
    # (benchmarks/cyclegan_w2s.py --steps N --set residual=...) the cycle loss held residual
    # generators at the identity: 17.4 dB after 500 steps (the noisy input: 18.6 dB), while from
    # a random start 300 steps reached 25.7 dB.
    residual: bool = setting(False, "the generators predict a correction to their input, so training starts "
                             "from the identity (for domains that differ only a little)", advanced=True,
                             label="Residual generators")
    disc_width: int = adversarial.disc_width()
    disc_layers: int = adversarial.disc_layers()
    spectral_norm: bool = adversarial.spectral_norm()
    gan_mode: str = adversarial.gan_mode()
    cycle_weight: float = setting(10.0, "weight of the cycle loss (A -> B -> A and B -> A -> B, L1)",
                                  min=0, max=1e6, advanced=True, label="Cycle weight")
    identity_weight: float = setting(0.5, "weight of the identity loss (a2b(B) = B, b2a(A) = A) as a fraction "
                                     "of the cycle weight; 0: off (for a change of stain or modality, where "
                                     "the output should not look like the input)", min=0, max=1e3, advanced=True,
                                     label="Identity weight")
    pool_size: int = setting(50, "translated images kept per discriminator, which learns from this history "
                             "(0: from the latest only)", min=0, max=10_000, advanced=True, label="Image pool")
    gp_weight: float = adversarial.gp_weight()
    lr: float = adversarial.lr("generators")
    lr_d: float | None = adversarial.lr_d("generators")
    beta1: float = adversarial.beta1()
    beta2: float = adversarial.beta2()
    lr_decay: bool = setting(True, "linear decay of the learning rates to zero over the second half of the "
                             "schedule", advanced=True, label="Learning-rate decay")
    patch: int = setting(64, "training patch size in pixels (every image must be at least this large)",
                         min=8, max=4096, label="Patch size")
    batch: int = setting(4, "patches of each domain per step (over all processes under torchrun)", min=1,
                         max=4096, label="Batch size")
    # per image: 25.7 dB against 21.6 dB per domain on W2S noisy -> clean after 300 steps
    normalize: str = setting("image", "intensity range of each domain: each image its own (the default: "
                             "unpaired domains give nothing to calibrate absolute intensities against, and "
                             "exposure, bleaching and per-image export scaling stop mattering), or one range "
                             "for the whole domain (keeps relative brightness)", choices=NORMALIZE_CHOICES,
                             advanced=True, label="Normalisation")
    amp: bool = adversarial.amp()
    compile: bool = adversarial.compile()

    def __post_init__(self):
        settings.check(self)
        if self.lr_d is None:
            self.lr_d = self.lr
        if self.generator == "unet" and self.patch < 2**self.depth:
            raise NapariGanError(f"The patch size must be at least {2**self.depth} for a uNet of depth "
                                 f"{self.depth}.")
        smallest = 3 * 2**self.disc_layers
        if self.patch < smallest:
            raise NapariGanError(
                f"Patches of {self.patch} pixels are too small for a discriminator of {self.disc_layers} "
                f"layers (it needs at least {smallest}); use a larger --patch or fewer --disc-layers.")

    def to_dict(self) -> dict:
        return asdict(self)


def build_generator(cfg: CycleGANConfig) -> torch.nn.Module:
    if cfg.generator == "unet":
        return UNetGenerator(cfg.channels, cfg.channels, cfg.depth, cfg.width, 1, "none", cfg.residual)
    return ResNetGenerator(cfg.channels, cfg.channels, cfg.width, cfg.blocks, cfg.norm, cfg.residual)


def generator_multiple(cfg: CycleGANConfig) -> int:
    """Tiles are rounded to a multiple of this (the generator's downsampling)."""
    return 2**cfg.depth if cfg.generator == "unet" else ResNetGenerator.multiple


def build_discriminator(cfg: CycleGANConfig) -> PatchGANDiscriminator:
    return PatchGANDiscriminator(cfg.channels, cfg.channels, cfg.disc_width, cfg.disc_layers,
                                 cfg.spectral_norm, conditional=False)


class CycleForward(torch.nn.Module):
    """Both translations, both cycles and (with ``identity``) both identity passes in one
    forward call: the module DistributedDataParallel wraps, so each generator's gradients
    are reduced once per step. The identity pass shares a batch with the translation
    (``a2b([a, b])``): one larger convolution batch is faster than two small ones."""

    def __init__(self, g_a2b: torch.nn.Module, g_b2a: torch.nn.Module):
        super().__init__()
        self.g_a2b, self.g_b2a = g_a2b, g_b2a

    def forward(self, a: torch.Tensor, b: torch.Tensor, identity: bool = True):
        n = a.shape[0]
        if identity:
            fake_b, idt_b = self.g_a2b(torch.cat([a, b])).split([n, b.shape[0]])
            fake_a, idt_a = self.g_b2a(torch.cat([b, a])).split([b.shape[0], n])
        else:
            fake_b, fake_a, idt_a, idt_b = self.g_a2b(a), self.g_b2a(b), None, None
        return fake_b, fake_a, self.g_b2a(fake_b), self.g_a2b(fake_a), idt_a, idt_b


# ---------------------------------------------------------------------------- data
@dataclass
class Domain:
    """Raw planes ``(C, H, W)`` of one domain (possibly memory-mapped) and its normaliser:
    one range for the domain, or with ``norm.per_image`` each plane its own."""

    planes: list[np.ndarray]
    norm: Normalizer
    names: list[str] = field(default_factory=list)
    plane_norms: list[Normalizer] = field(default_factory=list)
    label: str = "A"

    @classmethod
    def build(cls, planes: list[np.ndarray], names: list[str] | None, patch: int, label: str,
              norm: Normalizer | None = None, per_image: bool = True,
              size_hint: str = "the {p}x{p} training patches; choose a smaller --patch or larger images") -> "Domain":
        """Check the planes (not empty, one channel count, each at least a patch, finite) and fit
        the normaliser unless given (resuming)."""
        planes = list(planes or [])
        if not planes:
            raise NapariGanError(f"Domain {label} has no images; give at least one image of each domain.")
        names = list(names or [f"{label} image {i + 1}" for i in range(len(planes))])
        for plane, name in zip(planes, names):
            if plane.ndim != 3:
                raise NapariGanError(f"{name} (domain {label}) is not a (channels, Y, X) plane.")
            if plane.shape[0] != planes[0].shape[0]:
                raise NapariGanError(f"{name} (domain {label}) has {plane.shape[0]} channel(s) but "
                                     f"{names[0]} has {planes[0].shape[0]}; all images of a domain need the "
                                     "same channels.")
            h, w = plane.shape[-2:]
            if min(h, w) < patch:
                raise NapariGanError(f"{name} (domain {label}) is only {h}x{w} pixels, smaller than "
                                     f"{size_hint.format(p=patch)}.")
            check_finite(plane, f"{name} (domain {label})")
        if norm is None:
            norm = Normalizer.fit(planes, name=f"the domain {label} images", per_image=per_image)
        elif norm.channels != planes[0].shape[0]:
            raise NapariGanError(f"The stored normalisation of domain {label} has {norm.channels} channel(s) "
                                 f"but its images have {planes[0].shape[0]}.")
        plane_norms = [norm.for_plane(p) for p in planes] if norm.per_image else []
        return cls(planes, norm, names, plane_norms, label)

    @property
    def channels(self) -> int:
        return int(self.planes[0].shape[0])

    def norm_for(self, index: int) -> Normalizer:
        return self.plane_norms[index] if self.plane_norms else self.norm

    def crop(self, index: int, r: int, c: int, size: int) -> np.ndarray:
        """The normalised ``size x size`` crop of plane ``index`` at (r, c)."""
        return self.norm_for(index).normalize(self.planes[index][:, r:r + size, c:c + size])

    def fixed_crops(self, size: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int]]:
        """``n`` normalised crops ``(n, C, size, size)`` at fixed random places (planes drawn
        by area; the first from plane 0), and where the first one lies."""
        areas = np.array([p.shape[-2] * p.shape[-1] for p in self.planes], np.float64)
        crops, first = [], (0, 0)
        for k in range(n):
            i = 0 if k == 0 else int(rng.choice(len(self.planes), p=areas / areas.sum()))
            h, w = self.planes[i].shape[-2:]
            r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            if k == 0:
                first = (r, c)
            crops.append(self.crop(i, r, c, size))
        return np.stack(crops), first


class DomainSampler:
    """Random normalised patches with random flips/90-degree rotations; planes are drawn in
    proportion to their area. Drawing (positions) is separate from cutting so that DDP
    processes draw the same global batch from one random stream and cut only their share."""

    def __init__(self, domain: Domain, patch: int, rng: np.random.Generator, device: torch.device | None = None):
        self.domain, self.patch, self.rng = domain, patch, rng
        areas = np.array([p.shape[-2] * p.shape[-1] for p in domain.planes], np.float64)
        self.weights = areas / areas.sum()
        # On a GPU, planes that fit are normalised and uploaded once and cut there
        # (the same patches as on the host: see training/patches.py).
        self.on_device = None
        if device is not None and device.type == "cuda":
            from ..training.patches import FREE_FRACTION, MAX_BYTES

            free, _ = torch.cuda.mem_get_info(device)
            if 4 * sum(p.size for p in domain.planes) <= min(MAX_BYTES / 2, FREE_FRACTION / 2 * free):
                self.on_device = [torch.from_numpy(domain.norm_for(i).normalize(p)).to(device)
                                  for i, p in enumerate(domain.planes)]

    def draw(self, n: int) -> list[tuple[int, int, int, int]]:
        p, draws = self.patch, []
        for _ in range(n):
            i = int(self.rng.choice(len(self.domain.planes), p=self.weights))
            h, w = self.domain.planes[i].shape[-2:]
            r, c = int(self.rng.integers(0, h - p + 1)), int(self.rng.integers(0, w - p + 1))
            draws.append((i, r, c, int(self.rng.integers(0, 8))))
        return draws

    def cut(self, draws, device: torch.device) -> torch.Tensor:
        p = self.patch
        if self.on_device is not None:
            return torch.stack([dihedral(self.on_device[i][:, r:r + p, c:c + p], k) for i, r, c, k in draws])
        x = np.stack([np.ascontiguousarray(dihedral(self.domain.crop(i, r, c, p), k)) for i, r, c, k in draws])
        x = torch.from_numpy(x)
        return x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x.to(device)


class ImagePool:
    """The history buffer of Shrivastava et al. (2017) as CycleGAN uses it: while filling,
    each new image is stored and returned; then with probability 1/2 a stored image is
    returned and replaced by the new one, else the new one is returned."""

    def __init__(self, size: int):
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif rng.random() > 0.5:
                j = int(rng.integers(0, self.size))
                out.append(self.images[j])
                self.images[j] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state(self) -> torch.Tensor:
        return torch.stack(self.images) if self.images else torch.zeros(0)

    def load(self, stored: torch.Tensor, device: torch.device) -> None:
        self.images = [t.to(device).clone() for t in stored] if stored.ndim == 4 else []


# -------------------------------------------------------------------------- trainer
class CycleGANTrainer(Trainer):
    """Trains both generators and both discriminators; yields losses (cycle, identity,
    adversarial, discriminator) and at each validation a preview (a2b of a fixed A crop) and
    metrics (see :meth:`validate`)."""

    kind = "cyclegan"
    state_parts = ("generator_a2b", "generator_b2a", "discriminator_a", "discriminator_b", "opt_g", "opt_d",
                   "pool_a", "pool_b", "pool_rng")

    def __init__(self, cfg: CycleGANConfig, a: Domain, b: Domain, out_dir: str | Path, budget: Budget,
                 device: torch.device, seed: int = 0, val_pairs: tuple[Domain, Domain] | None = None,
                 log_every: int = 10, val_every: int = 100, compile: bool = False):
        # cfg.batch is the global batch of each domain; under torchrun each of N processes
        # trains on its 1/N share, drawn from one random stream shared by all processes, and
        # the image pools hold the global batch (identical in every process), so N processes
        # follow the trajectory of one.
        per_process = distributed.share_of_batch(cfg.batch, device)
        super().__init__(out_dir, budget, device, seed, log_every, val_every, per_process)
        if a.channels != b.channels:
            raise NapariGanError(
                f"The domain A images have {a.channels} channel(s) but the domain B images have {b.channels}; "
                "CycleGAN translates between images with the same channels (pick matching channels).")
        cfg.channels = a.channels
        self.cfg, self.a, self.b = cfg, a, b
        self.rng = np.random.default_rng([seed, 0])     # the same stream in every process
        self.pool_rng = np.random.default_rng([seed, 2])
        self.sampler_a = DomainSampler(a, cfg.patch, self.rng, device)
        self.sampler_b = DomainSampler(b, cfg.patch, self.rng, device)
        self.pool_a, self.pool_b = ImagePool(cfg.pool_size), ImagePool(cfg.pool_size)
        self._eval_setup(seed, val_pairs)
        configure_backends(device)
        self.G_a2b, self.G_b2a = build_generator(cfg).to(device), build_generator(cfg).to(device)
        self.D_a, self.D_b = build_discriminator(cfg).to(device), build_discriminator(cfg).to(device)
        self.channels_last = prefers_channels_last(device)
        if self.channels_last:
            for net in self.networks:
                net.to(memory_format=torch.channels_last)
        # *_train: DDP-wrapped (optionally compiled) for the training passes; the plain modules
        # serve saving, validation and the passes that need no gradient sync.
        self.cycle_train = distributed.wrap(CycleForward(self.G_a2b, self.G_b2a), device)
        self.D_a_train = distributed.wrap(self.D_a, device)
        self.D_b_train = distributed.wrap(self.D_b, device)
        if (compile or cfg.compile) and cfg.gan_mode != "wgan-gp":   # no double backward through compiled code
            self.cycle_train = torch.compile(self.cycle_train)
            self.D_a_train, self.D_b_train = torch.compile(self.D_a_train), torch.compile(self.D_b_train)
        fused = device.type == "cuda"
        g_params = [*self.G_a2b.parameters(), *self.G_b2a.parameters()]
        d_params = [*self.D_a.parameters(), *self.D_b.parameters()]
        self.opt_g = torch.optim.Adam(g_params, cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
        self.opt_d = torch.optim.Adam(d_params, cfg.lr_d, betas=(cfg.beta1, cfg.beta2), fused=fused)

    @property
    def networks(self) -> tuple[torch.nn.Module, ...]:
        return self.G_a2b, self.G_b2a, self.D_a, self.D_b

    def _eval_setup(self, seed: int, val_pairs) -> None:
        """Fixed crops for the metrics and the preview (a separate random stream: resuming and
        validating never change the training draws)."""
        rng = np.random.default_rng([seed, 7])
        size = min(EVAL_CROP, *(min(p.shape[-2:]) for p in self.a.planes + self.b.planes))
        self.eval_a, first = self.a.fixed_crops(size, EVAL_CROPS, rng)
        self.eval_b, _ = self.b.fixed_crops(size, EVAL_CROPS, rng)
        self.val_pairs: list[tuple[np.ndarray, np.ndarray]] = []
        if val_pairs is not None:
            va, vb = val_pairs
            per_plane = max(1, VAL_PAIR_CROPS // len(va.planes))
            for i, (pa, pb) in enumerate(zip(va.planes, vb.planes)):
                h, w = pa.shape[-2:]
                s = min(EVAL_CROP * 2, h, w)
                for c in np.linspace(0, w - s, per_plane).astype(int):
                    self.val_pairs.append((va.crop(i, 0, int(c), s), vb.crop(i, 0, int(c), s)))
                    if len(self.val_pairs) >= VAL_PAIR_CROPS:
                        break
                if len(self.val_pairs) >= VAL_PAIR_CROPS:
                    break
        # The preview is a2b of the first crop: plane 0 of the validation A images (when given)
        # or of domain A, from this (row, column); the widget places its layer there.
        if self.val_pairs:
            self.preview_crop, self.preview_origin = self.val_pairs[0][0], (0, 0)
        else:
            self.preview_crop, self.preview_origin = self.eval_a[0], first

    def describe(self) -> str:
        cfg = self.cfg
        net = f"resnet-{cfg.blocks}" if cfg.generator == "resnet" else f"unet-{cfg.depth}"
        norm = "per image" if self.a.norm.per_image else "per domain"
        return (f"{len(self.a.planes)} image(s) of A <-> {len(self.b.planes)} of B, {net} width {cfg.width}, "
                f"{cfg.patch}-pixel patches x {cfg.batch}, normalised {norm}")

    # -------------------------------------------------------------------- steps
    def _set_lr(self, progress: float) -> None:
        """Constant, then linear decay to zero over the second half of the schedule (the
        reference's ``linear`` policy), times the scale that NaN recovery lowers."""
        factor = self.lr_scale
        if self.cfg.lr_decay and progress > 0.5:
            factor *= max(0.0, (1.0 - progress) / 0.5)
        for opt, lr in ((self.opt_g, self.cfg.lr), (self.opt_d, self.cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * factor

    def _batch(self, sampler: DomainSampler) -> torch.Tensor:
        draws = sampler.draw(self.cfg.batch)[distributed.global_slice(self.cfg.batch, self.dist)]
        x = sampler.cut(draws, self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _gather(self, t: torch.Tensor) -> torch.Tensor:
        """The global batch of ``t`` (every process's share, in rank order)."""
        if not distributed.active():
            return t
        import torch.distributed as dist

        where = distributed._tensor_device(self.device)
        t = t.detach().float().contiguous().to(where)
        parts = [torch.empty_like(t) for _ in range(self.dist.world_size)]
        dist.all_gather(parts, t)
        return torch.cat(parts).to(self.device)

    def _pooled(self, pool: ImagePool, fake: torch.Tensor) -> torch.Tensor:
        """This process's share of the pool's answer to the global batch of ``fake``."""
        pooled = pool.query(self._gather(fake.detach().float()), self.pool_rng)
        pooled = pooled[distributed.global_slice(self.cfg.batch, self.dist)]
        return pooled.contiguous(memory_format=torch.channels_last) if self.channels_last else pooled

    def _adversarial(self, logits: torch.Tensor) -> torch.Tensor:
        # losses.generator_loss("lsgan") is 0.5 (D - 1)^2 (Mao et al.); the reference's
        # generator uses the full MSE, so double it to keep its 1 : 10 balance with the cycle loss
        # (the discriminator's 0.5 factor matches the reference as it is).
        scale = 2.0 if self.cfg.gan_mode == "lsgan" else 1.0
        return scale * generator_loss(self.cfg.gan_mode, logits)

    def _d_loss(self, d_train, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Loss of one discriminator on real images and (pooled) translations, in one pass."""
        cfg = self.cfg
        with autocast(self.device, cfg.amp):
            logits = d_train(torch.cat([real, fake.to(real.dtype)]))
        real_logits, fake_logits = logits.split([real.shape[0], fake.shape[0]])
        loss = discriminator_loss(cfg.gan_mode, real_logits, fake_logits)
        if cfg.gan_mode == "wgan-gp":
            loss = loss + cfg.gp_weight * gradient_penalty(d_train, None, real.float(), fake.float())
        return loss

    def train_step(self, progress: float) -> dict[str, float]:
        cfg = self.cfg
        self._set_lr(progress)
        a, b = self._batch(self.sampler_a), self._batch(self.sampler_b)
        identity = cfg.identity_weight > 0 and cfg.cycle_weight > 0
        self.G_a2b.train()
        self.G_b2a.train()
        # generators: adversarial + cycle + identity, the discriminators frozen
        self.D_a.requires_grad_(False)
        self.D_b.requires_grad_(False)
        with autocast(self.device, cfg.amp):
            fake_b, fake_a, rec_a, rec_b, idt_a, idt_b = self.cycle_train(a, b, identity)
            adv = self._adversarial(self.D_b(fake_b)) + self._adversarial(self.D_a(fake_a))
        cycle = 0.5 * ((rec_a.float() - a).abs().mean() + (rec_b.float() - b).abs().mean())
        g_loss = adv + 2 * cfg.cycle_weight * cycle
        values: dict[str, torch.Tensor] = {"cycle": cycle.detach()}
        if identity:
            idt = 0.5 * ((idt_b.float() - b).abs().mean() + (idt_a.float() - a).abs().mean())
            g_loss = g_loss + 2 * cfg.cycle_weight * cfg.identity_weight * idt
            values["identity"] = idt.detach()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        # discriminators: real images against translations from the image pools
        self.D_a.requires_grad_(True)
        self.D_b.requires_grad_(True)
        d_loss = (self._d_loss(self.D_b_train, b, self._pooled(self.pool_b, fake_b))
                  + self._d_loss(self.D_a_train, a, self._pooled(self.pool_a, fake_a)))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        values["g_adv"] = adv.detach() / 2
        values["d"] = d_loss.detach() / 2
        # one host sync per step; under DDP the losses of the global batch (every process sees
        # the same numbers and takes the same decisions, e.g. a NaN rollback)
        return dict(zip(values, distributed.mean_values(list(values.values()), self.device)))

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def _translate(self, net: torch.nn.Module, x: np.ndarray, chunk: int = 8) -> np.ndarray:
        out = []
        for part in torch.from_numpy(np.ascontiguousarray(x)).split(chunk):
            part = part.to(self.device)
            if self.channels_last:
                part = part.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.cfg.amp):
                out.append(net(part).float().cpu())
        return torch.cat(out).numpy()

    def validate(self) -> tuple[dict[str, float], np.ndarray | None]:
        """Metrics, the score first (higher is better):

        * ``val_psnr``/``val_ssim`` (with validation pairs): a2b(val A) against val B, the
          measure of the task itself, so it is the score when there are pairs;
        * ``neg_swd``: minus the sliced Wasserstein distance (multi-scale 7x7 patches) between
          a2b of fixed A crops and fixed real B crops: how much the translations look like B.
          Without pairs it is the score. The cycle PSNR is not: the identity (the residual
          generators' starting point) reconstructs perfectly while translating nothing;
        * ``cycle_psnr``: b2a(a2b(A crops)) against the crops, in dB (normalised units).
        """
        if not self.dist.is_main:   # under DDP rank 0 validates
            return {}, None
        self.G_a2b.eval()
        self.G_b2a.eval()
        metrics: dict[str, float] = {}
        if self.val_pairs:
            preds = [self._translate(self.G_a2b, x[None])[0] for x, _ in self.val_pairs]
            metrics["val_psnr"] = float(np.mean([psnr(p, y, 1.0) for p, (_, y) in zip(preds, self.val_pairs)]))
            metrics["val_ssim"] = float(np.mean([ssim(p, y, 1.0) for p, (_, y) in zip(preds, self.val_pairs)]))
            preview = preds[0]
        fake_b = self._translate(self.G_a2b, self.eval_a)
        if not np.isfinite(fake_b).all():
            return {**metrics, "neg_swd": -math.inf}, None
        metrics["neg_swd"] = -patch_swd(self.eval_b, fake_b)["swd"]
        rec_a = self._translate(self.G_b2a, fake_b)
        metrics["cycle_psnr"] = float(np.mean([psnr(r, x, 1.0) for r, x in zip(rec_a, self.eval_a)]))
        if not self.val_pairs:
            preview = fake_b[0]
        preview = self.b.norm.denormalize(preview)
        return metrics, preview[0] if preview.shape[0] == 1 else preview

    # --------------------------------------------------------------------- state
    def model_networks(self) -> dict:
        return {"generator_a2b": self.G_a2b, "generator_b2a": self.G_b2a}

    def normalization(self) -> dict:
        return {"a": self.a.norm.to_dict(), "b": self.b.norm.to_dict()}

    def data_record(self) -> dict:
        return {"train_images_a": len(self.a.planes), "train_images_b": len(self.b.planes),
                "validation": "paired images" if self.val_pairs else "fixed training crops (unpaired)"}

    def training_state(self) -> dict:
        return {"generator_a2b": self.G_a2b.state_dict(), "generator_b2a": self.G_b2a.state_dict(),
                "discriminator_a": self.D_a.state_dict(), "discriminator_b": self.D_b.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "pool_a": self.pool_a.state(), "pool_b": self.pool_b.state(),
                "pool_rng": self.pool_rng.bit_generator.state}

    def load_training_state(self, state: dict) -> None:
        path = self.paths["state"]
        for name, net in zip(("generator_a2b", "generator_b2a", "discriminator_a", "discriminator_b"),
                             self.networks):
            checkpoint.load_weights(net, state[name], path)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.pool_a.load(state["pool_a"], self.device)
        self.pool_b.load(state["pool_b"], self.device)
        self.pool_rng.bit_generator.state = state["pool_rng"]

    def reseed(self, entropy: list[int]) -> None:
        """New streams after a NaN rollback: the same in every process (they draw one global
        batch and keep identical pools), so the rank in ``entropy`` is left out; the
        rollback count (the same everywhere: losses are averaged before the check) makes
        each replay differ."""
        shared = [self.seed, self.step, 1_000 + self.rollbacks_total]
        super().reseed(shared)
        self.pool_rng.bit_generator.state = np.random.default_rng(shared + [2]).bit_generator.state


# --------------------------------------------------------------------------- family
@dataclass
class CycleGANPredictSettings(PredictSettings):
    """Applying a CycleGAN model: the tiling settings plus the direction."""

    direction: str = setting("a2b", "which generator to apply: a2b (domain A to B) or b2a (B to A)",
                             choices=DIRECTIONS, label="Direction")


class CycleGANFamily(Family):
    name = "cyclegan"
    title = "CycleGAN"
    summary = "translate images between two domains, learnt from unpaired images (A <-> B)"
    config_class = CycleGANConfig
    inputs = (
        DataInput("a", "domain A: a TIFF file, a folder of TIFFs or a stack (any number and size; no pairing "
                  "with B)", label="Domain A"),
        DataInput("b", "domain B: a TIFF file, a folder of TIFFs or a stack (other fields, sizes and numbers "
                  "than A)", label="Domain B"),
        DataInput("val_a", "validation images of domain A whose B counterparts are known (optional): scores "
                  "a2b(val A) against val B", label="Validation A", optional=True),
        DataInput("val_b", "the B counterparts of the validation A images (folders: matched by file name)",
                  label="Validation B", optional=True, paired_with="val_a"),
    )
    apply_mode = "image"
    plot = Plot(losses=("cycle", "identity", "g_adv", "d"),
                metrics=("val_psnr", "val_ssim", "neg_swd", "cycle_psnr"))
    networks = ("generator_a2b", "generator_b2a")
    architecture_fields = ARCHITECTURE

    @property
    def apply_settings(self) -> type:
        return CycleGANPredictSettings

    def make_trainer(self, cfg, images, out_dir, budget, device, seed, normalization, **run):
        norms = {"a": None, "b": None}
        if normalization:
            try:
                norms = {k: Normalizer.from_dict(normalization[k]) for k in norms}
            except (KeyError, TypeError) as exc:
                raise NapariGanError(f"The stored normalisation has no domain {exc}.") from exc
        per_image = cfg.normalize == "image"
        domains = {}
        for key in ("a", "b"):
            got = images.get(key)
            domains[key] = Domain.build(got.planes if got else [], got.names if got else None, cfg.patch,
                                        key.upper(), norms[key], per_image)
        a, b = domains["a"], domains["b"]
        val = None
        va, vb = images.get("val_a"), images.get("val_b")
        if bool(va and va.planes) != bool(vb and vb.planes):
            raise NapariGanError("Give both validation A and validation B images, or neither.")
        if va and va.planes:
            for pa, pb, name in zip(va.planes, vb.planes, va.names):
                if pa.shape != pb.shape:
                    raise NapariGanError(f"{name}: the validation A image is {'x'.join(map(str, pa.shape))} but "
                                         f"its B counterpart is {'x'.join(map(str, pb.shape))}; they must match.")
            if len(va.planes) != len(vb.planes):
                raise NapariGanError(f"{len(va.planes)} validation A image(s) but {len(vb.planes)} B; they pair one "
                                     "to one.")
            hint = "{p}x{p}, the least a validation image needs"
            val = (Domain.build(va.planes, va.names, 16, "A (validation)", a.norm, size_hint=hint),
                   Domain.build(vb.planes, vb.names, 16, "B (validation)", b.norm, size_hint=hint))
        return CycleGANTrainer(cfg, a, b, out_dir, budget, device, seed, val_pairs=val, **run)

    def load_applier(self, header, device="auto", amp=True, direction: str = "a2b"):
        """A :class:`~napari_gan.core.inference.Predictor` for the generator of ``direction``
        ("a2b" or "b2a"), normalising with the source domain and returning the target's units."""
        from ..device import resolve_device
        from ..inference import Predictor

        if direction not in DIRECTIONS:
            raise NapariGanError(f"--direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}.")
        source, target = direction[0], direction[-1]
        cfg = self.config_from_header(header)
        try:
            norms = header.normalization
            input_norm, target_norm = Normalizer.from_dict(norms[source]), Normalizer.from_dict(norms[target])
        except (KeyError, TypeError, ValueError, NapariGanError) as exc:
            raise NapariGanError(f"'{header.path}': {exc}") from exc
        name = f"generator_{direction}"
        weights = checkpoint.load_networks(header, [name])[name]
        generator = checkpoint.build_checked(lambda: build_generator(cfg), weights, header.path)
        config = {**cfg.to_dict(), "scale": 1, "in_channels": cfg.channels, "out_channels": cfg.channels,
                  "depth": int(math.log2(generator_multiple(cfg))), "direction": direction}
        return Predictor(generator, config, input_norm, target_norm, resolve_device(device), header.path, amp=amp)

    def describe(self, header) -> str:
        cfg = stored_config(header)
        net = cfg.get("generator", "resnet")
        return f"CycleGAN A <-> B translation ({net} generators), {cfg.get('channels', 1)} channel(s)"

    def bioimageio_exporter(self):
        from ..export import CycleGANExporter

        return CycleGANExporter()


register(CycleGANFamily())
