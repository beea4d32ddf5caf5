"""Where the stages' maps live between stages: in RAM, or in raw float32 scratch files read and written band by band.

A map is C x H x W, channels first, so one band (rows [lo, hi) of every channel) is one contiguous range per
channel of its file: C positioned reads or writes, straight into or out of a tensor's memory. Nothing is
memory-mapped (mapped pages would count in the process's resident memory); the files go through the page cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..translate import TranslationError
from .plan import MapShape

logger = logging.getLogger(__name__)
SCRATCH_MARGIN = 64 * 1024**2  # beyond the planned peak, for the file system's own blocks


class RamStore:
    """Maps as CPU tensors."""

    reads_copies = False  # `read` gives views of the stored maps

    def __init__(self, shapes: dict[str, MapShape], dtype: torch.dtype = torch.float32) -> None:
        self.shapes, self.dtype = shapes, dtype
        self.maps: dict[str, torch.Tensor] = {}

    def write(self, name: str, row: int, values: torch.Tensor) -> None:
        if name not in self.maps:
            shape = self.shapes[name]
            self.maps[name] = torch.empty(shape.channels, shape.height, shape.width, dtype=self.dtype)
        self.maps[name][:, row:row + values.shape[1]] = values

    def read(self, name: str, start: int, stop: int, slot: int) -> torch.Tensor:
        """Rows [start, stop) of every channel: a view, not to be changed in place."""
        return self.maps[name][:, start:stop]

    def free(self, name: str) -> None:
        self.maps.pop(name, None)

    def close(self) -> None:
        self.maps.clear()


class FileStore:
    """Maps as raw files `NAME.f32` (float32, or the generator's dtype) in a fresh folder under `scratch_dir`;
    `close` removes the folder."""

    reads_copies = True  # `read` fills a buffer of the store's, which the caller may change until the next read

    def __init__(self, shapes: dict[str, MapShape], scratch_dir: str | Path | None, peak_bytes: int,
                 dtype: torch.dtype = torch.float32) -> None:
        self.shapes, self.dtype = shapes, dtype
        self.itemsize = torch.empty((), dtype=dtype).element_size()
        parent = Path(scratch_dir) if scratch_dir is not None else Path(tempfile.gettempdir())
        check_free_space(parent, peak_bytes)
        self.folder = Path(tempfile.mkdtemp(prefix="cyclegan-tiles-", dir=parent))
        self.files: dict[str, int] = {}
        self.buffers: dict[int, torch.Tensor] = {}  # reused read buffers, one per summed input
        logger.debug("tiling scratch folder %s (peak %d bytes)", self.folder, peak_bytes)

    def _file(self, name: str) -> int:
        if name not in self.files:
            path = self.folder / f"{name}.f32"
            self.files[name] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.ftruncate(self.files[name], self.shapes[name].elements * self.itemsize)
        return self.files[name]

    def write(self, name: str, row: int, values: torch.Tensor) -> None:
        shape, fd = self.shapes[name], self._file(name)
        array = values.detach().to("cpu", self.dtype).numpy()
        for channel in range(shape.channels):
            data = memoryview(np.ascontiguousarray(array[channel])).cast("B")
            offset = self.itemsize * (channel * shape.height + row) * shape.width
            try:
                while data:
                    written = os.pwrite(fd, data, offset)
                    data, offset = data[written:], offset + written
            except OSError as error:
                raise TranslationError(f"cannot write tiled translation's scratch file in {self.folder} "
                                       f"({error}); free some space there or choose another folder "
                                       "(--scratch-dir, scratch_dir=)") from None

    def read(self, name: str, start: int, stop: int, slot: int) -> torch.Tensor:
        """Rows [start, stop) of every channel, read into the reused buffer `slot`."""
        shape, fd = self.shapes[name], self.files[name]
        numel = shape.channels * (stop - start) * shape.width
        if slot not in self.buffers or self.buffers[slot].numel() < numel:
            self.buffers[slot] = torch.empty(numel, dtype=self.dtype)
        band = self.buffers[slot][:numel].view(shape.channels, stop - start, shape.width)
        array = band.numpy()
        for channel in range(shape.channels):
            target = memoryview(array[channel]).cast("B")
            offset = self.itemsize * (channel * shape.height + start) * shape.width
            while target:
                count = os.preadv(fd, [target], offset)
                if count == 0:
                    raise TranslationError(f"scratch file {self.folder / name}.f32 ended early; was it changed?")
                target, offset = target[count:], offset + count
        return band

    def free(self, name: str) -> None:
        fd = self.files.pop(name, None)
        if fd is not None:
            os.close(fd)
            (self.folder / f"{name}.f32").unlink(missing_ok=True)

    def close(self) -> None:
        for name in list(self.files):
            self.free(name)
        self.buffers.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def check_free_space(folder: Path, needed: int) -> None:
    """Refuse to start when `folder` lacks the scratch space the plan needs, saying how much and what to do."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError as error:
        raise TranslationError(f"scratch folder {folder} cannot be used ({error}); choose another one "
                               "(--scratch-dir, scratch_dir=)") from None
    if free < needed + SCRATCH_MARGIN:
        raise TranslationError(
            f"tiled translation needs {_gib(needed + SCRATCH_MARGIN)} of scratch space in {folder} but only "
            f"{_gib(free)} is free; free some space, choose a folder on a larger disk (--scratch-dir, "
            "scratch_dir=), or allow more memory (--max-memory) so that fewer maps go to disk")


def _gib(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB ({size} bytes)"
