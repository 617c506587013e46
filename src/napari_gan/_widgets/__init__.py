"""napari dock widgets ("Train" and "Generate Data"): thin Qt faces over napari_gan.core.

Imported by napari only when a widget is opened; torch is imported even later, inside
the functions that need it.
"""

from __future__ import annotations

__all__ = ["GenerateWidget", "TrainWidget"]


def __getattr__(name: str):
    if name == "TrainWidget":
        from ._train import TrainWidget

        return TrainWidget
    if name == "GenerateWidget":
        from ._generate import GenerateWidget

        return GenerateWidget
    raise AttributeError(name)
