"""Applying a trained image-to-image model (Pix2Pix, CycleGAN) to images of any size.

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
    level: int = setting(0, "OME-Zarr inputs: the multiscale level to predict (0: full resolution)",
                         min=0, max=30, advanced=True, widget=False)
    chunk: int = setting(512, "OME-Zarr outputs: chunk size along Y and X in output pixels (large images are "
                         "written chunk row by chunk row; processes under torchrun split the image at chunk "
                         "rows)", min=16, max=16384, advanced=True, widget=False, label="Zarr chunk")
    levels: int | None = setting(None, "OME-Zarr outputs: levels of the multiscale pyramid (1: full resolution "
                                 "only)", min=1, max=16, auto="halve Y and X until the image fits in one chunk",
                                 advanced=True, widget=False, label="Pyramid levels")
    ngff: str = setting("0.5", "OME-Zarr outputs: NGFF version (0.5 on Zarr v3, 0.4 on Zarr v2 for older "
                        "readers)", choices=("0.4", "0.5"), advanced=True, widget=False, flag="--ngff-version",
                        label="NGFF version")

    def __post_init__(self):
        settings.check(self)
        if self.tile is not None and self.overlap is not None and self.tile <= 2 * self.overlap:
            raise NapariGanError(f"Tile size (--tile, {self.tile}) must be larger than twice the overlap "
                                 f"(--overlap, {self.overlap}); choose a larger tile or a smaller overlap.")


class Predictor:
    """A loaded image-to-image generator (Pix2Pix's, or one direction of a CycleGAN) with the
    normalisations of its input and output, ready to predict.

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

    def tile_for(self, h: int, w: int, tile: int | None = None, overlap: int | None = None) -> tuple[int, int]:
        """The tile and overlap :meth:`predict_plane` uses for an ``h x w`` plane."""
        tile = tile or self.tile
        if tile is None:
            tile, whole = self.auto_tile(h, w)
            if whole and overlap is None:   # one tile: exactly the untiled prediction, no margin
                overlap = 0
        overlap = min(self.overlap, tile // 4) if overlap is None else overlap
        return int(tile), int(overlap)

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
                      out: np.ndarray | None = None, rows: tuple[int, int] | None = None,
                      check_input: Callable[[np.ndarray], None] | None = None,
                      cols: tuple[int, int] | None = None) -> np.ndarray:
        """One ``(C, H, W)`` raw plane -> ``(C_out, H*s, W*s)`` float32 in target units.

        ``out`` (optional): a float32 array of that shape to write into (e.g. a memory-map), or
        a row writer (:class:`.zarr_io.BandWriter`). ``rows``: only these output rows (a
        share of the plane; the tiles are those of the whole plane, so the pixels are too);
        ``cols``: only these output columns (a column strip: ``out`` holds just those).
        ``check_input(raw)`` sees every batch of raw tiles (see :func:`.tiling.predict_tiled`).
        """
        c, h, w = plane.shape
        tile, overlap = self.tile_for(h, w, tile, overlap)
        shape = (self.out_channels, h * self.scale, (cols[1] - cols[0]) if cols else w * self.scale)
        if out is None:
            out = np.empty(shape, np.float32)
        elif tuple(out.shape) != shape or out.dtype != np.float32:
            raise NapariGanError(f"The output array must be float32 of shape {shape}, not {out.dtype} {out.shape}.")
        norm_in = self.input_norm.for_plane(plane)   # one range for all tiles of the plane
        while True:
            try:
                return predict_tiled(
                    plane, self._run_tiles, out, tile, overlap, scale=self.scale, multiple=self.multiple,
                    batch=self.batch, device=self.device,
                    accumulate_on=self.device if self.blend_on_device else None,
                    input_norm=norm_in, output_norm=self.target_norm, cancel=cancel, on_tile=on_tile,
                    rows=rows, cols=cols, check_input=check_input)
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


# --------------------------------------------------------------------------- files
#: TIFF outputs up to this size (bytes, float32) are predicted in memory and written at once
#: (an ImageJ hyperstack where possible); larger ones are predicted into a temporary Zarr store
#: beside the output, chunk row by chunk row, and written from it tile by tile (a tiled
#: OME-TIFF), so host memory stays bounded by the tile and chunk sizes. The environment
#: variable NAPARI_GAN_STREAM_TIFF_MB sets it (0: always stream).
#: widest band of output columns a streamed prediction holds, unless 8 tiles are wider (see
#: :func:`column_strips`)
STRIP_COLUMNS = int(os.environ.get("NAPARI_GAN_STRIP_COLUMNS", "4096"))
STRIP_TILES = 8
STREAM_TIFF_BYTES = int(float(os.environ.get("NAPARI_GAN_STREAM_TIFF_MB", "1024")) * (1 << 20))


def split_rows(planes: int, rows: int, chunk: int, rank: int = 0, world: int = 1) -> list[tuple[int, int, int]]:
    """Process ``rank``'s share of ``planes`` planes of ``rows`` output rows: the units (plane,
    chunk row) in order, cut into ``world`` contiguous runs, as ``(plane, first row, end row)``
    parts whose boundaries fall on chunk rows (so no two processes write the same chunk)."""
    per_plane = -(-rows // chunk)
    units = planes * per_plane
    parts: list[tuple[int, int, int]] = []
    for u in range(rank * units // world, (rank + 1) * units // world):
        p, j = divmod(u, per_plane)
        r0, r1 = j * chunk, min(rows, (j + 1) * chunk)
        if parts and parts[-1][0] == p and parts[-1][2] == r0:
            parts[-1] = (p, parts[-1][1], r1)
        else:
            parts.append((p, r0, r1))
    return parts


def column_strips(width: int, chunk: int, tile: int) -> list[tuple[int, int]]:
    """Column ranges ``[c0, c1)`` that a plane ``width`` output pixels wide is predicted in
    when streaming: the whole width up to :data:`STRIP_COLUMNS` (or :data:`STRIP_TILES` tiles
    of ``tile`` output pixels, if wider), else strips of about that width on chunk boundaries,
    so that host memory does not grow with the width (the tiles on a strip's border are
    computed for both strips: about one tile column in eight more)."""
    strip = max(STRIP_COLUMNS, STRIP_TILES * tile)
    n = -(-width // strip)
    chunks = -(-width // chunk)
    bounds = [min(width, (k * chunks // n) * chunk) for k in range(n + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


class _Team:
    """The processes predicting one file together (a single process needs no collectives).

    :meth:`step` runs this process's part of a phase, then meets the others: if any of them
    failed, every process stops (the failing one with its own error), so no process waits
    forever at the next meeting."""

    def __init__(self, rank: int, world: int, device: torch.device):
        self.rank, self.world, self.device = rank, world, device

    def step(self, fn: Callable[[], None] | None = None) -> None:
        from . import distributed

        error = None
        if fn is not None:
            try:
                fn()
            except Exception as exc:   # noqa: BLE001 - re-raised below, after the others know
                error = exc
        failed = distributed.sum_values([0.0 if error is None else 1.0], self.device)[0] if self.world > 1 else 0
        if error is not None:
            raise error
        if failed:
            raise NapariGanError("Another process of this torchrun stopped with an error (see its message); "
                                 "nothing was written.")

    def rank0(self, values: tuple[int, ...]) -> tuple[int, ...]:
        """Rank 0's ``values`` on every process."""
        from . import distributed

        if self.world == 1:
            return tuple(values)
        return tuple(int(round(v)) for v in distributed.agree(tuple(float(v) for v in values), False,
                                                              self.device)[0])


def _raise(error: BaseException | None) -> None:
    if error is not None:
        raise error


def _nan_check(name: str) -> Callable[[np.ndarray], None]:
    def check(raw: np.ndarray) -> None:
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            raise NapariGanError(f"{name} contains NaN or infinite values; fix or crop them first.")
    return check


def predict_file(predictor: Predictor, src: Path, dst: Path, how: PredictSettings | None = None, *,
                 axes: str | None = None, series: int | None = None,
                 check: Callable[[np.ndarray, str], None] | None = None,
                 log: Callable[[str], None] | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 rank: int = 0, world: int = 1) -> Path:
    """Predict the image file ``src`` (TIFF or OME-Zarr, read lazily / memory-mapped) into
    ``dst`` (TIFF or OME-Zarr, by its suffix), as process ``rank`` of ``world`` processes
    that share the work (see :func:`predict_files`).

    OME-Zarr outputs and TIFF outputs above :data:`STREAM_TIFF_BYTES` (or shared by several
    processes) are streamed: each plane is predicted chunk row by chunk row into a Zarr store
    (host memory: the tile's activations plus a band of ``tile`` and one of ``chunk`` output
    rows), then the pyramid is computed chunk by chunk; OME-Zarr outputs keep the input's axes
    (in NGFF order) and pixel sizes (Y, X divided by the super-resolution factor).
    ``check(values, source)`` sees every block of output before it is written.
    """
    from .axes import AxesImage, read_image, write_image
    from .zarr_io import (LazyArray, ZarrImageStore, is_zarr_path, move_into_place, ngff_axes, remove_store,
                          temporary_path)

    how = how or PredictSettings()
    src, dst = Path(src), Path(dst)
    team = _Team(rank, world, predictor.device)
    problem = None
    try:   # every process reads the input; they all stop if any of them cannot
        image = read_image(src, axes=axes, series=series, level=how.level)
        planes, layout = axes_to_planes(image, predictor.in_channels)
        h, w = planes.shape[-2:]
        if min(h, w) < 4:
            raise NapariGanError(f"{image.name} is only {h}x{w} pixels; too small to predict.")
    except Exception as exc:   # noqa: BLE001 - raised by team.step
        problem = exc
    team.step(lambda: _raise(problem))
    s, c_out = predictor.scale, predictor.out_channels
    out_axes = layout.output_axes(c_out)
    sizes = dict(zip(layout.lead_axes, layout.lead_shape))
    sizes.update({"C": c_out, "S": c_out, "Y": h * s, "X": w * s})
    pixel_size = {k: (v / s if k in "YX" else v) for k, v in layout.pixel_size.items()}
    source = f"'{src}'"
    to_zarr = is_zarr_path(dst)
    nbytes = 4 * len(planes) * c_out * h * s * w * s
    say = log if log is not None and rank == 0 else (lambda text: None)
    if rank != 0:
        progress = None     # rank 0 reports for all

    if not to_zarr and world == 1 and nbytes <= STREAM_TIFF_BYTES:   # small TIFF output: in memory
        result = predictor.predict_image(image, how.tile, how.overlap, progress=progress)
        if check is not None:
            check(result.data, source)
        write_image(dst, result)
        say(f"{src.name}: {image.axes} {image.shape} {image.dtype} -> {dst} {result.axes} {result.shape} float32")
        return dst

    store_axes = ngff_axes(out_axes) if to_zarr else out_axes
    shape = tuple(sizes[a] for a in store_axes)
    tmp = temporary_path(dst)
    store = ZarrImageStore(tmp, shape, store_axes, np.float32, how.chunk, how.levels if to_zarr else 1,
                           pixel_size, layout.unit, dst.name.split(".")[0] or dst.name, how.ngff, ome=to_zarr)

    def create():
        if tmp.exists():
            remove_store(tmp)
        store.create()

    try:
        team.step(create if rank == 0 else None)
        tile, overlap = team.rank0(predictor.tile_for(h, w, how.tile, how.overlap))
        parts = split_rows(len(planes), h * s, store.chunk, rank, world)
        block_check = (lambda values: check(values, source)) if check is not None else None

        strips = column_strips(w * s, store.chunk, tile * s)
        units = [(part, cols) for part in parts for cols in strips]

        def predict_parts():
            store.open()
            for k, ((p, r0, r1), cols) in enumerate(units):
                index = {a: int(i) for a, i in zip(layout.lead_axes,
                                                   np.unravel_index(p, layout.lead_shape))} if layout.lead_axes else {}
                sink = store.sink(out_axes, index, (r0, r1), block_check, cols)
                on_tile = None
                if progress is not None:
                    def on_tile(done, total, k=k):   # in thousandths of a unit: strips differ in tiles
                        progress(k * 1000 + 1000 * done // total, len(units) * 1000)
                plane_name = image.name if len(planes) == 1 else f"{image.name} (plane {p + 1})"
                predictor.predict_plane(planes[p], tile, overlap, out=sink, rows=(r0, r1), on_tile=on_tile,
                                        check_input=_nan_check(plane_name), cols=cols)
                sink.close()

        team.step(predict_parts)
        for level in range(1, store.levels):
            units = store.pyramid_units(level)
            mine = [units[i] for i in range(rank * len(units) // world, (rank + 1) * len(units) // world)]
            team.step(lambda level=level, mine=mine: store.write_level(level, mine))

        def finish():
            if to_zarr:
                store.write_metadata({"source": src.name})
                move_into_place(tmp, dst)
            else:
                write_image(dst, AxesImage(LazyArray(store.open().arrays[0]), out_axes, pixel_size, layout.unit,
                                           dst.name))
                remove_store(tmp)

        team.step(finish if rank == 0 else None)
    except BaseException:
        if rank == 0:
            remove_store(tmp)
        raise
    say(f"{src.name}: {image.axes} {image.shape} {image.dtype} -> {dst} {store_axes} {shape} float32"
        + (f" ({store.levels} levels)" if to_zarr else "") + (f" ({world} processes)" if world > 1 else ""))
    return dst


def predict_files(predictor: Predictor, files: list[Path], outputs: list[Path],
                  how: PredictSettings | None = None, *, axes: str | None = None, series: int | None = None,
                  check: Callable[[np.ndarray, str], None] | None = None,
                  log: Callable[[str], None] | None = None,
                  progress: Callable[[str, int, int], None] | None = None) -> list[Path]:
    """Predict ``files`` into ``outputs`` (:func:`predict_file`), in one process or spread over
    the processes of ``torchrun --nproc_per_node N`` (any number of nodes; the outputs must be
    on a file system they share).

    With at least as many files as processes, each process predicts whole files (file ``k``
    goes to rank ``k % N``). Otherwise all processes predict each file together: its planes
    and chunk rows are cut into N contiguous shares (boundaries on chunk rows, so no chunk
    is written by two processes), rank 0 creates the store before and writes the metadata
    after the others finished (and the TIFF, for a TIFF output); every pyramid level is
    shared the same way. Tiles are those of the whole image whatever the split, so the
    pixels equal a single process's. Returns the outputs this process wrote.
    """
    from . import distributed
    from .device import distributed_info

    info = distributed_info()
    if info.enabled:
        distributed.init(predictor.device, info)
    rank, world = info.rank, info.world_size
    together = world > 1 and len(files) < world
    mine = list(range(len(files))) if world == 1 or together else list(range(rank, len(files), world))
    team = _Team(rank, world, predictor.device)
    error = None
    try:
        for k in mine:
            f = files[k]
            on_progress = (lambda i, n, f=f: progress(f.name, i, n)) if progress is not None else None
            predict_file(predictor, f, outputs[k], how, axes=axes, series=series, check=check, log=log,
                         progress=on_progress, rank=rank if together else 0, world=world if together else 1)
    except Exception as exc:   # noqa: BLE001 - re-raised after the other processes know
        error = exc
    try:
        if world > 1 and not together:
            team.step(lambda: _raise(error))    # every process learns whether one failed
        else:
            _raise(error)
    finally:
        if info.enabled:
            distributed.shutdown()
    return [outputs[k] for k in mine]


def needs_streaming(files: list[Path], outputs: list[Path], predictor: Predictor,
                    how: PredictSettings | None = None) -> bool:
    """Whether :func:`predict_files` must do the work (rather than predicting each image in
    memory and writing it at once): OME-Zarr inputs or outputs, a ``--level``, several
    processes (torchrun), or a TIFF output above :data:`STREAM_TIFF_BYTES`."""
    from .device import distributed_info
    from .zarr_io import is_zarr_path

    if distributed_info().enabled or (how is not None and how.level):
        return True
    if any(is_zarr_path(p) for p in list(files) + list(outputs)):
        return True
    import tifffile

    for f in files:
        try:
            with tifffile.TiffFile(f) as tif:
                series = tif.series[0]
                size = math.prod(series.shape)
        except Exception:   # noqa: BLE001 - unreadable files get their message from read_image
            continue
        per_channel = size // max(1, predictor.in_channels)
        if 4 * per_channel * predictor.out_channels * predictor.scale ** 2 > STREAM_TIFF_BYTES:
            return True
    return False
