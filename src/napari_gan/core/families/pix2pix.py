"""Pix2Pix: uNet generator + PatchGAN discriminator, L1 + adversarial loss.

``adv_weight=0`` trains the plain supervised uNet (the baseline). The adversarial term
is switched on after ``adv_warmup`` of the budget: the generator first learns the
content with L1 alone, then the discriminator sharpens it.

Task ``labels`` learns realistic images from label images (masks): each label image is
encoded once, when the data set is built and again before it is tiled for prediction
(:class:`LabelPredictor`), into one-hot classes, instance boundaries and a distance channel
(:func:`..labels.encode_labels`); encoded inputs are not normalised (their stored input
normaliser is the identity).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .. import checkpoint, distributed, settings
from ..data import Normalizer, PairedPatchSampler, PairedSet, validation_crops
from ..device import autocast, configure_backends, prefers_channels_last, uses_bf16
from ..errors import NapariGanError
from ..inference import Predictor
from ..losses import discriminator_loss, generator_loss, gradient_penalty
from ..metrics import psnr, ssim
from ..models.patchgan import PatchGANDiscriminator
from ..models.unet import UNetGenerator
from ..training import patches
from ..settings import setting
from . import DataInput, Family, Plot, adversarial, register, stored_config
from ..training.base import Budget, Trainer

TASKS = ("denoise", "sr", "labels")


NORMALIZE_CHOICES = (("auto", "auto"), ("whole data set", "dataset"), ("each image", "image"))
#: network fields stored as the model file's architecture (the rest goes in its training record)
ARCHITECTURE = ("task", "scale", "in_channels", "out_channels", "depth", "width", "norm", "residual")
#: (uNet width, discriminator width) when they are automatic: WIDTHS_FLOAT32_CPU where training
#: computes in float32 on a CPU (no native bf16: most laptops), where a quarter of the
#: arithmetic per pixel trains 3.4x the steps in the same minutes to the same quality
#: (docs/benchmarks.md, section 2e); WIDTHS on GPUs and CPUs with native bf16
WIDTHS = (32, 32)
WIDTHS_FLOAT32_CPU = (16, 16)
#: how a labels model encodes its label images (architecture of task "labels" models only)
LABEL_FIELDS = ("label_classes", "label_distance")


@dataclass
class Pix2PixConfig:
    """Everything that defines a Pix2Pix model and its training (saved in the model file)."""

    task: str = setting("denoise", "what the model learns: denoise (output the size of the input), "
                        "sr (super-resolution, --scale times larger) or labels (realistic images from "
                        "label images: --input holds the masks)", choices=TASKS)
    label_classes: int = setting(0, "task labels: 0 = every nonzero id of the label images is one object "
                                 "(instance labels, one class); K = the ids are class ids 1..K (semantic "
                                 "labels)", min=0, max=255, advanced=True, label="Label classes")
    label_distance: bool = setting(True, "task labels: give the generator each object's distance to its "
                                   "boundary besides the class map and the instance boundaries",
                                   flag="--no-label-distance", advanced=True, label="Label distance channel")
    scale: int = setting(1, "output pixels per input pixel along Y and X: 1 for denoise, 2 or 4 for sr",
                         choices=(1, 2, 4))
    channels: int = setting(1, "channels per image (the channel axis is read from the file's axes)",
                            min=1, max=64, widget=False)
    in_channels: int = 1
    out_channels: int = 1
    depth: int = setting(3, "uNet levels", min=1, max=6, advanced=True)
    width: int | None = setting(None, "uNet channels at the first level", min=1, max=1024,
                                auto=f"{WIDTHS_FLOAT32_CPU[0]} where training computes in float32 on the CPU "
                                     f"(no native bf16), else {WIDTHS[0]}", advanced=True)
    norm: str = "none"
    residual: bool = True
    disc_width: int | None = adversarial.disc_width(
        auto=f"{WIDTHS_FLOAT32_CPU[1]} where training computes in float32 on the CPU, else {WIDTHS[1]}")
    disc_layers: int = adversarial.disc_layers()
    spectral_norm: bool = adversarial.spectral_norm()
    gan_mode: str = adversarial.gan_mode()
    adv_weight: float = setting(1.0, "weight of the adversarial loss; 0 trains a plain uNet with L1 only",
                                min=0, max=1e6, advanced=True, label="Adversarial weight")
    l1_weight: float = setting(100.0, "weight of the L1 loss", min=0, max=1e6, advanced=True, label="L1 weight")
    adv_warmup: float = setting(0.3, "fraction of the schedule trained with L1 only before the "
                                "discriminator joins", min=0, max=1, advanced=True, label="Adversarial warm-up")
    gp_weight: float = adversarial.gp_weight()
    lr: float = adversarial.lr("generator")
    lr_d: float | None = adversarial.lr_d("generator")
    beta1: float = adversarial.beta1()
    beta2: float = adversarial.beta2()
    lr_decay: bool = setting(True, "cosine decay of the learning rates to 5% over the second half of "
                             "the schedule", advanced=True, label="Learning-rate decay")
    patch: int = setting(96, "training patch size in input pixels", min=8, max=4096, label="Patch size")
    batch: int = setting(8, "patches per step (over all processes under torchrun)", min=1, max=4096,
                         label="Batch size")
    val_fraction: float = setting(0.1, "bottom fraction of each image's rows held out for validation "
                                  "(when no validation images are given)", min=0, max=0.8, advanced=True,
                                  label="Validation fraction")
    normalize: str = setting("auto", "input intensity range: one for the whole data set, or each image its "
                             "own (images scaled one by one, e.g. autoscaled 8-bit exports); auto measures "
                             "which makes the input-target relation consistent", choices=NORMALIZE_CHOICES,
                             advanced=True, label="Input normalisation")
    amp: bool = adversarial.amp()
    compile: bool = adversarial.compile()

    def __post_init__(self):
        settings.check(self)
        if self.lr_d is None:
            self.lr_d = self.lr
        if self.task == "denoise" and self.scale != 1:
            raise NapariGanError("Denoising keeps the image size; a scale of 2 or 4 needs the task sr "
                                 "(--task sr).")
        if self.task == "labels" and self.scale != 1:
            raise NapariGanError("Images from label images (task labels) have the size of the label images; "
                                 "the scale must be 1.")
        if self.task == "sr" and self.scale not in (2, 4):
            raise NapariGanError("Super-resolution (task sr) needs a scale of 2 or 4 (--scale).")
        if self.patch < 2**self.depth:
            raise NapariGanError(f"The patch size must be at least {2**self.depth} for a uNet of depth "
                                 f"{self.depth}.")
        smallest = 3 * 2**self.disc_layers
        if self.patch * self.scale < smallest:
            raise NapariGanError(
                f"Patches of {self.patch} pixels{' x' + str(self.scale) if self.scale > 1 else ''} are too "
                f"small for a discriminator of {self.disc_layers} layers (it needs at least {smallest} "
                "output pixels); use a larger --patch or fewer --disc-layers.")

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_widths(cfg: Pix2PixConfig, device: torch.device) -> None:
    """Fill in automatic widths for the device that trains (see :data:`WIDTHS_FLOAT32_CPU`)."""
    float32_cpu = device.type == "cpu" and not (cfg.amp and uses_bf16(device))
    width, disc_width = WIDTHS_FLOAT32_CPU if float32_cpu else WIDTHS
    if cfg.width is None:
        cfg.width = width
    if cfg.disc_width is None:
        cfg.disc_width = disc_width


def build_generator(cfg: Pix2PixConfig) -> UNetGenerator:
    """The uNet of ``cfg`` (an automatic width not resolved for a device: :data:`WIDTHS`)."""
    width = WIDTHS[0] if cfg.width is None else cfg.width
    return UNetGenerator(cfg.in_channels, cfg.out_channels, cfg.depth, width, cfg.scale, cfg.norm, cfg.residual)


def build_discriminator(cfg: Pix2PixConfig) -> PatchGANDiscriminator:
    width = WIDTHS[1] if cfg.disc_width is None else cfg.disc_width
    return PatchGANDiscriminator(cfg.in_channels, cfg.out_channels, width, cfg.disc_layers, cfg.spectral_norm)


class Pix2PixTrainer(Trainer):
    kind = "pix2pix"
    state_parts = ("generator", "discriminator", "opt_g", "opt_d")

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
        if val_data is None:
            self.notes.append("The images are too small to hold out a validation region, so the metrics and "
                              "the preview come from training crops; give validation images or larger ones.")
        source = val_data if val_data is not None else data
        self.val_crops = validation_crops(source, val_crop)
        # The preview is the prediction of the first crop: plane 0 of ``source`` from this
        # (row, column) of its image, in input pixels; the widget places its layer there.
        self.preview_origin = (source.row_offset(0), 0)
        configure_backends(device)
        resolve_widths(cfg, device)
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
        if (compile or cfg.compile) and cfg.gan_mode != "wgan-gp":   # no double backward through compiled code
            self.G_train = torch.compile(self.G_train)
            self.D_train = torch.compile(self.D_train)
        if gpu_patches is None:
            gpu_patches = patches.fits_on_device(self.sampler, device)
        self.cutter = patches.DevicePatchCutter(self.sampler, device) if gpu_patches else None
        fused = device.type == "cuda"
        self.opt_g = torch.optim.Adam(self.G.parameters(), cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), cfg.lr_d, betas=(cfg.beta1, cfg.beta2), fused=fused)

    def describe(self) -> str:
        cfg = self.cfg
        if cfg.task == "labels":
            from ..labels import channel_names

            return (f"images from labels on {len(self.data.inputs)} image(s), label images encoded as "
                    f"{', '.join(channel_names(cfg.label_classes, cfg.label_distance))}")
        what = cfg.task + (f" x{cfg.scale}" if cfg.scale > 1 else "")
        norm = "per image" if self.data.input_norm.per_image else "over the data set"
        return (f"{what} on {len(self.data.inputs)} image(s), inputs normalised {norm}, uNet width {cfg.width}, "
                f"discriminator width {cfg.disc_width}")

    # -------------------------------------------------------------------- steps
    def _set_lr(self, progress: float) -> None:
        """Constant, then a cosine decay to 5% over the second half of the schedule (times the
        learning-rate scale that NaN recovery lowers)."""
        factor = self.lr_scale
        if self.cfg.lr_decay and progress > 0.5:
            factor *= 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (progress - 0.5) / 0.5))
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

    def train_step(self, progress: float) -> dict[str, float]:
        cfg = self.cfg
        self._set_lr(progress)
        x, y = self._batch()
        adversarial = cfg.adv_weight > 0 and progress >= cfg.adv_warmup
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
    def model_networks(self) -> dict:
        return {"generator": self.G}

    def normalization(self) -> dict:
        return {"input": self.data.input_norm.to_dict(), "target": self.data.target_norm.to_dict()}

    def data_record(self) -> dict:
        val = self.val_data
        return {"train_images": len(self.data.inputs), "validation_images": len(val.inputs) if val else 0,
                "validation": "held-out rows" if val is not None and val.row_offsets else
                ("separate images" if val is not None else "training crops")}

    def training_state(self) -> dict:
        return {"generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_training_state(self, state: dict) -> None:
        path = self.paths["state"]
        checkpoint.load_weights(self.G, state["generator"], path)
        checkpoint.load_weights(self.D, state["discriminator"], path)
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])


def encode_label_planes(masks: list, images: list, names: list[str], cfg: Pix2PixConfig) -> list[np.ndarray]:
    """The label images of a data set (``(1, H, W)`` planes), checked against their images and
    encoded (:func:`..labels.encode_labels`): ``(C_enc, H, W)`` float32 planes."""
    from ..labels import check_mask_size, encode_labels

    if len(masks) != len(images):
        raise NapariGanError(f"{len(masks)} label image(s) but {len(images)} image(s); they must match one to one.")
    out = []
    for i, (mask, image) in enumerate(zip(masks, images)):
        name = names[i] if i < len(names) else f"label image {i + 1}"
        if mask.shape[0] != 1:
            raise NapariGanError(f"{name} has {mask.shape[0]} channels; a label image has one.")
        check_mask_size(mask, image, name)
        out.append(encode_labels(np.asarray(mask[0]), cfg.label_classes, cfg.label_distance, name))
    return out


class LabelPredictor(Predictor):
    """A Pix2Pix model of task "labels": its inputs are label images, one channel of integer
    ids; each plane is encoded whole (:func:`..labels.encode_labels`, no normalisation) before
    it is tiled, so tiles see the encoding of the whole plane. ``in_channels`` is 1 (the
    label image); ``encoded_channels`` what the generator receives."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_classes = int(self.config.get("label_classes", 0))
        self.label_distance = bool(self.config.get("label_distance", True))
        self.encoded_channels, self.in_channels = self.in_channels, 1
        self._name = "the label image"

    def encode(self, plane, name: str | None = None) -> np.ndarray:
        """One label plane ``(1, H, W)`` or ``(H, W)`` -> the generator's input."""
        from ..labels import encode_labels

        return encode_labels(np.asarray(plane), self.label_classes, self.label_distance, name or self._name)

    def predict_plane(self, plane, *args, **kwargs) -> np.ndarray:
        return super().predict_plane(self.encode(plane), *args, **kwargs)

    def predict(self, image, *args, name: str = "image", **kwargs) -> np.ndarray:
        self._name = name
        return super().predict(image, *args, name=name, **kwargs)

    def predict_image(self, image, *args, **kwargs):
        self._name = image.name or "the label image"
        return super().predict_image(image, *args, **kwargs)


class Pix2PixFamily(Family):
    name = "pix2pix"
    title = "Pix2Pix"
    summary = ("restore or translate images, learnt from pairs (denoising, 2x/4x super-resolution, images "
               "from label masks)")
    config_class = Pix2PixConfig
    inputs = (
        DataInput("input", "degraded images (task labels: label images, integer masks): a TIFF file or a "
                  "folder of TIFFs", label="Input"),
        DataInput("target", "clean or high-resolution images matching the input (folders: pairs "
                  "matched by file name)", label="Target", paired_with="input"),
        DataInput("val_input", "validation input (default: the bottom rows of every training image are "
                  "held out)", label="Validation input", optional=True),
        DataInput("val_target", "validation target matching the validation input",
                  label="Validation target", optional=True, paired_with="val_input"),
    )
    apply_mode = "image"
    plot = Plot(losses=("l1", "d", "g_adv"), metrics=("val_psnr", "val_ssim", "train_psnr", "train_ssim"))
    architecture_fields = ARCHITECTURE

    def split_config(self, cfg) -> tuple[dict, dict]:
        """Label encoding fields are architecture for task "labels" only (the files of other
        tasks keep their header)."""
        arch, training = super().split_config(cfg)
        if cfg.task == "labels":
            arch.update({k: getattr(cfg, k) for k in LABEL_FIELDS})
        for k in LABEL_FIELDS:
            training.pop(k, None)
        return arch, training

    def make_trainer(self, cfg, images, out_dir, budget, device, seed, normalization, **run):
        norms = (None, None)
        if normalization:
            norms = (Normalizer.from_dict(normalization["input"]), Normalizer.from_dict(normalization["target"]))
        inp, tgt = images["input"], images["target"]
        vin, vtg = images.get("val_input"), images.get("val_target")
        if (vin is None) != (vtg is None):
            raise NapariGanError("Give both a validation input and a validation target, or neither.")
        in_planes = inp.planes
        val_planes = vin.planes if vin is not None else None
        if cfg.task == "labels":   # encoded once here; no normalisation of the encoded inputs
            from ..labels import encoded_channels, identity_normalizer

            in_planes = encode_label_planes(inp.planes, tgt.planes, inp.names, cfg)
            if vin is not None:
                val_planes = encode_label_planes(vin.planes, vtg.planes, vin.names, cfg)
            norms = (identity_normalizer(encoded_channels(cfg.label_classes, cfg.label_distance)), norms[1])
        data = PairedSet.build(in_planes, tgt.planes, cfg.scale, inp.names, *norms,
                               normalization=cfg.normalize)
        val = None
        if vin is not None:
            val = PairedSet.build(val_planes, vtg.planes, cfg.scale, vin.names, data.input_norm,
                                  data.target_norm)
        return Pix2PixTrainer(cfg, data, out_dir, budget, device, seed, val_data=val, **run)

    def load_applier(self, header, device="auto", amp=True):
        from ..device import resolve_device
        from ..inference import Predictor

        cfg = self.config_from_header(header)
        try:
            norms = header.normalization
            input_norm, target_norm = Normalizer.from_dict(norms["input"]), Normalizer.from_dict(norms["target"])
        except (KeyError, TypeError, ValueError, NapariGanError) as exc:
            raise NapariGanError(f"'{header.path}': {exc}") from exc
        weights = checkpoint.load_networks(header, ["generator"])["generator"]
        generator = checkpoint.build_checked(lambda: build_generator(cfg), weights, header.path)
        if cfg.task == "labels":
            from ..labels import encoded_channels

            if cfg.in_channels != encoded_channels(cfg.label_classes, cfg.label_distance):
                raise NapariGanError(f"'{header.path}': its label encoding ({cfg.label_classes} classes) does not "
                                     f"fit its generator's {cfg.in_channels} input channels; the file is damaged.")
            return LabelPredictor(generator, cfg.to_dict(), input_norm, target_norm, resolve_device(device),
                                  header.path, amp=amp)
        return Predictor(generator, cfg.to_dict(), input_norm, target_norm, resolve_device(device),
                         header.path, amp=amp)

    def describe(self, header) -> str:
        cfg = stored_config(header)
        if cfg.get("task") == "labels":
            k = cfg.get("label_classes", 0)
            kind = "instance labels" if not k else f"labels of {k} classes"
            return f"Pix2Pix images from label images ({kind}), {cfg.get('out_channels', 1)} channel(s)"
        what = "denoising" if cfg.get("task") == "denoise" else f"super-resolution x{cfg.get('scale')}"
        return f"Pix2Pix {what}, {cfg.get('in_channels', 1)} channel(s)"

    def output_scale(self, cfg) -> int:
        return int(cfg.scale)

    def bioimageio_exporter(self):
        from ..export import Pix2PixExporter

        return Pix2PixExporter()


register(Pix2PixFamily())
