"""``napari-gan train stylegan2`` and ``napari-gan generate`` (being built; see issue 3)."""

from __future__ import annotations


def add_train_parser(sub) -> None:
    p = sub.add_parser("stylegan2", help="train a StyleGAN2 model (not available yet)")
    p.set_defaults(func=_unavailable)


def add_generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate images with a StyleGAN2 model (not available yet)")
    p.set_defaults(func=_unavailable)


def _unavailable(args) -> int:
    from ..core.errors import NapariGanError

    raise NapariGanError("StyleGAN2 is not available in this version yet.")
