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
from .normalization import (  # noqa: F401  (re-exported: data.Normalizer etc. keep working)
    _MAX_STAT_PIXELS, BLOCK, DEFAULT_PERCENTILES, NORMALIZATIONS, Normalizer, block_means, per_image_is_better,
)


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
    from . import axes as _axes

    has_channel = channel_axis is not None or channels > 1 or _axes.looks_rgb(image.shape)
    if image.ndim - 2 - has_channel <= 2:  # nameable as [T][Z][C]YX[S]: the axes-aware path
        guessed = _axes.guess_axes(image.shape, channels, channel_axis, name)
        planes, layout = _axes.to_planes(_axes.AxesImage(image, guessed, name=name), channels)
        return planes, layout.lead_shape
    # more leading axes than T and Z: flatten them all, as before
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
    step = 1 << 24
    if not isinstance(plane, np.ndarray):   # a lazy plane (OME-Zarr): read in bands of rows
        rows = max(1, step // max(1, plane.shape[-1] * (plane.shape[0] if plane.ndim > 2 else 1)))
        for r in range(0, plane.shape[-2], rows):
            if not np.isfinite(np.asarray(plane[..., r:r + rows, :])).all():
                raise NapariGanError(f"{name} contains NaN or infinite values; fix or crop them first.")
        return
    flat = plane.reshape(-1)
    for start in range(0, flat.size, step):
        if not np.isfinite(flat[start:start + step]).all():
            raise NapariGanError(f"{name} contains NaN or infinite values; fix or crop them first.")


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
def dihedral(array, k: int):
    """One of the 8 flips/90-degree rotations of the last two axes (k in 0..7): k % 4
    quarter turns (from the Y axis towards the X axis), after a left-right flip when k >= 4.

    Works on numpy arrays (returns a view) and torch tensors (any device) with identical
    results; torch is not imported here.
    """
    k = int(k)
    if not 0 <= k < 8:
        raise ValueError(f"dihedral k must be in 0..7, not {k}")
    if isinstance(array, np.ndarray):
        flip, rot90 = (lambda a: a[..., ::-1]), (lambda a, n: np.rot90(a, n, axes=(-2, -1)))
    else:  # a torch.Tensor
        flip, rot90 = (lambda a: a.flip(-1)), (lambda a, n: a.rot90(n, (-2, -1)))
    if k >= 4:
        array = flip(array)
    return rot90(array, k % 4) if k % 4 else array


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
