"""Pix2Pix: uNet generator + PatchGAN discriminator, L1 + adversarial loss.

``adv_weight=0`` trains the plain supervised uNet (the baseline). The adversarial term
is switched on after ``adv_warmup`` of the budget: the generator first learns the
content with L1 alone, then the discriminator sharpens it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint, distributed
from ..data import Normalizer, PairedPatchSampler, PairedSet, validation_crops
from ..device import autocast, configure_backends, prefers_channels_last
from ..errors import NapariGanError
from ..losses import GAN_MODES, discriminator_loss, generator_loss, gradient_penalty
from ..metrics import psnr, ssim
from ..models.patchgan import PatchGANDiscriminator
from ..models.unet import UNetGenerator
from ..training import patches
from ..training.base import Budget, StoredConfig, Trainer

TASKS = ("denoise", "sr")


@dataclass
class Pix2PixConfig(StoredConfig):
    """Everything that defines a Pix2Pix model and its training (saved in the model file)."""

    task: str = "denoise"
    scale: int = 1
    in_channels: int = 1
    out_channels: int = 1
    depth: int = 3
    width: int = 32
    norm: str = "none"
    residual: bool = True
    disc_width: int = 32
    disc_layers: int = 3
    spectral_norm: bool = True
    gan_mode: str = "lsgan"
    adv_weight: float = 1.0
    l1_weight: float = 100.0
    adv_warmup: float = 0.3
    gp_weight: float = 10.0
    lr: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay: bool = True
    patch: int = 96
    batch: int = 8
    val_fraction: float = 0.1
    amp: bool = True

    def __post_init__(self):
        if self.task not in TASKS:
            raise NapariGanError(f"Unknown task '{self.task}'; choose 'denoise' or 'sr'.")
        if self.task == "denoise":
            if self.scale not in (1,):
                raise NapariGanError("Denoising keeps the image size; --scale applies only to --task sr.")
        elif self.scale not in (2, 4):
            raise NapariGanError(f"Super-resolution scale must be 2 or 4, not {self.scale}.")
        if self.gan_mode not in GAN_MODES:
            raise NapariGanError(f"Unknown GAN loss '{self.gan_mode}'; choose one of {', '.join(GAN_MODES)}.")
        if not 1 <= self.depth <= 6:
            raise NapariGanError("The uNet depth must be between 1 and 6.")
        if self.patch < 2**self.depth:
            raise NapariGanError(f"The patch size must be at least {2**self.depth} for depth {self.depth}.")
        if self.batch < 1 or self.width < 1:
            raise NapariGanError("Batch size and width must be positive.")
        if not 0 <= self.val_fraction < 0.9:
            raise NapariGanError("The validation fraction must be between 0 and 0.9.")
        if self.adv_weight < 0 or self.l1_weight < 0:
            raise NapariGanError("Loss weights cannot be negative.")



def build_generator(cfg: Pix2PixConfig) -> UNetGenerator:
    return UNetGenerator(cfg.in_channels, cfg.out_channels, cfg.depth, cfg.width, cfg.scale,
                         cfg.norm, cfg.residual)


def build_discriminator(cfg: Pix2PixConfig) -> PatchGANDiscriminator:
    return PatchGANDiscriminator(cfg.in_channels, cfg.out_channels, cfg.disc_width,
                                 cfg.disc_layers, cfg.spectral_norm)


class Pix2PixTrainer(Trainer):
    kind = "pix2pix"

    def __init__(self, cfg: Pix2PixConfig, data: PairedSet, out_dir: str | Path, budget: Budget,
                 device: torch.device, seed: int = 0, val_data: PairedSet | None = None,
                 log_every: int = 10, val_every: int = 100, val_crop: int = 128,
                 compile: bool = False, gpu_patches: bool | None = None):
        # cfg.batch is the global batch; under torchrun each of the N processes trains on
        # its 1/N share of it (drawn from one random stream shared by all processes), so N
        # processes follow the same trajectory as one process with the same batch.
        per_process = distributed.share_of_batch(cfg.batch, device)
        super().__init__(out_dir, budget, device, seed, log_every, val_every, per_process)
        self.rng = np.random.default_rng([seed, 0])   # the same stream in every process
        if data.scale != cfg.scale:
            raise NapariGanError(f"The data are paired for scale {data.scale} but the model uses {cfg.scale}.")
        cfg.in_channels, cfg.out_channels = data.channels
        self.cfg = cfg
        if val_data is None:
            data, val_data = data.split_by_region(cfg.val_fraction, cfg.patch)
        self.data, self.val_data = data, val_data
        self.sampler = PairedPatchSampler(data, cfg.patch, self.rng)
        # Without a held-out region (tiny images) metrics and preview come from training crops.
        self.val_prefix = "val" if val_data is not None else "train"
        source = val_data if val_data is not None else data
        self.val_crops = validation_crops(source, val_crop)
        # The preview is the prediction of the first crop: plane 0 of ``source`` from this
        # (row, column) of its image, in input pixels; the widget places its layer there.
        self.preview_origin = (source.row_offset(0), 0)
        configure_backends(device)
        self.G = build_generator(cfg).to(device)
        self.D = build_discriminator(cfg).to(device)
        self.channels_last = prefers_channels_last(device)
        if self.channels_last:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        # G_train/D_train: DDP-wrapped (and optionally compiled) for the training passes;
        # self.G/self.D stay plain for saving, validation and passes needing no gradient sync.
        self.G_train = distributed.wrap(self.G, device)
        self.D_train = distributed.wrap(self.D, device)
        if compile and cfg.gan_mode != "wgan-gp":   # no double backward through compiled code
            self.G_train = torch.compile(self.G_train)
            self.D_train = torch.compile(self.D_train)
        if gpu_patches is None:
            gpu_patches = patches.fits_on_device(self.sampler, device)
        self.cutter = patches.DevicePatchCutter(self.sampler, device) if gpu_patches else None
        fused = device.type == "cuda"
        self.opt_g = torch.optim.Adam(self.G.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2), fused=fused)

    # -------------------------------------------------------------------- steps
    def _set_lr(self, fraction: float) -> None:
        """Constant, then a cosine decay to 5% over the second half of the budget."""
        factor = 1.0
        if self.cfg.lr_decay and fraction > 0.5:
            factor = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (fraction - 0.5) / 0.5))
        for opt, lr in ((self.opt_g, self.cfg.lr), (self.opt_d, self.cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = lr * factor

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        draws = self.sampler.draw(self.cfg.batch)[distributed.global_slice(self.cfg.batch, self.dist)]
        if self.cutter is not None:
            x, y = self.cutter.cut(draws)
        else:
            x, y = self.sampler.cut(draws)
            pin = self.device.type == "cuda"
            to = lambda a: torch.from_numpy(a).pin_memory().to(self.device, non_blocking=True) if pin \
                else torch.from_numpy(a).to(self.device)
            x, y = to(x), to(y)
        if self.channels_last:
            x, y = x.contiguous(memory_format=torch.channels_last), y.contiguous(memory_format=torch.channels_last)
        return x, y

    def train_step(self, fraction: float) -> dict[str, float]:
        cfg = self.cfg
        self._set_lr(fraction)
        x, y = self._batch()
        adversarial = cfg.adv_weight > 0 and fraction >= cfg.adv_warmup
        self.G.train()
        with autocast(self.device, cfg.amp):
            fake = self.G_train(x)
        values: dict[str, torch.Tensor] = {}
        g_adv = torch.zeros((), device=self.device)
        if adversarial:
            self.D.requires_grad_(True)
            with autocast(self.device, cfg.amp):
                d_loss = discriminator_loss(cfg.gan_mode, self.D_train(x, y), self.D_train(x, fake.detach()))
            if cfg.gan_mode == "wgan-gp":
                d_loss = d_loss + cfg.gp_weight * gradient_penalty(self.D_train, x, y, fake.detach().float())
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            self.D.requires_grad_(False)
            with autocast(self.device, cfg.amp):
                g_adv = generator_loss(cfg.gan_mode, self.D(x, fake))
            values["d"] = d_loss.detach()
        l1 = (fake.float() - y).abs().mean()
        g_loss = cfg.l1_weight * l1 + cfg.adv_weight * g_adv
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        values["l1"] = l1.detach()
        if adversarial:
            values["g_adv"] = g_adv.detach()
        # One host sync per step; under DDP the losses of the global batch (all processes
        # see the same numbers, so they take the same decisions, e.g. a NaN rollback).
        return dict(zip(values, distributed.mean_values(list(values.values()), self.device)))

    @torch.no_grad()
    def validate(self) -> tuple[dict[str, float], np.ndarray | None]:
        if not self.val_crops or not self.dist.is_main:   # under DDP rank 0 validates
            return {}, None
        self.G.eval()
        p_sum = s_sum = 0.0
        preview = None
        for x, y in self.val_crops:
            with autocast(self.device, self.cfg.amp):
                pred = self.G(torch.from_numpy(x)[None].to(self.device))
            pred = pred.float()[0].cpu().numpy()
            p_sum += psnr(pred, y, data_range=1.0)
            s_sum += ssim(pred, y, data_range=1.0)
            if preview is None:
                preview = self.data.target_norm.denormalize(pred)
        n = len(self.val_crops)
        metrics = {f"{self.val_prefix}_psnr": p_sum / n, f"{self.val_prefix}_ssim": s_sum / n}
        return metrics, preview[0] if preview.shape[0] == 1 else preview

    # ------------------------------------------------------------------- state
    def model_config(self) -> dict:
        return asdict(self.cfg)

    def model_state(self) -> dict:
        return {"generator": self.G.state_dict()}

    def model_header(self) -> dict:
        return {"normalization": {"input": self.data.input_norm.to_dict(),
                                  "target": self.data.target_norm.to_dict()}}

    def training_state(self) -> dict:
        return {"generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_training_state(self, state: dict) -> None:
        path = self.paths["state"]
        checkpoint.load_weights(self.G, state["generator"], path)
        checkpoint.load_weights(self.D, state["discriminator"], path)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])


def stored_config_and_norms(state_path: Path) -> tuple[Pix2PixConfig, Normalizer, Normalizer]:
    """Configuration and normalisation of a run to resume, so resumed training is identical."""
    loaded = checkpoint.load(state_path, expect_kind="pix2pix", expect_role="training_state")
    norms = loaded.normalization
    return (Pix2PixConfig.from_dict(loaded.config), Normalizer.from_dict(norms["input"]),
            Normalizer.from_dict(norms["target"]))
