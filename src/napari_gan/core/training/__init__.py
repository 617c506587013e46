"""Trainers: generators that yield :class:`~napari_gan.core.events.TrainEvent` objects."""

from .base import Budget, Trainer

__all__ = ["Budget", "Trainer"]
