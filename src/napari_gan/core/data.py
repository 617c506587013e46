"""Image preparation: layout, validation, normalisation, patch sampling, augmentation,
validation split and synthetic degradations. numpy only.

Conventions: a *plane* is a float or integer array of shape ``(C, H, W)``; a set of
images is a list of planes (a Z/T stack contributes one plane per slice).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.transform import downscale_local_mean

from .errors import NapariGanError

DEFAULT_PERCENTILES = (0.5, 99.8)
_MAX_STAT_PIXELS = 4_000_000
NORMALIZATIONS = ("auto", "dataset", "image")
#: Per-image ranges are percentiles of BLOCK x BLOCK means, so single noisy pixels do not set them.
BLOCK = 4


# ----------------------------------------------------------------------------- layout
def to_planes(image: np.ndarray, channels: int = 1, channel_axis: int | None = None,
              name: str = "image") -> tuple[np.ndarray, tuple[int, ...]]:
    """Reshape ``image`` to ``(P, C, H, W)`` planes; also return the leading shape to restore.

    2D images give one plane; ``(Z, H, W)`` stacks give one plane per slice; any number of
    leading axes (T, Z) is flattened. With ``channels > 1`` the channel axis is
    ``channel_axis`` or, if not given, the first axis of length ``channels`` (TIFF order).
    """
    image = np.asarray(image) if not isinstance(image, np.memmap) else image
    if image.dtype.kind not in "uif" and image.dtype != bool:
        raise NapariGanError(f"{name} has data type {image.dtype}; expected integer or float pixels.")
    if image.ndim < 2:
        raise NapariGanError(f"{name} has shape {image.shape}; expected at least 2 dimensions (Y, X).")
    if image.size == 0:
        raise NapariGanError(f"{name} is empty (shape {image.shape}).")
    if channels == 1:
        if channel_axis is not None and image.shape[channel_axis] != 1:
            raise NapariGanError(
                f"{name} has {image.shape[channel_axis]} channels but the model expects 1; "
                "pick a single channel."
            )
        if channel_axis is None and image.ndim >= 3 and image.shape[-1] in (3, 4) and image.shape[-2] > 4:
            raise NapariGanError(
                f"{name} looks like an RGB image (shape {image.shape}) but the model expects "
                "1 channel; split the channels or convert it to grayscale first."
            )
        if channel_axis is not None:
            image = np.squeeze(image, axis=channel_axis)
        lead = image.shape[:-2]
        return image.reshape((-1, 1) + image.shape[-2:]), lead
    if channel_axis is None:
        candidates = [ax for ax in range(image.ndim - 2) if image.shape[ax] == channels]
        if not candidates:
            raise NapariGanError(
                f"{name} has shape {image.shape} but the model expects {channels} channels; "
                f"no axis of length {channels} was found before Y and X."
            )
        channel_axis = candidates[0]
    channel_axis = channel_axis % image.ndim
    if image.shape[channel_axis] != channels:
        raise NapariGanError(
            f"{name} has {image.shape[channel_axis]} channels but the model expects {channels}."
        )
    if channel_axis >= image.ndim - 2:
        raise NapariGanError(f"{name}: the channel axis cannot be one of the last two (Y, X) axes.")
    moved = np.moveaxis(image, channel_axis, -3)
    lead = moved.shape[:-3]
    return moved.reshape((-1, channels) + moved.shape[-2:]), lead


def from_planes(planes: np.ndarray, lead: tuple[int, ...], channels: int = 1,
                channel_axis: int | None = None, original_ndim: int | None = None) -> np.ndarray:
    """Inverse of :func:`to_planes` for the output of a model (spatial size may differ)."""
    if channels == 1:
        out = planes.reshape(lead + planes.shape[-2:])
        return out
    out = planes.reshape(lead + planes.shape[-3:])
    if channel_axis is not None and original_ndim is not None:
        out = np.moveaxis(out, -3, channel_axis % original_ndim)
    return out


def check_finite(plane: np.ndarray, name: str) -> None:
    """Reject NaN or infinite pixels (checked in chunks so memory-mapped data stays on disk)."""
    if plane.dtype.kind != "f":
        return
    flat = plane.reshape(-1)
    step = 1 << 24
    for start in range(0, flat.size, step):
        if not np.isfinite(flat[start:start + step]).all():
            raise NapariGanError(f"{name} contains NaN or infinite values; fix or crop them first.")


# ------------------------------------------------------------------------ normalisation
def block_means(channel: np.ndarray, block: int = BLOCK, max_blocks: int = _MAX_STAT_PIXELS,
                row_step: int | None = None) -> np.ndarray:
    """Means of ``block x block`` tiles of a 2D array, flattened; on huge arrays only every
    ``row_step``-th row of tiles (bounded cost, and memory-mapped data is read in bands)."""
    h, w = channel.shape[0] // block, channel.shape[1] // block
    if h == 0 or w == 0:
        return np.asarray(channel, np.float64).ravel()
    step = row_step or max(1, int(np.ceil(h * w / max_blocks)))
    rows = [np.asarray(channel[r * block:(r + 1) * block, : w * block], np.float64)
            .reshape(block, w, block).mean(axis=(0, 2)) for r in range(0, h, step)]
    return np.concatenate(rows)


@dataclass
class Normalizer:
    """Per-channel percentile normalisation ``(x - low) / (high - low)``, stored with a model.

    ``low``/``high`` are fitted on the whole data set. With ``per_image`` every image is
    instead normalised by its own range (:meth:`for_plane`: the same percentiles, of 4x4 block
    means), for data whose images were scaled one by one (e.g. 8-bit exports with automatic
    contrast); the data-set values remain as a fallback for constant images.
    """

    low: list[float]
    high: list[float]
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    per_image: bool = False

    def for_plane(self, plane: np.ndarray) -> "Normalizer":
        """The normaliser for this whole ``(C, H, W)`` plane: itself, or with ``per_image``
        one fitted to the plane (use it for every tile or patch of the plane)."""
        if not self.per_image:
            return self
        low, high = list(self.low), list(self.high)
        for c in range(plane.shape[0]):
            lo, hi = np.percentile(block_means(plane[c]), self.percentiles)
            if hi > lo:
                low[c], high[c] = float(lo), float(hi)
        return Normalizer(low, high, self.percentiles)

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

    def _coeffs(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        shape = (-1,) + (1,) * (ndim - 1)
        low = np.asarray(self.low, np.float32).reshape(shape)
        scale = (np.asarray(self.high, np.float32) - low.ravel()).reshape(shape)
        return low, scale

    def normalize(self, plane: np.ndarray) -> np.ndarray:
        """``(C, ...)`` raw pixels -> float32 roughly in [0, 1]."""
        low, scale = self._coeffs(plane.ndim)
        return (np.asarray(plane, np.float32) - low) / scale

    def denormalize(self, plane: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`normalize`, back to the original intensity units."""
        low, scale = self._coeffs(plane.ndim)
        return np.asarray(plane, np.float32) * scale + low

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high, "percentiles": list(self.percentiles),
                "per_image": self.per_image}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(list(d["low"]), list(d["high"]), tuple(d["percentiles"]), bool(d.get("per_image", False)))


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


# ---------------------------------------------------------------------------- pairs
def check_pair(inp: np.ndarray, tgt: np.ndarray, scale: int, name: str) -> None:
    """Check that a (C, H, W) input/target pair has matching sizes for the task."""
    (ci, hi, wi), (ct, ht, wt) = inp.shape, tgt.shape
    if (ht, wt) != (hi * scale, wi * scale):
        if scale == 1:
            raise NapariGanError(
                f"{name}: input is {hi}x{wi} but target is {ht}x{wt}; for denoising both must "
                "have the same size."
            )
        ratio = f"{ht / hi:g}x" if hi else "?"
        raise NapariGanError(
            f"{name}: for {scale}x super-resolution the target must be {hi * scale}x{wi * scale} "
            f"(input {hi}x{wi} times {scale}) but it is {ht}x{wt} (a ratio of {ratio})."
        )


@dataclass
class PairedSet:
    """Raw input/target planes (possibly memory-mapped) with their normalisers."""

    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    scale: int
    input_norm: Normalizer
    target_norm: Normalizer
    names: list[str] = field(default_factory=list)
    row_offsets: list[int] = field(default_factory=list)  # first row of each plane in its image
    plane_input_norms: list[Normalizer] = field(default_factory=list)  # per-image normalisation

    @classmethod
    def build(cls, inputs: list[np.ndarray], targets: list[np.ndarray], scale: int = 1,
              names: list[str] | None = None, input_norm: Normalizer | None = None,
              target_norm: Normalizer | None = None, min_size: int = 8,
              normalization: str = "auto") -> "PairedSet":
        """Check the pairs and fit the normalisers (unless given, e.g. to resume).

        ``normalization`` of the inputs: "dataset" (one range for all images), "image" (each
        image by its own range) or "auto" (:func:`per_image_is_better` decides).
        """
        if normalization not in NORMALIZATIONS:
            raise NapariGanError(f"Unknown normalisation '{normalization}'; choose one of {', '.join(NORMALIZATIONS)}.")
        names = names or [f"pair {i + 1}" for i in range(len(inputs))]
        if not inputs:
            raise NapariGanError("No training images were given.")
        if len(inputs) != len(targets):
            raise NapariGanError(
                f"{len(inputs)} input plane(s) but {len(targets)} target plane(s); "
                "inputs and targets must match one to one."
            )
        channels = inputs[0].shape[0]
        for inp, tgt, name in zip(inputs, targets, names):
            if inp.shape[0] != channels or tgt.shape[0] != targets[0].shape[0]:
                raise NapariGanError(f"{name}: all images must have the same number of channels.")
            check_pair(inp, tgt, scale, name)
            if min(inp.shape[-2:]) < min_size:
                raise NapariGanError(
                    f"{name} is only {inp.shape[-2]}x{inp.shape[-1]} pixels; at least "
                    f"{min_size}x{min_size} is needed."
                )
            check_finite(inp, f"{name} (input)")
            check_finite(tgt, f"{name} (target)")
        if input_norm is None:
            per_image = normalization == "image" or (
                normalization == "auto" and per_image_is_better(inputs, targets, scale))
            input_norm = Normalizer.fit(inputs, name="the input images", per_image=per_image)
        target_norm = target_norm or Normalizer.fit(targets, name="the target images")
        plane_norms = [input_norm.for_plane(p) for p in inputs] if input_norm.per_image else []
        return cls(list(inputs), list(targets), scale, input_norm, target_norm, names,
                   plane_input_norms=plane_norms)

    def input_norm_for(self, index: int) -> Normalizer:
        """The normaliser of input plane ``index`` (its own range with per-image normalisation,
        measured on the whole image before any validation split)."""
        return self.plane_input_norms[index] if self.plane_input_norms else self.input_norm

    @property
    def channels(self) -> tuple[int, int]:
        return self.inputs[0].shape[0], self.targets[0].shape[0]

    def row_offset(self, index: int) -> int:
        """Row of the original image where plane ``index`` starts (0 unless split off)."""
        return self.row_offsets[index] if self.row_offsets else 0

    def split_by_region(self, val_fraction: float, patch: int) -> tuple["PairedSet", "PairedSet | None"]:
        """Hold out the bottom ``val_fraction`` of each image's rows for validation.

        The training part keeps at least one patch of rows; a plane too small to split
        stays entirely in training.
        """
        if val_fraction <= 0:
            return self, None
        tr_in, tr_tg, va_in, va_tg, va_names, va_rows = [], [], [], [], [], []
        tr_norms, va_norms = [], []
        s = self.scale
        for i, (inp, tgt, name) in enumerate(zip(self.inputs, self.targets, self.names)):
            h = inp.shape[-2]
            val_rows = int(round(h * val_fraction))
            tr_norms.append(self.input_norm_for(i))
            if val_rows < 8 or h - val_rows < min(patch, h):
                tr_in.append(inp)
                tr_tg.append(tgt)
                continue
            cut = h - val_rows
            tr_in.append(inp[:, :cut])
            tr_tg.append(tgt[:, : cut * s])
            va_in.append(inp[:, cut:])
            va_tg.append(tgt[:, cut * s:])
            va_names.append(name)
            va_rows.append(cut)
            va_norms.append(self.input_norm_for(i))
        per_image = bool(self.plane_input_norms)
        train = PairedSet(tr_in, tr_tg, s, self.input_norm, self.target_norm, self.names,
                          plane_input_norms=tr_norms if per_image else [])
        if not va_in:
            return train, None
        return train, PairedSet(va_in, va_tg, s, self.input_norm, self.target_norm, va_names, va_rows,
                                va_norms if per_image else [])


# ------------------------------------------------------------------- sampling & aug
def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/90-degree rotations of the last two axes (k in 0..7)."""
    if k >= 4:
        array = array[..., ::-1]
    return np.rot90(array, k % 4, axes=(-2, -1))


class PairedPatchSampler:
    """Random, augmented, normalised paired patches from images of any size.

    Patches are cut from the raw (possibly memory-mapped) planes and normalised one patch
    at a time, so large images are never copied whole. Planes are drawn in proportion to
    their area.
    """

    def __init__(self, data: PairedSet, patch: int, rng: np.random.Generator, augment: bool = True):
        self.data, self.rng, self.augment = data, rng, augment
        smallest = min(min(p.shape[-2:]) for p in data.inputs)
        self.patch = min(patch, smallest)
        areas = np.array([p.shape[-1] * p.shape[-2] for p in data.inputs], np.float64)
        self.weights = areas / areas.sum()

    def draw(self, batch: int) -> list[tuple[int, int, int, int]]:
        """Where the next ``batch`` patches come from: (plane, row, column, dihedral k).

        Drawing is separate from cutting so that DDP processes can draw the same global
        batch from one shared random stream and each cut only its own share.
        """
        d, p = self.data, self.patch
        draws = []
        for _ in range(batch):
            i = int(self.rng.choice(len(d.inputs), p=self.weights))
            inp = d.inputs[i]
            r = int(self.rng.integers(0, inp.shape[-2] - p + 1))
            c = int(self.rng.integers(0, inp.shape[-1] - p + 1))
            k = int(self.rng.integers(0, 8)) if self.augment else 0
            draws.append((i, r, c, k))
        return draws

    def cut(self, draws: list[tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """The normalised, augmented (input, target) patches for ``draws``."""
        d, p, s = self.data, self.patch, self.data.scale
        xs, ys = [], []
        for i, r, c, k in draws:
            inp, tgt = d.inputs[i], d.targets[i]
            x = d.input_norm_for(i).normalize(inp[:, r:r + p, c:c + p])
            y = d.target_norm.normalize(tgt[:, r * s:(r + p) * s, c * s:(c + p) * s])
            if k:
                x, y = dihedral(x, k), dihedral(y, k)
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        return np.stack(xs), np.stack(ys)

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        return self.cut(self.draw(batch))


def validation_crops(data: PairedSet, crop: int, max_crops: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed normalised (input, target) crops of the validation region, for cheap metrics."""
    crops = []
    per_plane = max(1, max_crops // len(data.inputs))
    s = data.scale
    for i, (inp, tgt) in enumerate(zip(data.inputs, data.targets)):
        h, w = inp.shape[-2:]
        ch, cw = min(crop, h), min(crop, w)
        for c in np.linspace(0, w - cw, per_plane).astype(int):
            x = data.input_norm_for(i).normalize(inp[:, :ch, c:c + cw])
            y = data.target_norm.normalize(tgt[:, : ch * s, c * s:(c + cw) * s])
            crops.append((x, y))
            if len(crops) >= max_crops:
                return crops
    return crops


# ----------------------------------------------------------------------- degradations
def poisson_gaussian_noise(clean: np.ndarray, photons: float = 30.0, read_noise: float = 0.02,
                           rng: np.random.Generator | None = None) -> np.ndarray:
    """Realistic camera noise: Poisson shot noise at ``photons`` for the brightest pixel,
    plus Gaussian read noise (as a fraction of the full range). Returns float32 in the
    clean image's range."""
    rng = rng or np.random.default_rng()
    x = np.asarray(clean, np.float64)
    lo, hi = float(x.min()), float(x.max())
    unit = (x - lo) / (hi - lo if hi > lo else 1.0)
    noisy = rng.poisson(unit * photons) / photons + rng.normal(0.0, read_noise, unit.shape)
    return (noisy * (hi - lo) + lo).astype(np.float32)


def blur_downsample(image: np.ndarray, scale: int, sigma: float | None = None) -> np.ndarray:
    """Low-resolution version of a (..., H, W) image: Gaussian blur then area downsampling."""
    sigma = 0.5 * scale if sigma is None else sigma
    x = np.asarray(image, np.float32)
    blur = ndimage.gaussian_filter(x, sigma=(0,) * (x.ndim - 2) + (sigma, sigma))
    h, w = (x.shape[-2] // scale) * scale, (x.shape[-1] // scale) * scale
    blur = blur[..., :h, :w]
    return downscale_local_mean(blur, (1,) * (x.ndim - 2) + (scale, scale)).astype(np.float32)


def paired_set_from_files(inputs, targets, scale: int = 1, channels: int = 1,
                          input_norm: Normalizer | None = None,
                          target_norm: Normalizer | None = None,
                          normalization: str = "auto") -> PairedSet:
    """Read TIFF pairs (two files, or two folders matched by name), memory-mapped where
    possible, and build a :class:`PairedSet` (stacks contribute one pair per plane)."""
    from .io import match_pairs, read_tiff

    ins, tgs, names = [], [], []
    for in_path, tg_path in match_pairs(inputs, targets):
        x, _ = to_planes(read_tiff(in_path, memmap=True), channels, name=str(in_path))
        y, _ = to_planes(read_tiff(tg_path, memmap=True), channels, name=str(tg_path))
        if len(x) != len(y):
            raise NapariGanError(
                f"'{in_path.name}': the input has {len(x)} plane(s) but the target has {len(y)}."
            )
        for i in range(len(x)):
            ins.append(x[i])
            tgs.append(y[i])
            names.append(in_path.name if len(x) == 1 else f"{in_path.name} plane {i + 1}")
    return PairedSet.build(ins, tgs, scale, names, input_norm, target_norm, normalization=normalization)
