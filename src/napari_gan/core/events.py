"""Progress events yielded by every trainer; the CLI prints them, the widgets plot them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrainEvent:
    """One report from a running trainer.

    ``kind`` is ``"progress"`` (losses), ``"validation"`` (metrics, preview), ``"saved"``
    (a checkpoint was written), ``"warning"`` (e.g. a NaN rollback) or ``"done"`` (final;
    ``message`` says why training ended and ``paths`` where the model is).
    """

    kind: str
    step: int
    fraction: float                 # 0..1 of the budget (steps or minutes) used
    elapsed_s: float
    eta_s: float | None = None
    images_per_s: float = 0.0
    losses: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    preview: np.ndarray | None = None
    message: str = ""
    paths: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One terminal line."""
        parts = [f"step {self.step:6d}", f"{100 * self.fraction:5.1f}%"]
        parts += [f"{k} {v:.4g}" for k, v in self.losses.items()]
        parts += [f"{k} {v:.4g}" for k, v in self.metrics.items()]
        if self.images_per_s:
            parts.append(f"{self.images_per_s:.1f} img/s")
        if self.eta_s is not None:
            parts.append(f"ETA {format_seconds(self.eta_s)}")
        if self.message:
            parts.append(self.message)
        return " | ".join(parts)


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
