"""A generator split into stages at its instance norms, and each stage's bands for one image size.

Instance norm needs each channel's mean and variance over the whole map, so a ResNet generator is run stage by
stage: a stage reads stored maps (normalised with their global statistics where an instance norm stands between),
sums them (the residual add), runs the local layers up to the next instance norm band by band and stores that
map, pre-norm, gathering its statistics as it goes. For ResNet-9 with instance norm that is 24 stages:

    c1 = conv7(pad(input))          c2 = conv_s2(relu(IN(c1)))      c3 = conv_s2(relu(IN(c2)))
    block b (x_0 = relu(IN(c3))):   a_b = conv3(pad(x_{b-1}))       b_b = conv3(pad(relu(IN(a_b))))
                                    x_b = x_{b-1} + IN(b_b)         (x_b is kept: the next block's skip)
    u1 = convT(x_9)                 u2 = convT(relu(IN(u1)))        output = tanh(conv7(pad(relu(IN(u2)))))

Batch norm (eval) and no norm leave the whole network local: one stage, plain halo tiling (the U-Net too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from torch import nn

from ..nets.generators import ResidualBlock
from ..translate import TranslationError
from .geometry import (
    alignment,
    has_global_norm,
    is_global_norm,
    needed_rows,
    out_channels,
    out_size,
    peak_elements,
    scale,
)

INPUT, OUTPUT = "input", "output"
FLOAT_BYTES = 4
# Bytes a band's computation takes beyond the feature maps `peak_elements` counts (convolution workspaces, the
# allocator's slack): calibrated against measured peaks, see benchmarks/tiled_translation.py.
WORKSPACE_FACTOR = 2.5


@dataclass(frozen=True)
class Term:
    """One summand of a stage's input: a stored map, normalised with its global statistics by `norm` if set."""

    map: str
    norm: nn.InstanceNorm2d | None = None


@dataclass(frozen=True)
class Band:
    """Output rows [start, stop) of a stage, computed from its input rows [crop_start, crop_stop)."""

    start: int
    stop: int
    crop_start: int
    crop_stop: int


@dataclass
class Stage:
    """sum(terms) -> head (pointwise layers) -> [stored as `keep`] -> tail (local layers) -> `output`."""

    terms: tuple[Term, ...]
    head: nn.Sequential
    tail: nn.Sequential
    keep: str | None
    output: str
    stats: bool  # an instance norm reads `output`: gather its per-channel statistics
    bands: list[Band] = field(default_factory=list)

    @property
    def modules(self) -> nn.Sequential:
        return nn.Sequential(*self.head, *self.tail)


@dataclass(frozen=True)
class MapShape:
    channels: int
    height: int
    width: int

    @property
    def elements(self) -> int:
        return self.channels * self.height * self.width

    @property
    def bytes(self) -> int:
        return FLOAT_BYTES * self.elements


def split_stages(generator: nn.Module) -> list[Stage]:
    """The generator's stages (size-independent); a TranslationError if it cannot be tiled exactly."""
    planner = _Splitter()
    planner.walk(_body(generator))
    planner.close(OUTPUT, stats=False)
    return planner.stages


def _body(generator: nn.Module) -> nn.Sequential:
    body = getattr(generator, "model", generator)
    return body if isinstance(body, nn.Sequential) else nn.Sequential(body)


class _Splitter:
    def __init__(self) -> None:
        self.stages: list[Stage] = []
        self.terms: tuple[Term, ...] = (Term(INPUT),)
        self.modules: list[nn.Module] = []
        self.keep: str | None = None
        self.keep_at = 0
        self.names = 0

    def walk(self, modules: nn.Sequential) -> None:
        for module in modules:
            if is_global_norm(module):
                self.terms = (Term(self.close(self.name("c"), stats=True), module),)
            elif isinstance(module, ResidualBlock) and has_global_norm(module):
                skip = self.materialise()
                self.walk(module.conv_block)
                if self.modules:
                    self.terms = (Term(self.close(self.name("c"), stats=False)),)
                self.terms = (*self.terms, Term(skip))
            elif has_global_norm(module):
                raise TranslationError(
                    f"exact tiling cannot translate with this generator: its {type(module).__name__} layers "
                    "normalise over maps that depend on the whole image (a U-Net's innermost layers see all of "
                    "it); translate the whole image (no max_memory / tile, --max-memory / --tile), or a smaller "
                    "one (--resize)")
            else:
                self.modules.append(module)

    def materialise(self) -> str:
        """Keep the value reached so far as a map (a residual block's skip): inside the current stage if only
        pointwise layers ran since its stored inputs, else after closing it."""
        pointwise = all(needed_rows(m, 0, 1) == (0, 1) and scale(m) == 1 for m in self.modules)
        if self.keep is not None or not pointwise:
            self.terms = (Term(self.close(self.name("c"), stats=False)),)
        self.keep, self.keep_at = self.name("x"), len(self.modules)
        return self.keep

    def close(self, output: str, stats: bool) -> str:
        head, tail = self.modules[:self.keep_at], self.modules[self.keep_at:]
        self.stages.append(Stage(self.terms, nn.Sequential(*head), nn.Sequential(*tail), self.keep, output, stats))
        self.modules, self.keep, self.keep_at = [], None, 0
        return output

    def name(self, prefix: str) -> str:
        self.names += 1
        return f"{prefix}{self.names}"


def map_shapes(stages: list[Stage], channels: int, height: int, width: int) -> dict[str, MapShape]:
    """Every map's shape for an input of that size (already padded to the generator's multiple)."""
    shapes = {INPUT: MapShape(channels, height, width)}
    for stage in stages:
        source = shapes[stage.terms[0].map]
        if any(shapes[term.map] != source for term in stage.terms):
            raise TranslationError(f"stage {stage.output}: its summed maps differ in shape")  # not our networks
        if stage.keep:
            shapes[stage.keep] = source
        modules = stage.modules
        shapes[stage.output] = MapShape(out_channels(modules, source.channels), out_size(modules, source.height),
                                        out_size(modules, source.width, 1))
        step = alignment(modules)
        if source.height % step:
            raise TranslationError(f"the padded image's {source.height} rows at stage {stage.output} are not a "
                                   f"multiple of {step}, which its strided layers need")
    return shapes


def band_unit(stage: Stage) -> int:
    """Band heights are multiples of this, so that a band's kept rows (its output rows / scale) are whole."""
    return scale(stage.modules).numerator


def crop(stage: Stage, start: int, stop: int, height: int) -> Band:
    """The input rows that output rows [start, stop) need, clamped to the map (its own padding does the border)
    and widened to the stage's alignment."""
    lo, hi = needed_rows(stage.modules, start, stop)
    keep = _keep_rows(stage, start, stop)
    lo, hi = max(0, min(lo, keep[0])), min(height, max(hi, keep[1]))
    step = alignment(stage.modules)
    lo, hi = lo - lo % step, min(height, hi + (-hi) % step)
    return Band(start, stop, lo, hi)


def _keep_rows(stage: Stage, start: int, stop: int) -> tuple[int, int]:
    ratio = scale(stage.modules)
    return int(start / ratio), int(stop / ratio)


def keep_rows(stage: Stage, band: Band, input_height: int) -> tuple[int, int]:
    """The rows of the stage's input that a band stores as its `keep` map (the bands' rows partition it)."""
    start, stop = _keep_rows(stage, band.start, band.stop)
    return start, min(stop, input_height)


def plan_bands(stage: Stage, shapes: dict[str, MapShape], rows: int) -> list[Band]:
    """Bands of at most `rows` output rows (rounded down to the band unit, at least one unit)."""
    source, target = shapes[stage.terms[0].map], shapes[stage.output]
    unit = band_unit(stage)
    rows = max(unit, rows - rows % unit)
    return [crop(stage, start, min(start + rows, target.height), source.height)
            for start in range(0, target.height, rows)]


def band_bytes(stage: Stage, shapes: dict[str, MapShape], rows: int) -> int:
    """The memory one band of `rows` output rows takes: the summed inputs' crops and the layers' maps."""
    source, target = shapes[stage.terms[0].map], shapes[stage.output]
    band = crop(stage, target.height // 2, min(target.height, target.height // 2 + rows), source.height)
    crop_rows = band.crop_stop - band.crop_start
    # the terms' read buffers and their sum (held by the call while the layers run), then the layers' own maps
    inputs = (len(stage.terms) + 1) * source.channels * crop_rows * source.width
    layers = peak_elements(stage.modules, source.channels, crop_rows, source.width)
    return int(FLOAT_BYTES * (inputs + layers) * WORKSPACE_FACTOR)


def rows_within(stage: Stage, shapes: dict[str, MapShape], budget: int) -> int:
    """The most output rows a band may have so that it takes at most `budget` bytes (one unit at least)."""
    height, unit = shapes[stage.output].height, band_unit(stage)
    lo, hi = 1, max(1, height // unit)
    if band_bytes(stage, shapes, hi * unit) <= budget:
        return hi * unit
    while lo < hi:  # the largest multiple of the unit that fits
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if band_bytes(stage, shapes, mid * unit) <= budget else (lo, mid - 1)
    return lo * unit


def tile_rows(stage: Stage, shapes: dict[str, MapShape], tile: int) -> int:
    """`tile` output-image rows in the stage's own resolution (a quarter of them at the ResNet's bottleneck)."""
    ratio = Fraction(shapes[stage.output].height, shapes[OUTPUT].height)
    return max(1, int(tile * ratio))


def last_uses(stages: list[Stage]) -> dict[str, int]:
    """For each stored map, the index of the last stage that reads it."""
    uses: dict[str, int] = {}
    for index, stage in enumerate(stages):
        for term in stage.terms:
            uses[term.map] = index
    return uses


def peak_stored_bytes(stages: list[Stage], shapes: dict[str, MapShape]) -> int:
    """The most bytes of stored maps alive at once (during some stage: its inputs, its keep and its output)."""
    uses = last_uses(stages)
    alive: set[str] = set()
    peak = 0
    for index, stage in enumerate(stages):
        alive |= {name for name in (stage.keep, stage.output) if name and name != OUTPUT}
        peak = max(peak, sum(shapes[name].bytes for name in alive))
        alive -= {name for name in alive if uses.get(name, -1) <= index}
    return peak
