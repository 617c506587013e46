"""napari dock widgets ("Train", "Generate Data", "Project Image", "Synthetic Data Set"): thin
Qt faces over napari_gan.core.

Imported by napari only when a widget is opened; torch is imported even later, inside
the functions that need it.
"""

from __future__ import annotations

__all__ = ["GenerateWidget", "ProjectWidget", "SynthesizeWidget", "TrainWidget"]

_MODULES = {"TrainWidget": "._train", "GenerateWidget": "._generate", "ProjectWidget": "._project",
            "SynthesizeWidget": "._synthesize"}


def __getattr__(name: str):
    if name in _MODULES:
        import importlib

        return getattr(importlib.import_module(_MODULES[name], __name__), name)
    raise AttributeError(name)
