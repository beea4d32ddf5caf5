"""Exact tiled translation: images of any size in bounded memory, equal to whole-image translation.

    result = translate_tiled(generator, array, max_memory=2 * 1024**3)   # uint8 H x W x C in and out

The generator runs stage by stage (`plan.py`: split at each instance norm, whose statistics are gathered over the
whole map), each stage in horizontal bands of the full width with the halo its layers need (`geometry.py`), the maps
between stages kept in RAM or in scratch files (`store.py`), and `run.py` runs the bands. Only the order of float
summation differs from whole-image translation (convolutions on crops, statistics gathered band by band), so the
results agree to float32 rounding; benchmarks/tiled_translation.py measures it, and memory and time.
`Translator.translate_tiled` and `max_memory` / `tile` of the Translator's methods are the usual way in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..progress import progress_bar
from ..translate import TranslationError, padding
from .geometry import peak_elements
from .plan import FLOAT_BYTES, MapShape, map_shapes, peak_stored_bytes, plan_bands, rows_within, split_stages, tile_rows
from .run import BandDone, Executor, ImageSink, ImageSource
from .store import FileStore, RamStore

__all__ = ["BandDone", "default_max_memory", "estimate_whole_image_bytes", "translate_tiled", "wants_tiling"]

logger = logging.getLogger(__name__)
# Whole-image translation's peak memory over the feature maps `geometry.peak_elements` counts (NNPACK's and
# oneDNN's workspaces, the allocator): calibrated against measured peaks, see benchmarks/tiled_translation.py.
WHOLE_IMAGE_FACTOR = 2.4
STORAGES = ("auto", "ram", "file")


def estimate_whole_image_bytes(generator: nn.Module, channels: int, height: int, width: int) -> int:
    """The memory whole-image translation of one image of that size takes beyond the loaded model: its feature
    maps alive at once (`geometry.peak_elements`, after padding to the generator's multiple) times a measured
    factor for the convolutions' workspaces."""
    pad_h, pad_w, _ = padding(height, width, generator.size_multiple, generator.min_size)
    body = getattr(generator, "model", generator)
    return int(FLOAT_BYTES * peak_elements(body, channels, height + pad_h, width + pad_w) * WHOLE_IMAGE_FACTOR)


def wants_tiling(generator: nn.Module, channels: int, height: int, width: int, max_memory: int | None,
                 tile: int | None) -> bool:
    """Tile when a band height is given, or when whole-image translation is estimated to exceed `max_memory`."""
    if tile is not None:
        return True
    return max_memory is not None and estimate_whole_image_bytes(generator, channels, height, width) > max_memory


def default_max_memory() -> int | None:
    """Half of this machine's physical memory (the CLI's default budget), or None where it cannot be told."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return None


def translate_tiled(generator: nn.Module, image: np.ndarray | torch.Tensor, *, max_memory: int | None = None,
                    tile: int | None = None, scratch_dir: str | Path | None = None, storage: str = "auto",
                    show_progress: bool = False, description: str = "translating in tiles",
                    on_band: Callable[[BandDone], None] | None = None) -> np.ndarray | torch.Tensor:
    """Translate one image with `generator` (in eval mode) band by band; equal to whole-image translation.

    image: a uint8 H x W x C (or H x W) array, giving a uint8 H x W x C array (H x W for one channel, as PIL's
    "L" arrays are), or a float C x H x W tensor in [-1, 1], giving a float32 tensor; any size (padded as
    `Translator.translate_tensor` pads).
    max_memory: bytes for the maps, bands and output (None: no limit; the interpreter and model are extra).
    tile: band height in output rows (each stage's scaled to its resolution); default: as large as fits.
    scratch_dir: where scratch files go when the maps do not fit (default: the system's temporary folder); the
    folder made there is removed at the end, also on errors and interrupts. storage: "auto" (RAM when the maps fit
    in half of max_memory), "ram" or "file". on_band: called after each band (a BandDone); show_progress: a bar.
    """
    if storage not in STORAGES:
        raise TranslationError(f"storage={storage!r}; use one of {', '.join(STORAGES)}")
    for name, value in (("max_memory", max_memory), ("tile", tile)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise TranslationError(f"{name}={value!r}; give a whole number of at least 1 (or None)")
    as_array = isinstance(image, np.ndarray)
    if as_array and (image.dtype != np.uint8 or image.ndim not in (2, 3)):
        raise TranslationError(f"expected a uint8 H x W x C array, got {image.dtype} of shape {image.shape}")
    array_2d = as_array and image.ndim == 2
    image = image[:, :, None] if array_2d else image
    channels, height, width = (image.shape[2], *image.shape[:2]) if as_array else tuple(image.shape)
    pad_h, pad_w, mode = padding(height, width, getattr(generator, "size_multiple", 1),
                                 getattr(generator, "min_size", 1))
    stages = split_stages(generator)
    shapes = map_shapes(stages, channels, height + pad_h, width + pad_w)
    dtype = next(generator.parameters()).dtype  # float32; float64 where tests want rounding out of the way
    sink = ImageSink(shapes["output"].channels, height, width, as_array, dtype)
    use_files, band_budget = _storage(stages, shapes, max_memory, storage, sink)
    for stage in stages:
        rows = (tile_rows(stage, shapes, tile) if tile else rows_within(stage, shapes, band_budget)
                if band_budget is not None else shapes[stage.output].height)
        stage.bands = plan_bands(stage, shapes, rows)
    peak = peak_stored_bytes(stages, shapes)
    store = FileStore(shapes, scratch_dir, peak, dtype) if use_files else RamStore(shapes, dtype)
    bar = progress_bar(total=sum(len(stage.bands) for stage in stages), description=description, unit="band",
                       enabled=show_progress)

    def report(done: BandDone) -> None:
        bar.set_postfix_str(f"stage {done.stage}/{done.stages}, band {done.band}/{done.bands}", refresh=False)
        bar.update(1)
        if on_band is not None:
            on_band(done)

    device = next(generator.parameters()).device
    try:
        Executor(stages, shapes, store, ImageSource(image, pad_h, pad_w, mode, dtype), sink, device, report).run()
    finally:
        store.close()
        bar.close()
    result = sink.result
    return result[:, :, 0] if as_array and result.shape[2] == 1 else result


def _storage(stages: list, shapes: dict[str, MapShape], max_memory: int | None, storage: str, sink: ImageSink
             ) -> tuple[bool, int | None]:
    """Whether the maps go to files, and the bytes left for a band (None: no limit)."""
    peak = peak_stored_bytes(stages, shapes)
    if max_memory is None:
        return storage == "file", None
    budget = max_memory - (sink.result.nbytes if isinstance(sink.result, np.ndarray)
                           else sink.result.numel() * sink.result.element_size())
    use_files = storage == "file" or (storage == "auto" and peak > budget // 2)
    logger.info("tiling: maps need %.2f GiB at once, kept in %s", peak / 1024**3, "files" if use_files else "RAM")
    return use_files, max(1, budget if use_files else budget - peak)
