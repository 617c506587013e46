"""Settings every image-to-image family declares alike: its PatchGAN discriminator(s), the
adversarial loss, Adam, bf16 and compilation.

Each function returns the declaration of one setting, so a family's configuration keeps its
own field order (which orders the command line and the widget) while the default, range and
help are written only here. ``networks`` names what the family trains in the help texts
("generator" or "generators").
"""

from __future__ import annotations

from ..losses import GAN_MODES
from ..settings import setting


def disc_width(auto: str | None = None):
    """``auto``: what an automatic width (None, the default then) means; else 32."""
    return setting(None if auto else 32, "PatchGAN discriminator channels at its first layer", min=1, max=1024,
                   auto=auto, advanced=True, label="Discriminator width")


def disc_layers():
    return setting(3, "PatchGAN layers (3: the classic 70x70 receptive field)", min=1, max=6,
                   advanced=True, label="Discriminator layers")


def spectral_norm():
    return setting(True, "spectral normalisation in the discriminator(s)", advanced=True)


def gan_mode():
    return setting("lsgan", "adversarial loss", choices=GAN_MODES, flag="--gan-loss", label="GAN loss",
                   advanced=True)


def gp_weight():
    return setting(10.0, "gradient-penalty weight (wgan-gp)", min=0, max=1e6, advanced=True)


def lr(networks: str):
    return setting(2e-4, f"Adam learning rate of the {networks}", min=0, min_exclusive=True, max=1,
                   label="Learning rate")


def lr_d(networks: str):
    return setting(None, "Adam learning rate of the discriminator(s)", min=0, min_exclusive=True, max=1,
                   auto=f"the {_possessive(networks)}", advanced=True, label="Discriminator learning rate")


def _possessive(noun: str) -> str:
    return noun + "'" if noun.endswith("s") else noun + "'s"


def beta1():
    return setting(0.5, "Adam beta1", min=0, max=0.9999, advanced=True)


def beta2():
    return setting(0.999, "Adam beta2", min=0, max=0.9999999, advanced=True)


def amp():
    return setting(True, "bf16 autocast on CUDA and on CPUs with native bf16 (off: float32 throughout)",
                   flag="--no-amp", advanced=True, label="bf16 where it is faster")


def compile():  # noqa: A001 - the setting's name
    return setting(False, "torch.compile the networks (faster steps on a GPU after a minute of compiling)",
                   widget=False)
