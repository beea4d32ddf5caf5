"""Training-loss curves drawn with Pillow from the JSON-lines training log.

Each loss is drawn twice: its raw per-iteration values, faint, and a moving average in full colour, because
GAN losses are noisy enough that the trend is invisible in the raw values alone. Generator terms and
discriminator terms (names starting with "disc") get separate panels on a shared step axis: their scales
differ.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cyclegan.io.atomic import atomic_path
from cyclegan.report.text import Font, is_scalable, load_font, text_width, truncate

logger = logging.getLogger(__name__)

WIDTH, HEIGHT = 900, 500
_SUPERSAMPLE = 2  # draw at twice the size, then shrink: Pillow's own lines are not anti-aliased
_SMOOTHING_FRACTION = 0.025  # moving-average window, as a share of a series' points
_MARKER_LIMIT = 30  # series this short get a dot per point, so even a single record is visible
# Strong hues first; the discriminator panel continues the sequence, so no two curves share a colour.
_PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (23, 190, 207), (140, 86, 75), (227, 119, 194), (188, 189, 34), (127, 127, 127),
]  # fmt: skip
_BACKGROUND = (255, 255, 255)
_GRID = (234, 234, 234)
_AXIS = (175, 175, 175)
_TEXT = (40, 40, 40)
_MUTED = (115, 115, 115)
# Layout in output pixels: title band on top, tick labels left and below, legend column on the right.
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 172, 46, 40
_PANEL_LABEL, _PANEL_GAP = 18, 16


def read_log(path: str | Path) -> list[dict]:
    """Records of a JSON-lines training log, one dict per line.

    A truncated last line (a run killed mid-write) is skipped with a warning; a bad line anywhere else is an
    error, since it means the log is corrupt rather than merely unfinished.
    """
    path = Path(path)
    # Undecodable bytes can only come from a cut multi-byte character; they make that line fail below.
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    last = max((number for number, text in enumerate(lines) if text.strip()), default=-1)
    records: list[dict] = []
    for number, text in enumerate(lines):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            if number == last:
                logger.warning("skipping truncated last line %d of %s", number + 1, path)
                break
            raise ValueError(f"{path}:{number + 1}: invalid JSON ({error.msg})") from error
        if not isinstance(record, dict):
            if number == last:  # a cut line can still parse, e.g. as a bare number
                logger.warning("skipping truncated last line %d of %s", number + 1, path)
                break
            raise ValueError(f"{path}:{number + 1}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


@dataclass
class _Series:
    name: str
    steps: np.ndarray
    values: np.ndarray
    smoothed: np.ndarray
    colour: tuple[int, int, int]


@dataclass
class _Axes:
    """Where a panel sits on the canvas (in canvas pixels) and the data range it shows."""

    left: float
    top: float
    right: float
    bottom: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]

    def x(self, steps: np.ndarray) -> np.ndarray:
        low, high = self.x_range
        return self.left + (steps - low) / (high - low) * (self.right - self.left)

    def y(self, values: np.ndarray) -> np.ndarray:
        low, high = self.y_range
        # Outliers beyond the range are pinned to the panel's edge rather than drawn outside it.
        clipped = np.clip(values, low, high)
        return self.bottom - (clipped - low) / (high - low) * (self.bottom - self.top)


def plot_losses(records: list[dict], path: str | Path, title: str = "Training losses") -> None:
    """Draw every loss in the records' "losses" against their global "step" into a PNG of WIDTH x HEIGHT."""
    series = _collect_series(records)
    scale = _SUPERSAMPLE if is_scalable(load_font(12)) else 1  # a bitmap font would shrink unreadably
    canvas = Image.new("RGB", (WIDTH * scale, HEIGHT * scale), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    title_font = load_font(16 * scale)
    _draw_text(draw, (_LEFT * scale, 14 * scale), truncate(title, title_font, 520 * scale), title_font, _TEXT)
    if not series:
        centre = (WIDTH * scale // 2, HEIGHT * scale // 2)
        _draw_text(draw, centre, "no data yet", load_font(22 * scale), _MUTED, anchor="mm")
    else:
        summary_xy = ((WIDTH - 12) * scale, 18 * scale)
        _draw_text(draw, summary_xy, _run_summary(records), load_font(11 * scale), _MUTED, anchor="rt")
        _draw_panels(draw, series, scale)
    if scale != 1:
        canvas = canvas.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
    with atomic_path(Path(path)) as temporary:
        canvas.save(temporary, format="PNG")


def _collect_series(records: list[dict]) -> list[_Series]:
    """Finite (step, value) points per loss, in order of first appearance; NaN, inf, non-numbers dropped."""
    points: dict[str, tuple[list[float], list[float]]] = {}
    for index, record in enumerate(records):
        step = record.get("step", index)
        step = step if _is_finite_number(step) else index
        losses = record.get("losses")
        if not isinstance(losses, dict):
            continue
        for name, value in losses.items():
            if _is_finite_number(value):
                steps, values = points.setdefault(str(name), ([], []))
                steps.append(float(step))
                values.append(float(value))
    series = []
    for number, (name, (steps, values)) in enumerate(points.items()):
        order = np.argsort(np.asarray(steps), kind="stable")  # a resumed run may log steps out of order
        step_array, value_array = np.asarray(steps)[order], np.asarray(values)[order]
        window = max(1, round(len(value_array) * _SMOOTHING_FRACTION))
        smoothed = _moving_average(value_array, window)
        series.append(_Series(name, step_array, value_array, smoothed, _PALETTE[number % len(_PALETTE)]))
    return series


def _is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average; the window shrinks near the ends instead of padding with made-up values."""
    if window <= 1:
        return values.copy()
    half = window // 2
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(len(values))
    low = np.clip(index - half, 0, len(values))
    high = np.clip(index + half + 1, 0, len(values))
    return (cumulative[high] - cumulative[low]) / (high - low)


def _run_summary(records: list[dict]) -> str:
    last = records[-1]
    parts = [f"{len(records):,} record{'s' if len(records) != 1 else ''}"]
    if _is_finite_number(last.get("epoch")):
        parts.append(f"epoch {last['epoch']}")
    if _is_finite_number(last.get("step")):
        parts.append(f"step {int(last['step']):,}")
    return ", ".join(parts)


def _draw_panels(draw: ImageDraw.ImageDraw, series: list[_Series], scale: int) -> None:
    generator = [item for item in series if not item.name.startswith("disc")]
    discriminator = [item for item in series if item.name.startswith("disc")]
    groups = [group for group in (("Generator", generator), ("Discriminator", discriminator)) if group[1]]
    if len(groups) == 1:
        groups = [("Losses", groups[0][1])]
    all_steps = np.concatenate([item.steps for item in series])
    x_range = (float(all_steps.min()), float(all_steps.max()))
    if x_range[0] == x_range[1]:  # one step: centre it
        x_range = (x_range[0] - 1, x_range[0] + 1)

    # The generator panel gets more height: it usually holds three times as many curves.
    available = HEIGHT - _TOP - _BOTTOM - len(groups) * _PANEL_LABEL - (len(groups) - 1) * _PANEL_GAP
    generator_height = round(available * 0.6)
    heights = [available] if len(groups) == 1 else [generator_height, available - generator_height]
    top = _TOP
    for number, ((label, items), height) in enumerate(zip(groups, heights, strict=True)):
        top += _PANEL_LABEL
        low, high, y_ticks = _nice_range(items)
        box = (_LEFT * scale, top * scale, (WIDTH - _RIGHT) * scale, (top + height) * scale)
        axes = _Axes(*box, x_range=x_range, y_range=(low, high))
        is_last = number == len(groups) - 1
        _draw_panel(draw, axes, label, items, y_ticks, scale, x_labels=is_last)
        top += height + _PANEL_GAP


def _draw_panel(
    draw: ImageDraw.ImageDraw,
    axes: _Axes,
    label: str,
    items: list[_Series],
    y_ticks: list[float],
    scale: int,
    x_labels: bool,
) -> None:
    small = load_font(11 * scale)
    _draw_text(draw, (axes.left, axes.top - 4 * scale), label, load_font(12 * scale), _TEXT, anchor="lb")

    x_step = _nice_step(axes.x_range[1] - axes.x_range[0], 6, integer=True)
    first, last = math.ceil(axes.x_range[0] / x_step), math.floor(axes.x_range[1] / x_step)
    x_ticks = np.arange(first, last + 1) * x_step
    x_ticks = x_ticks[x_ticks >= min(0.0, axes.x_range[0] + 1)]  # no negative steps around a lone step 0
    for tick in x_ticks:
        x = float(axes.x(np.asarray(tick)))
        draw.line([(x, axes.top), (x, axes.bottom)], fill=_GRID, width=scale)
        if x_labels:
            label_xy = (x, axes.bottom + 5 * scale)
            _draw_text(draw, label_xy, _format_step(tick, x_step), small, _MUTED, anchor="mt")
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    for tick in y_ticks:
        y = float(axes.y(np.asarray(tick)))
        draw.line([(axes.left, y), (axes.right, y)], fill=_GRID, width=scale)
        _draw_text(draw, (axes.left - 6 * scale, y), _format_value(tick, y_step), small, _MUTED, anchor="rm")
    if x_labels:
        axis_label_xy = ((axes.left + axes.right) / 2, axes.bottom + 21 * scale)
        _draw_text(draw, axis_label_xy, "step", small, _MUTED, anchor="mt")

    columns = int(axes.right - axes.left)  # one bucket per canvas pixel column is all that can be seen
    for item in items:
        faint = tuple(round(channel + (255 - channel) * 0.68) for channel in item.colour)
        xs, ys = _envelope(axes.x(item.steps), axes.y(item.values), columns)
        if len(xs) > 1:
            draw.line(list(zip(xs, ys, strict=True)), fill=faint, width=scale)
    for item in items:
        xs, ys = _bucket_means(axes.x(item.steps), axes.y(item.smoothed), columns)
        if len(xs) > 1:
            points = list(zip(xs, ys, strict=True))
            draw.line(points, fill=item.colour, width=round(1.6 * scale), joint="curve")
        if len(item.steps) <= _MARKER_LIMIT:
            radius = 2.5 * scale
            for x, y in zip(xs, ys, strict=True):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=item.colour)
    draw.rectangle([axes.left, axes.top, axes.right, axes.bottom], outline=_AXIS, width=scale)
    _draw_legend(draw, axes, items, scale)


def _draw_legend(draw: ImageDraw.ImageDraw, axes: _Axes, items: list[_Series], scale: int) -> None:
    """Swatch, name and last smoothed value of each curve, in a column right of the panel."""
    font = load_font(11 * scale)
    left, right = axes.right + 14 * scale, (WIDTH - 12) * scale
    row = 17 * scale
    for number, item in enumerate(items):
        y = axes.top + 8 * scale + number * row
        draw.line([(left, y), (left + 16 * scale, y)], fill=item.colour, width=3 * scale)
        last = float(item.smoothed[-1])
        value = f"{last:.3f}" if abs(last) < 10 else f"{last:.4g}"  # aligned decimals for typical losses
        name_width = int(right - left - 24 * scale - text_width(font, value) - 6 * scale)
        name = truncate(item.name, font, name_width)
        _draw_text(draw, (left + 22 * scale, y), name, font, _TEXT, anchor="lm")
        _draw_text(draw, (right, y), value, font, _MUTED, anchor="rm")


def _envelope(xs: np.ndarray, ys: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Downsample to the minimum and maximum per pixel column, which keeps every spike visible."""
    if len(xs) <= 2 * columns:
        return xs, ys
    buckets = np.floor(xs).astype(np.int64)
    starts = np.flatnonzero(np.diff(buckets, prepend=buckets[0] - 1))
    lows, highs = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    return np.repeat(buckets[starts].astype(float), 2), np.column_stack([lows, highs]).ravel()


def _bucket_means(xs: np.ndarray, ys: np.ndarray, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Downsample a smooth curve to its mean per pixel column."""
    if len(xs) <= 2 * columns:
        return xs, ys
    buckets = np.floor(xs).astype(np.int64)
    starts = np.flatnonzero(np.diff(buckets, prepend=buckets[0] - 1))
    counts = np.diff(np.append(starts, len(xs)))
    return np.add.reduceat(xs, starts) / counts, np.add.reduceat(ys, starts) / counts


def _nice_step(span: float, target: int, integer: bool = False) -> float:
    """A round tick spacing (1, 2, 2.5 or 5 times a power of ten) giving about `target` ticks over `span`."""
    raw = span / target if span > 0 else 1.0
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(multiple * magnitude for multiple in (1, 2, 2.5, 5, 10) if multiple * magnitude >= raw)
    return max(1.0, step) if integer else step


def _nice_range(items: list[_Series]) -> tuple[float, float, list[float]]:
    """Y limits rounded out to ticks; the top ignores the rarest spikes so they do not flatten the curves."""
    raw = np.concatenate([item.values for item in items])
    smoothed = np.concatenate([item.smoothed for item in items])
    low = float(raw.min())
    high = max(float(np.percentile(raw, 99.5)), float(smoothed.max()))
    span = high - low
    padding = 0.03 * span if span > 0 else max(abs(high) * 0.1, 1e-3)
    low = max(0.0, low - padding) if low >= 0 else low - padding  # losses >= 0 keep a floor at zero
    high += padding
    step = _nice_step(high - low, 4)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step
    ticks = [round(low + number * step, 12) for number in range(round((high - low) / step) + 1)]
    return low, high, ticks


def _format_step(value: float, step: float) -> str:
    if step >= 1000 and value % 1000 == 0 and value != 0:
        return f"{value / 1000:g}k"
    return f"{int(value):,}"


def _format_value(value: float, step: float) -> str:
    # As many decimals as the tick spacing needs: 0.25 gives two, 0.5 one, 50 none.
    decimals = next((d for d in range(10) if abs(step * 10**d - round(step * 10**d)) < 1e-6), 10)
    return f"{value:.{decimals}f}"


def _draw_text(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    font: Font,
    fill: tuple[int, int, int],
    anchor: str = "lt",
) -> None:
    """Draw text anchored by its box ('l'/'m'/'r', then 't'/'m'/'b'); unlike Pillow's anchors, works for
    bitmap fonts too."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = xy[0] - left - {"l": 0, "m": (right - left) / 2, "r": right - left}[anchor[0]]
    y = xy[1] - top - {"t": 0, "m": (bottom - top) / 2, "b": bottom - top}[anchor[1]]
    draw.text((x, y), text, font=font, fill=fill)
