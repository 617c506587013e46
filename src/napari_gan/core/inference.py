"""Applying a trained Pix2Pix model to images of any size.

Prediction is tiled: tiles overlap and are blended with smooth weights, so there are no
seams; tiles are batched; GPU memory is bounded by the tile size, host memory by the
output. On out-of-memory the batch, then the tile, is halved and the work retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import checkpoint
from .data import Normalizer, check_finite, from_planes, to_planes
from .device import autocast, describe_device, is_out_of_memory, prefers_channels_last, resolve_device
from .errors import NapariGanError

MIN_TILE = 32


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering ``size`` with tiles of ``tile`` overlapping by >= ``overlap``."""
    if size <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return starts


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1D blending weight: rises over ``overlap`` pixels except at the image border."""
    w = np.ones(length, np.float32)
    o = min(overlap, length // 2)
    if o > 0:
        rise = np.sin(0.5 * np.pi * (np.arange(o, dtype=np.float32) + 0.5) / o) ** 2
        if not at_start:
            w[:o] = rise
        if not at_end:
            w[-o:] = rise[::-1]
    return w


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def read_padded(plane: np.ndarray, y: int, x: int, th: int, tw: int) -> np.ndarray:
    """The ``th x tw`` window at (y, x) of ``plane`` (C, H, W), mirrored where it leaves
    the image. Only the window is read, so memory-mapped planes stay on disk."""
    h, w = plane.shape[-2:]
    y0, y1, x0, x1 = max(y, 0), min(y + th, h), max(x, 0), min(x + tw, w)
    window = np.asarray(plane[:, y0:y1, x0:x1])
    pads = ((0, 0), (y0 - y, y + th - y1), (x0 - x, x + tw - x1))
    if any(p for pair in pads for p in pair):
        mode = "reflect" if min(window.shape[-2:]) > 1 else "edge"
        window = np.pad(window, pads, mode=mode)
    return window


class Predictor:
    """A loaded Pix2Pix generator with its normalisation, ready to predict."""

    def __init__(self, generator: torch.nn.Module, config: dict, input_norm: Normalizer,
                 target_norm: Normalizer, device: torch.device, path: Path | None = None):
        self.G = generator.eval().to(device)
        self.config, self.device, self.path = config, device, path
        self.input_norm, self.target_norm = input_norm, target_norm
        self.scale = int(config.get("scale", 1))
        self.in_channels = int(config.get("in_channels", 1))
        self.out_channels = int(config.get("out_channels", 1))
        self.multiple = 2 ** int(config.get("depth", 0))
        self.tile = 512 if device.type != "cpu" else 256
        self.overlap = 48
        self.batch = 4 if device.type != "cpu" else 1
        # On a GPU, normalisation and blending run on the device, band by band, so the host
        # only slices tiles and receives finished rows (keeps the GPU busy on big images).
        self.blend_on_device = device.type != "cpu"
        self.channels_last = prefers_channels_last(device)
        if self.channels_last:
            self.G.to(memory_format=torch.channels_last)

    @property
    def device_name(self) -> str:
        return describe_device(self.device)

    # ------------------------------------------------------------------ tiles
    def _run_tiles(self, tiles: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(tiles).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device):
            return self.G(x).float().cpu().numpy()

    def predict_plane(self, plane: np.ndarray, tile: int | None = None, overlap: int | None = None,
                      cancel: Callable[[], bool] | None = None,
                      on_tile: Callable[[int, int], None] | None = None,
                      out: np.ndarray | None = None) -> np.ndarray:
        """One ``(C, H, W)`` raw plane -> ``(C_out, H*s, W*s)`` float32 in target units.

        ``out`` (optional): a float32 array of that shape to write into (e.g. a memory-map).
        """
        tile = tile or self.tile
        overlap = self.overlap if overlap is None else overlap
        c, h, w = plane.shape
        shape = (self.out_channels, h * self.scale, w * self.scale)
        if out is None:
            out = np.empty(shape, np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise NapariGanError(f"The output array must be float32 of shape {shape}, not {out.dtype} {out.shape}.")
        norm_in = self.input_norm.for_plane(plane)   # one range for all tiles of the plane
        while True:
            try:
                if self.blend_on_device:
                    return self._predict_plane_on_device(plane, tile, overlap, cancel, on_tile, out, norm_in)
                return self._predict_plane(plane, tile, overlap, cancel, on_tile, out, norm_in)
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

    def _predict_plane(self, plane, tile, overlap, cancel, on_tile, out, norm_in) -> np.ndarray:
        # Tiles live on a virtual canvas padded by ``overlap`` (mirror) on every side, so
        # border pixels get the same context as interior ones and tiled == untiled.
        # Host memory: the output array plus tile-sized buffers. The tiles form a grid and
        # each tile's blending weight is a product wy(y) * wx(x), so the summed weight is
        # the product of two 1D sums: no image-sized weight array is needed.
        c, h, w = plane.shape
        s, m, mult = self.scale, overlap, self.multiple
        tile = max(mult, tile // mult * mult)
        th, tw = min(tile, _round_up(h + 2 * m, mult)), min(tile, _round_up(w + 2 * m, mult))
        ys = tile_starts(h + 2 * m, th, overlap)
        xs = tile_starts(w + 2 * m, tw, overlap)
        out[...] = 0
        weight_y = np.zeros(h * s, np.float32)
        weight_x = np.zeros(w * s, np.float32)
        for y in ys:
            y -= m
            y0, y1 = max(y, 0), min(y + th, h)
            if y1 > y0:
                weight_y[y0 * s:y1 * s] += _ramp(th * s, overlap * s, y == -m, y + th >= h + m)[(y0 - y) * s:(y1 - y) * s]
        for x in xs:
            x -= m
            x0, x1 = max(x, 0), min(x + tw, w)
            if x1 > x0:
                weight_x[x0 * s:x1 * s] += _ramp(tw * s, overlap * s, x == -m, x + tw >= w + m)[(x0 - x) * s:(x1 - x) * s]
        boxes = [(y - m, x - m) for y in ys for x in xs]
        total = len(boxes)
        for first in range(0, total, self.batch):
            if cancel is not None and cancel():
                raise InterruptedError("prediction cancelled")
            chunk = boxes[first:first + self.batch]
            tiles = np.stack([norm_in.normalize(read_padded(plane, y, x, th, tw)) for y, x in chunk])
            preds = self._run_tiles(tiles)
            for (y, x), pred in zip(chunk, preds):
                wy = _ramp(th * s, overlap * s, y == -m, y + th >= h + m)
                wx = _ramp(tw * s, overlap * s, x == -m, x + tw >= w + m)
                y0, y1, x0, x1 = max(y, 0), min(y + th, h), max(x, 0), min(x + tw, w)
                if y1 <= y0 or x1 <= x0:
                    continue
                sy = slice((y0 - y) * s, (y1 - y) * s)
                sx = slice((x0 - x) * s, (x1 - x) * s)
                wt = wy[sy, None] * wx[None, sx]
                out[:, y0 * s:y1 * s, x0 * s:x1 * s] += pred[:, sy, sx] * wt
            if on_tile is not None:
                on_tile(min(first + self.batch, total), total)
        # Normalise by the summed weight and return to target units, in place, in row bands.
        low = np.asarray(self.target_norm.low, np.float32)
        span = np.asarray(self.target_norm.high, np.float32) - low
        band = max(1, (1 << 22) // max(1, w * s))
        for r in range(0, h * s, band):
            wt = weight_y[r:r + band, None] * weight_x[None, :]
            for ch in range(self.out_channels):
                rows = out[ch, r:r + band]
                rows /= wt
                rows *= span[ch]
                rows += low[ch]
        return out

    def _geometry(self, plane, tile, overlap):
        c, h, w = plane.shape
        m, mult = overlap, self.multiple
        tile = max(mult, tile // mult * mult)
        th, tw = min(tile, _round_up(h + 2 * m, mult)), min(tile, _round_up(w + 2 * m, mult))
        return h, w, th, tw, tile_starts(h + 2 * m, th, overlap), tile_starts(w + 2 * m, tw, overlap)

    def _predict_plane_on_device(self, plane, tile, overlap, cancel, on_tile, out, norm_in) -> np.ndarray:
        """Same result as :meth:`_predict_plane`, with normalisation, blending and
        denormalisation on ``self.device``. Tiles are processed one tile row at a time
        into a device accumulator one tile high; rows no later tile touches are finished
        (divided by the summed weight, denormalised) and copied to ``out``."""
        h, w, th, tw, ys, xs = self._geometry(plane, tile, overlap)
        s, m, dev = self.scale, overlap, self.device
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(dev)
        low_in = t(norm_in.low).view(1, -1, 1, 1)
        span_in = t(np.subtract(norm_in.high, norm_in.low)).view(1, -1, 1, 1)
        low_out = t(self.target_norm.low).view(-1, 1, 1)
        span_out = t(np.subtract(self.target_norm.high, self.target_norm.low)).view(-1, 1, 1)
        ramps: dict = {}

        def ramp(n, a, b):
            if (n, a, b) not in ramps:
                ramps[n, a, b] = t(_ramp(n, overlap * s, a, b))
            return ramps[n, a, b]

        def summed_weight(starts, tile, size):  # 1D sum of the tiles' ramps along one axis
            total = torch.zeros(size * s, device=dev)
            for a in starts:
                a -= m
                a0, a1 = max(a, 0), min(a + tile, size)
                if a1 > a0:
                    total[a0 * s:a1 * s] += ramp(tile * s, a == -m, a + tile >= size + m)[(a0 - a) * s:(a1 - a) * s]
            return total

        weight_x = summed_weight(xs, tw, w)
        weight_y = summed_weight(ys, th, h)
        acc = torch.zeros((self.out_channels, th * s, w * s), device=dev)
        top = 0            # output row held in acc[:, 0]

        def finish(until: int) -> None:   # output rows [top, until) are complete
            nonlocal acc, top
            n = until - top
            if n <= 0:
                return
            rows = acc[:, :n] / (weight_y[top:until, None] * weight_x[None, :]) * span_out + low_out
            out[:, top:until] = rows.cpu().numpy()
            acc = torch.cat([acc[:, n:], torch.zeros_like(acc[:, :n])], dim=1)
            top = until

        done, total = 0, len(ys) * len(xs)
        for yc in ys:
            y = yc - m
            y0, y1 = max(y, 0), min(y + th, h)
            finish(y0 * s)
            if y1 <= y0:
                done += len(xs)
                continue
            wy = ramp(th * s, y == -m, y + th >= h + m)[(y0 - y) * s:(y1 - y) * s]
            row = [xc - m for xc in xs]
            for first in range(0, len(row), self.batch):
                if cancel is not None and cancel():
                    raise InterruptedError("prediction cancelled")
                chunk = row[first:first + self.batch]
                raw = t(np.stack([read_padded(plane, y, x, th, tw) for x in chunk]))
                x_in = (raw - low_in) / span_in
                if self.channels_last:
                    x_in = x_in.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode(), autocast(dev):
                    preds = self.G(x_in).float()
                for x, pred in zip(chunk, preds):
                    x0, x1 = max(x, 0), min(x + tw, w)
                    if x1 <= x0:
                        continue
                    wx = ramp(tw * s, x == -m, x + tw >= w + m)[(x0 - x) * s:(x1 - x) * s]
                    acc[:, (y0 * s - top):(y1 * s - top), x0 * s:x1 * s] += \
                        pred[:, (y0 - y) * s:(y1 - y) * s, (x0 - x) * s:(x1 - x) * s] * (wy[:, None] * wx[None, :])
                done += len(chunk)
                if on_tile is not None:
                    on_tile(done, total)
        finish(h * s)
        return out

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
        ndim = np.ndim(image)
        if self.out_channels == 1:
            return from_planes(outputs, lead, 1)
        return from_planes(outputs, lead, self.out_channels, channel_axis, ndim)


def load_predictor(path: str | Path, device: str = "auto") -> Predictor:
    """Load a Pix2Pix model file (or run folder) for prediction."""
    from .families.pix2pix import Pix2PixConfig, build_generator

    loaded = checkpoint.load(path)
    if loaded.kind != "pix2pix":
        raise NapariGanError(
            f"'{loaded.path}' is a {loaded.kind} model; prediction from an input image needs a "
            "Pix2Pix model (use 'generate' for StyleGAN2 models)."
        )
    if "generator" not in loaded.state:
        raise NapariGanError(f"'{loaded.path}' holds no generator weights.")
    try:
        cfg = Pix2PixConfig.from_dict(loaded.config)
        norms = loaded.normalization
        input_norm, target_norm = Normalizer.from_dict(norms["input"]), Normalizer.from_dict(norms["target"])
    except (KeyError, TypeError, ValueError, NapariGanError) as exc:
        raise NapariGanError(f"'{loaded.path}' has an incomplete or damaged header ({exc}).") from exc
    generator = build_generator(cfg)
    checkpoint.load_weights(generator, loaded.state["generator"], loaded.path)
    return Predictor(generator, loaded.config, input_norm, target_norm, resolve_device(device), loaded.path)
