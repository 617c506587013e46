"""Applying a trained Pix2Pix model to images of any size.

Prediction is tiled (:mod:`.tiling`): tiles overlap and are blended with smooth weights, so
there are no seams; tiles are batched; GPU memory is bounded by the tile size, host memory
by the output. On out-of-memory the batch, then the tile, is halved and the work retried.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .axes import AxesImage, to_planes as axes_to_planes
from .data import Normalizer, check_finite, from_planes, to_planes
from .device import autocast, describe_device, is_out_of_memory, prefers_channels_last
from . import settings
from .errors import NapariGanError
from .settings import setting
from .tiling import predict_tiled, round_up as _round_up, tile_starts  # noqa: F401  (re-exported)

MIN_TILE = 32
DEFAULT_OVERLAP = 48        # networks that do not state their receptive field
#: activation memory per input pixel and generator channel during prediction (measured: a
#: width-32 uNet needs 0.8-1.0 kB per pixel in float32, 0.47 kB in bf16)
BYTES_PER_CHANNEL_PIXEL = 32


def overlap_for(generator: torch.nn.Module) -> int:
    """Half the network's receptive field, in multiples of 8 (tiles then see what the
    untiled network would see around each pixel they keep)."""
    field = getattr(generator, "receptive_field", None)
    if field is None:
        return DEFAULT_OVERLAP
    return _round_up(-(-field() // 2), 8)


def memory_budget(device: torch.device) -> int:
    """Bytes prediction may use for activations: half the free memory of a GPU; on the CPU a
    third of the available memory, at most 6 GiB (a laptop keeps working while it runs)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    if device.type == "mps":
        return 2 << 30
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 4 << 30
    return min(available // 3, 6 << 30)


@dataclass
class PredictSettings:
    """How a model is applied to an image (declared once for the CLI and Generate Data)."""

    tile: int | None = setting(None, "tile size in input pixels", min=MIN_TILE, max=65536,
                               auto="the whole image when it fits in memory, else the largest tile "
                                    "that does", label="Tile size")
    overlap: int | None = setting(None, "overlap of neighbouring tiles in input pixels", min=0, max=4096,
                                  auto="half the network's receptive field", label="Tile overlap")
    amp: bool = setting(True, "bf16 autocast on CUDA and on CPUs with native bf16 (off: float32 "
                        "throughout)", flag="--no-amp", advanced=True, label="bf16 where it is faster")

    def __post_init__(self):
        settings.check(self)
        if self.tile is not None and self.overlap is not None and self.tile <= 2 * self.overlap:
            raise NapariGanError(f"--tile ({self.tile}) must be larger than twice the overlap ({self.overlap}); "
                                 "choose a larger tile or a smaller --overlap.")


class Predictor:
    """A loaded Pix2Pix generator with its normalisation, ready to predict.

    ``amp``: bf16 autocast where it pays off (:func:`.device.autocast`); ``False`` predicts
    in float32 throughout.
    """

    def __init__(self, generator: torch.nn.Module, config: dict, input_norm: Normalizer,
                 target_norm: Normalizer, device: torch.device, path: Path | None = None,
                 amp: bool = True):
        self.G = generator.eval().to(device)
        self.config, self.device, self.path, self.amp = config, device, path, bool(amp)
        self.input_norm, self.target_norm = input_norm, target_norm
        self.scale = int(config.get("scale", 1))
        self.in_channels = int(config.get("in_channels", 1))
        self.out_channels = int(config.get("out_channels", 1))
        self.multiple = 2 ** int(config.get("depth", 0))
        self.tile: int | None = None          # None: the whole plane if it fits, see auto_tile
        self.overlap = overlap_for(generator)
        self.bytes_per_pixel = BYTES_PER_CHANNEL_PIXEL * int(config.get("width", 32)) * self.scale ** 2
        self.batch = 4 if device.type != "cpu" else 1
        # Where the blended sums live: on a GPU in a band of rows on the device (the host only
        # slices tiles and receives finished rows); on the CPU in the output array itself.
        self.blend_on_device = device.type != "cpu"
        self.channels_last = prefers_channels_last(device)
        if self.channels_last:
            self.G.to(memory_format=torch.channels_last)

    @property
    def device_name(self) -> str:
        return describe_device(self.device)

    def auto_tile(self, h: int, w: int) -> tuple[int, bool]:
        """The tile for an ``h x w`` plane and whether it is the whole plane: the whole plane
        when its activations fit in the memory budget, else the largest square tile that fits."""
        fits = int(memory_budget(self.device) / self.bytes_per_pixel)
        if h * w <= fits:
            return _round_up(max(h, w), self.multiple), True
        side = max(MIN_TILE, int(math.sqrt(fits)) // self.multiple * self.multiple)
        return max(side, 4 * self.overlap), False

    # ------------------------------------------------------------------ tiles
    def _run_tiles(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised tiles ``(B, C, h, w)`` on the device -> float32 predictions there."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device, self.amp):
            return self.G(x).float()

    def predict_plane(self, plane: np.ndarray, tile: int | None = None, overlap: int | None = None,
                      cancel: Callable[[], bool] | None = None,
                      on_tile: Callable[[int, int], None] | None = None,
                      out: np.ndarray | None = None) -> np.ndarray:
        """One ``(C, H, W)`` raw plane -> ``(C_out, H*s, W*s)`` float32 in target units.

        ``out`` (optional): a float32 array of that shape to write into (e.g. a memory-map).
        """
        c, h, w = plane.shape
        tile = tile or self.tile
        if tile is None:
            tile, whole = self.auto_tile(h, w)
            if whole and overlap is None:   # one tile: exactly the untiled prediction, no margin
                overlap = 0
        overlap = min(self.overlap, tile // 4) if overlap is None else overlap
        shape = (self.out_channels, h * self.scale, w * self.scale)
        if out is None:
            out = np.empty(shape, np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise NapariGanError(f"The output array must be float32 of shape {shape}, not {out.dtype} {out.shape}.")
        norm_in = self.input_norm.for_plane(plane)   # one range for all tiles of the plane
        while True:
            try:
                return predict_tiled(
                    plane, self._run_tiles, out, tile, overlap, scale=self.scale, multiple=self.multiple,
                    batch=self.batch, device=self.device,
                    accumulate_on=self.device if self.blend_on_device else None,
                    input_norm=norm_in, output_norm=self.target_norm, cancel=cancel, on_tile=on_tile)
            except (RuntimeError, torch.OutOfMemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                if self.batch > 1:
                    self.batch //= 2
                elif tile // 2 >= MIN_TILE:
                    tile //= 2
                    overlap = min(overlap, tile // 4)
                else:
                    raise NapariGanError(
                        f"Out of memory on {self.device_name} even with {tile}-pixel tiles; "
                        "choose the CPU device or close other programs using the GPU."
                    ) from exc

    # ------------------------------------------------------------------ images
    def predict(self, image: np.ndarray, channel_axis: int | None = None, tile: int | None = None,
                overlap: int | None = None, cancel: Callable[[], bool] | None = None,
                progress: Callable[[int, int], None] | None = None, name: str = "image") -> np.ndarray:
        """Predict a 2D image or a Z/T stack (plane by plane), keeping its layout.

        ``progress(done, total)`` counts tiles over all planes (so a single large image
        reports progress too); returns float32 in the target's units.
        Host memory beyond the (possibly memory-mapped) input is the output array plus
        tile-sized buffers.
        """
        planes, lead = to_planes(image, self.in_channels, channel_axis, name)
        outputs = self._predict_planes(planes, tile, overlap, cancel, progress, name)
        ndim = np.ndim(image)
        if self.out_channels == 1:
            return from_planes(outputs, lead, 1)
        return from_planes(outputs, lead, self.out_channels, channel_axis, ndim)

    def predict_image(self, image: AxesImage, tile: int | None = None, overlap: int | None = None,
                      cancel: Callable[[], bool] | None = None,
                      progress: Callable[[int, int], None] | None = None) -> AxesImage:
        """Predict an image with named axes: the result keeps the input's axes order and pixel
        size (Y and X divided by the super-resolution factor)."""
        planes, layout = axes_to_planes(image, self.in_channels)
        outputs = self._predict_planes(planes, tile, overlap, cancel, progress, image.name)
        return layout.restore_image(outputs, self.out_channels, scale=self.scale)

    def _predict_planes(self, planes, tile, overlap, cancel, progress, name) -> np.ndarray:
        if min(planes.shape[-2:]) < 4:
            raise NapariGanError(f"{name} is only {planes.shape[-2]}x{planes.shape[-1]} pixels; too small to predict.")
        outputs = np.empty((planes.shape[0], self.out_channels) + tuple(d * self.scale for d in planes.shape[-2:]),
                           np.float32)
        for i, plane in enumerate(planes):
            check_finite(plane, f"{name} (plane {i + 1})")
            on_tile = None
            if progress is not None:
                def on_tile(done, total, i=i):
                    progress(i * total + done, len(planes) * total)
            self.predict_plane(plane, tile, overlap, cancel, on_tile, out=outputs[i])
        return outputs


def load_predictor(path: str | Path, device: str = "auto", amp: bool = True) -> Predictor:
    """Load an image-to-image model file (or run folder) for prediction (``amp``: see
    :class:`Predictor`); generators and foreign files are refused."""
    from .families import open_model

    return open_model(path, "image", device, amp)[2]
