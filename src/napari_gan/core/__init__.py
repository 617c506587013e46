"""Pure numpy + PyTorch core of napari-gan. Never import Qt or napari below here."""

from .errors import NapariGanError

__all__ = ["NapariGanError"]
