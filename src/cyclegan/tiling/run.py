"""Running a plan: read the image band by band, run every stage's bands, gather statistics, write the output.

Instance norm's statistics are each channel's mean and biased variance over the whole map, gathered over the
bands' output rows (each row once) and merged in float64 with Chan et al.'s pairwise formula; the next stage
normalises with them exactly as nn.InstanceNorm2d does (invstd = 1 / sqrt(var + eps)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as functional
from torch import nn

from ..io.images import array_to_tensor, tensor_to_array
from .geometry import scale
from .plan import INPUT, OUTPUT, Band, MapShape, Stage, keep_rows, last_uses


@dataclass(frozen=True)
class BandDone:
    """Reported after each band: stage `stage` of `stages` (1-based), band `band` of `bands`."""

    stage: int
    stages: int
    band: int
    bands: int


class ImageSource:
    """The rows of the padded input image, converted band by band: a uint8 H x W x C array (exactly as
    `io.images.array_to_tensor` converts a whole image) or a float C x H x W tensor; padded at the bottom and
    right as `translate.pad_to_multiple` pads (reflection, or replication)."""

    def __init__(self, image: np.ndarray | torch.Tensor, pad_h: int, pad_w: int, mode: str,
                 dtype: torch.dtype = torch.float32) -> None:
        self.image, self.pad_w, self.mode, self.dtype = image, pad_w, mode, dtype
        self.height = image.shape[1] if isinstance(image, torch.Tensor) else image.shape[0]
        self.padded_height = self.height + pad_h

    def rows(self, start: int, stop: int) -> torch.Tensor:
        index = np.arange(start, stop)
        beyond = index >= self.height
        index[beyond] = 2 * (self.height - 1) - index[beyond] if self.mode == "reflect" else self.height - 1
        if isinstance(self.image, torch.Tensor):
            band = self.image.index_select(1, torch.from_numpy(index).to(self.image.device)).to(self.dtype)
        else:
            band = array_to_tensor(self.image[index]).to(self.dtype)
        return functional.pad(band, (0, self.pad_w), mode=self.mode) if self.pad_w else band


class ImageSink:
    """The translated image, filled band by band and cropped to the unpadded size: a uint8 H x W x C array
    (quantised as `io.images.tensor_to_array` does) or a float32 C x H x W tensor."""

    def __init__(self, channels: int, height: int, width: int, as_array: bool,
                 dtype: torch.dtype = torch.float32) -> None:
        self.height, self.width = height, width
        self.result: np.ndarray | torch.Tensor = (np.empty((height, width, channels), np.uint8) if as_array
                                                  else torch.empty(channels, height, width, dtype=dtype))

    def write(self, row: int, values: torch.Tensor) -> None:
        rows = max(0, min(values.shape[1], self.height - row))
        values = values[:, :rows, :self.width].cpu()
        if isinstance(self.result, np.ndarray):
            self.result[row:row + rows] = tensor_to_array(values)
        else:
            self.result[:, row:row + rows] = values


class Statistics:
    """Per-channel count, mean and sum of squared deviations (M2) of a map, merged band by band in float64."""

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.mean = torch.zeros(channels, dtype=torch.float64)
        self.m2 = torch.zeros(channels, dtype=torch.float64)

    def add(self, band: torch.Tensor) -> None:
        count = band.shape[1] * band.shape[2]
        if count == 0:
            return
        # torch's var_mean is a Welford pass with a float64 accumulator: as exact as float64, without a copy
        var, mean = (value.to("cpu", torch.float64) for value in torch.var_mean(band, dim=(1, 2), correction=0))
        m2 = var * count
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * (count / total)
        self.m2 += m2 + delta.square() * (self.count * count / total)
        self.count = total

    def normaliser(self, norm: nn.InstanceNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha, beta) with norm(x) = x * alpha + beta per channel, as batch norm's CPU kernel applies it."""
        invstd = 1.0 / torch.sqrt(self.m2 / self.count + norm.eps)
        alpha, beta = invstd, -self.mean * invstd
        if norm.affine:
            weight, bias = norm.weight.detach().double().cpu(), norm.bias.detach().double().cpu()
            alpha, beta = alpha * weight, beta * weight + bias
        return alpha.view(-1, 1, 1), beta.view(-1, 1, 1)


class Executor:
    """Runs the stages on `device`, reading and writing maps through `store` (RamStore or FileStore)."""

    def __init__(self, stages: list[Stage], shapes: dict[str, MapShape], store, source: ImageSource,
                 sink: ImageSink, device: torch.device, on_band: Callable[[BandDone], None] | None) -> None:
        self.stages, self.shapes, self.store = stages, shapes, store
        self.source, self.sink, self.device, self.on_band = source, sink, device, on_band
        self.dtype = store.dtype
        self.statistics: dict[str, Statistics] = {}
        self.normalisers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.inference_mode()
    def run(self) -> None:
        uses = last_uses(self.stages)
        for index, stage in enumerate(self.stages):
            statistics = Statistics(self.shapes[stage.output].channels) if stage.stats else None
            for number, band in enumerate(stage.bands):
                self.run_band(stage, band, statistics)
                if self.on_band is not None:
                    self.on_band(BandDone(index + 1, len(self.stages), number + 1, len(stage.bands)))
            if statistics is not None:
                self.statistics[stage.output] = statistics
            for name in [name for name, last in uses.items() if last == index and name != INPUT]:
                self.store.free(name)

    def run_band(self, stage: Stage, band: Band, statistics: Statistics | None) -> None:
        value = self.prefix(stage, band.crop_start, band.crop_stop)
        value = stage.head(value[None])[0] if len(stage.head) else value
        if stage.keep is not None:
            start, stop = keep_rows(stage, band, self.shapes[stage.terms[0].map].height)
            self.store.write(stage.keep, start, value[:, start - band.crop_start:stop - band.crop_start])
        output = stage.tail(value[None])[0] if len(stage.tail) else value
        offset = int(band.crop_start * scale(stage.modules))  # the crop's output row 0 (geometry.py)
        core = output[:, band.start - offset:band.stop - offset]
        if core.shape[1] != band.stop - band.start:
            raise RuntimeError(f"stage {stage.output}: band {band} gave {core.shape[1]} rows")  # a planning bug
        if statistics is not None:
            statistics.add(core)
        if stage.output == OUTPUT:
            self.sink.write(band.start, core)
        else:
            self.store.write(stage.output, band.start, core)

    def prefix(self, stage: Stage, start: int, stop: int) -> torch.Tensor:
        """The stage's input rows [start, stop): its terms, each normalised if it has a norm, summed; a tensor of
        its own (the head may change it in place; a RamStore read is a view of the stored map)."""
        total, owned = None, False
        for slot, term in enumerate(stage.terms):
            if term.map == INPUT:
                value, fresh = self.source.rows(start, stop).to(self.device), True
            else:
                value = self.store.read(term.map, start, stop, slot).to(self.device)
                fresh = self.store.reads_copies
            if term.norm is not None:
                alpha, beta = self.normaliser(term.map, term.norm)
                value, fresh = torch.addcmul(beta, value, alpha), True
            if total is None:
                total, owned = value, fresh
            elif owned:
                total.add_(value)
            else:
                total, owned = total + value, True
        assert total is not None
        return total if owned else total.clone()

    def normaliser(self, name: str, norm: nn.InstanceNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in self.normalisers:
            alpha, beta = self.statistics[name].normaliser(norm)
            self.normalisers[name] = (alpha.to(self.device, self.dtype), beta.to(self.device, self.dtype))
        return self.normalisers[name]


