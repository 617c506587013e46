"""Intensity normalisation: the one object that maps raw pixels to model units and back.

A :class:`Normalizer` is stored whole with every model (:meth:`Normalizer.to_dict`). Its
affine map ``(x - low) / (high - low)`` and the inverse are written once
(:meth:`Normalizer._offset_scale`), with a numpy form (:meth:`~Normalizer.normalize`,
:meth:`~Normalizer.denormalize`) and a torch form for tensors on any device
(:meth:`~Normalizer.normalize_tensor`, :meth:`~Normalizer.denormalize_tensor`).
numpy only at import; torch is imported by the tensor methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np

from .errors import NapariGanError

DEFAULT_PERCENTILES = (0.5, 99.8)
_MAX_STAT_PIXELS = 4_000_000
NORMALIZATIONS = ("auto", "dataset", "image")
#: Per-image ranges are percentiles of BLOCK x BLOCK means, so single noisy pixels do not set them.
BLOCK = 4
#: The normalisation methods a Normalizer knows (stored as ``method``).
METHODS = ("percentile",)


def block_means(channel: np.ndarray, block: int = BLOCK, max_blocks: int = _MAX_STAT_PIXELS,
                row_step: int | None = None) -> np.ndarray:
    """Means of ``block x block`` tiles of a 2D array, flattened; on huge arrays only every
    ``row_step``-th row of tiles (bounded cost, and memory-mapped data is read in bands)."""
    h, w = channel.shape[0] // block, channel.shape[1] // block
    if h == 0 or w == 0:
        return np.asarray(channel, np.float64).ravel()
    step = row_step or max(1, int(np.ceil(h * w / max_blocks)))
    if not isinstance(channel, np.ndarray):
        # lazy data (OME-Zarr): read bands of many rows (each chunk is decoded once or
        # twice, not once per row of blocks), keeping the chosen rows of blocks
        per_band = max(step, (1 << 24) // max(1, w * block * block) // step * step)
        rows = []
        for first in range(0, h, per_band):
            n = min(per_band, h - first)
            band = np.asarray(channel[first * block:(first + n) * block, : w * block])
            picked = band.reshape(n, block, w * block)[::step].astype(np.float64)
            rows.append(picked.reshape(-1, block, w, block).mean(axis=(1, 3)).ravel())
        return np.concatenate(rows)
    rows = [np.asarray(channel[r * block:(r + 1) * block, : w * block], np.float64)
            .reshape(block, w, block).mean(axis=(0, 2)) for r in range(0, h, step)]
    return np.concatenate(rows)


def _affine(x, offset, scale, inverse: bool):
    """``(x - offset) / scale`` or its inverse; for numpy arrays and torch tensors alike."""
    return x * scale + offset if inverse else (x - offset) / scale


def _is_number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


@dataclass
class Normalizer:
    """Per-channel percentile normalisation ``(x - low) / (high - low)``, stored with a model.

    ``low``/``high`` are fitted on the whole data set. With ``per_image`` every image is
    instead normalised by its own range (:meth:`for_plane`: the same percentiles, of
    ``block x block`` means), for data whose images were scaled one by one (e.g. 8-bit exports
    with automatic contrast); the data-set values remain as a fallback for constant images.
    """

    low: list[float]
    high: list[float]
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    per_image: bool = False
    method: str = "percentile"
    block: int = BLOCK

    @property
    def channels(self) -> int:
        return len(self.low)

    def for_plane(self, plane: np.ndarray) -> "Normalizer":
        """The normaliser for this whole ``(C, H, W)`` plane: itself, or with ``per_image``
        one fitted to the plane (use it for every tile or patch of the plane)."""
        if not self.per_image:
            return self
        low, high = list(self.low), list(self.high)
        for c in range(plane.shape[0]):
            lo, hi = np.percentile(block_means(plane[c], self.block), self.percentiles)
            if hi > lo:
                low[c], high[c] = float(lo), float(hi)
        return Normalizer(low, high, self.percentiles, False, self.method, self.block)

    @classmethod
    def fit(cls, planes: list[np.ndarray], percentiles=DEFAULT_PERCENTILES, name: str = "images",
            per_image: bool = False):
        """Fit on a subsample of all planes (bounded cost for huge images)."""
        channels = planes[0].shape[0]
        samples = [[] for _ in range(channels)]
        budget = max(1, _MAX_STAT_PIXELS // max(1, len(planes)))
        for plane in planes:
            stride = max(1, int(np.sqrt(plane.shape[-1] * plane.shape[-2] / budget)))
            for c in range(channels):
                samples[c].append(np.asarray(plane[c, ::stride, ::stride], dtype=np.float64).ravel())
        low, high = [], []
        for c in range(channels):
            values = np.concatenate(samples[c])
            lo, hi = np.percentile(values, percentiles)
            if not hi > lo:
                lo, hi = float(values.min()), float(values.max())
            if not hi > lo:
                raise NapariGanError(
                    f"{name} are constant (every pixel of channel {c} is {lo:g}); "
                    "there is nothing to learn from."
                )
            low.append(float(lo))
            high.append(float(hi))
        return cls(low, high, tuple(float(p) for p in percentiles), per_image)

    # ------------------------------------------------------------------ the affine map
    def _offset_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``offset`` and ``scale`` (float32, shape ``(C,)``): normalised =
        ``(raw - offset) / scale``, raw = ``normalised * scale + offset``."""
        offset = np.asarray(self.low, np.float32)
        return offset, np.asarray(self.high, np.float32) - offset

    def _numpy(self, array, channel_axis: int, inverse: bool) -> np.ndarray:
        array = np.asarray(array, np.float32)
        shape = [1] * array.ndim
        shape[channel_axis] = -1
        offset, scale = self._offset_scale()
        return _affine(array, offset.reshape(shape), scale.reshape(shape), inverse)

    def normalize(self, plane: np.ndarray, channel_axis: int = 0) -> np.ndarray:
        """Raw pixels (channels on ``channel_axis``, by default ``(C, ...)``) -> float32 roughly in [0, 1]."""
        return self._numpy(plane, channel_axis, inverse=False)

    def denormalize(self, plane: np.ndarray, channel_axis: int = 0) -> np.ndarray:
        """Inverse of :meth:`normalize`, back to the original intensity units."""
        return self._numpy(plane, channel_axis, inverse=True)

    def tensor_offset_scale(self, device=None, dtype=None, ndim: int = 3, channel_dim: int = -3):
        """``(offset, scale)`` as torch tensors on ``device``, shaped to broadcast against a
        tensor of ``ndim`` dimensions with channels at ``channel_dim``. ``dtype`` (default
        float32) should be floating."""
        import torch

        dtype = dtype or torch.float32
        shape = [1] * ndim
        shape[channel_dim] = -1
        offset, scale = self._offset_scale()
        as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device).reshape(shape)
        return as_t(offset), as_t(scale)

    def _tensor(self, t, channel_dim: int, inverse: bool):
        import torch

        dtype = torch.promote_types(t.dtype, torch.float32) if t.dtype != torch.bool else torch.float32
        offset, scale = self.tensor_offset_scale(t.device, dtype, t.ndim, channel_dim)
        return _affine(t.to(dtype), offset, scale, inverse)

    def normalize_tensor(self, t, channel_dim: int = -3):
        """:meth:`normalize` for a torch tensor on any device, channels at ``channel_dim``
        (``(..., C, H, W)`` by default). Integer and 16-bit inputs give float32; float64 stays."""
        return self._tensor(t, channel_dim, inverse=False)

    def denormalize_tensor(self, t, channel_dim: int = -3):
        """Inverse of :meth:`normalize_tensor`."""
        return self._tensor(t, channel_dim, inverse=True)

    # ------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        return {"low": list(self.low), "high": list(self.high), "percentiles": list(self.percentiles),
                "per_image": self.per_image, "method": self.method, "block": self.block}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        """Read :meth:`to_dict`'s record (also older ones without ``method``/``block``),
        refusing damaged values with a :class:`NapariGanError`."""
        def bad(what: str) -> NapariGanError:
            return NapariGanError(f"The stored normalisation is damaged: {what}.")

        if not isinstance(d, dict):
            raise bad(f"expected a record of fields, found {type(d).__name__}")
        for key in ("low", "high", "percentiles"):
            if key not in d:
                raise bad(f"'{key}' is missing")
        values = {}
        for key in ("low", "high", "percentiles"):
            v = d[key]
            if not isinstance(v, (list, tuple)) or not v or not all(_is_number(x) for x in v):
                raise bad(f"'{key}' must be a non-empty list of numbers, not {v!r}")
            if not all(math.isfinite(x) for x in v):
                raise bad(f"'{key}' holds a non-finite value ({v!r})")
            values[key] = [float(x) for x in v]
        low, high, percentiles = values["low"], values["high"], values["percentiles"]
        if len(low) != len(high):
            raise bad(f"'low' has {len(low)} channel(s) but 'high' has {len(high)}")
        for c, (lo, hi) in enumerate(zip(low, high)):
            if not hi > lo:
                raise bad(f"channel {c} has an empty or negative range (low {lo:g}, high {hi:g})")
        if len(percentiles) != 2 or not 0 <= percentiles[0] < percentiles[1] <= 100:
            raise bad(f"'percentiles' must be two increasing values in [0, 100], not {d['percentiles']!r}")
        per_image = d.get("per_image", False)
        if not isinstance(per_image, bool):
            raise bad(f"'per_image' must be true or false, not {per_image!r}")
        method = d.get("method", "percentile")
        if method not in METHODS:
            raise bad(f"the method {method!r} is unknown (known: {', '.join(METHODS)})")
        block = d.get("block", BLOCK)
        if not isinstance(block, int) or isinstance(block, bool) or block < 1:
            raise bad(f"'block' must be a positive whole number, not {block!r}")
        return cls(low, high, (percentiles[0], percentiles[1]), per_image, method, block)


def per_image_is_better(inputs: list[np.ndarray], targets: list[np.ndarray], scale: int = 1,
                        percentiles=DEFAULT_PERCENTILES, max_pairs: int = 64) -> bool:
    """Whether inputs should be normalised image by image.

    For each pair (and channel) the least-squares slope of target on input is measured on
    block means, once with raw input intensities and once with each input normalised by its
    own range. If the per-image slopes vary across pairs at most half as much (coefficient of
    variation), the pairs were scaled one by one and per-image normalisation lets the model
    predict the target's intensities; otherwise input and target share units across the data
    set and the data-set range keeps that information.
    """
    if len(inputs) < 3:
        return False
    picks = np.unique(np.linspace(0, len(inputs) - 1, min(max_pairs, len(inputs))).astype(int))
    slopes: dict[bool, list[float]] = {False: [], True: []}
    for i in picks:
        inp, tgt = inputs[i], targets[i]
        for c in range(min(inp.shape[0], tgt.shape[0])):
            h, w = inp.shape[-2] // BLOCK, inp.shape[-1] // BLOCK
            step = max(1, int(np.ceil(h * w / 250_000)))
            x = block_means(inp[c], BLOCK, row_step=step)
            y = block_means(tgt[c], BLOCK * scale, row_step=step)
            lo, hi = np.percentile(x, percentiles)
            if x.size != y.size or x.size < 16 or not hi > lo:
                continue
            slopes[False].append(np.polyfit(x, y, 1)[0])
            slopes[True].append(np.polyfit((x - lo) / (hi - lo), y, 1)[0])
    if len(slopes[False]) < 3:
        return False
    cv = {k: float(np.std(v) / (abs(np.mean(v)) + 1e-12)) for k, v in slopes.items()}
    return cv[True] < 0.5 * cv[False]
