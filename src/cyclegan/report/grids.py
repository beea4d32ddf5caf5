"""Sample grids: one row per sample, one titled column per image (real, translated, reconstructed, identity).

Layout: an optional band of row titles on the left, then the cells separated by thin white gutters; above
the cells, a header band with the column titles. Every cell is as large as the largest image; smaller images
are centred in it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from cyclegan.io.atomic import atomic_path
from cyclegan.io.images import tensor_to_image
from cyclegan.report.text import Font, fit_lines, line_height, load_font, text_width

GUTTER = 2  # px of white between cells: enough to separate images without drawing the eye
_PADDING = 4  # px around title text
_BACKGROUND = (255, 255, 255)
_TEXT_COLOUR = (40, 40, 40)
_MAX_TITLE_LINES = 3
_MAX_ROW_TITLE_WIDTH = 160


def sample_grid(
    rows: list[list[torch.Tensor]],
    column_titles: list[str],
    row_titles: list[str] | None = None,
    cell_size: int | None = None,
) -> Image.Image:
    """Arrange image tensors (C x H x W in [-1, 1], 1 or 3 channels) into a titled RGB grid.

    `rows[i][j]` is sample i under `column_titles[j]`. With `cell_size`, each image is resized so its longer
    side is `cell_size` pixels: nearest-neighbour when enlarging, so 32-64 px images stay sharp and every
    source pixel becomes an exact block; box-filtered when shrinking.
    """
    _check_grid(rows, column_titles, row_titles, cell_size)
    images = [[_cell_image(tensor, cell_size) for tensor in row] for row in rows]
    cell_width = max(image.width for row in images for image in row)
    cell_height = max(image.height for row in images for image in row)
    # Titles scale with the cells so they stay readable on large cells and fit on small ones.
    font = load_font(min(16, max(10, cell_width // 10)))
    line = line_height(font)

    title_width = max(1, cell_width - 2 * _PADDING)
    titles = [fit_lines(title, font, title_width, _MAX_TITLE_LINES) for title in column_titles]
    header_height = 2 * _PADDING + line * max((len(lines) for lines in titles), default=1)

    label_width = 0
    labels: list[list[str]] = []
    if row_titles is not None:
        widest = max(text_width(font, title) for title in row_titles)
        label_width = min(widest, _MAX_ROW_TITLE_WIDTH) + 2 * _PADDING
        max_label_lines = max(1, cell_height // line)
        labels = [fit_lines(title, font, label_width - 2 * _PADDING, max_label_lines) for title in row_titles]

    width = label_width + GUTTER + len(column_titles) * (cell_width + GUTTER)
    height = header_height + GUTTER + len(rows) * (cell_height + GUTTER)
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    for column, lines in enumerate(titles):
        left = label_width + GUTTER + column * (cell_width + GUTTER)
        # Bottom-aligned, so one-line titles sit just above their images next to two-line ones.
        top = header_height - _PADDING - line * len(lines)
        _draw_centred_lines(draw, lines, font, left, cell_width, top, line)

    for row_index, row in enumerate(images):
        top = header_height + GUTTER + row_index * (cell_height + GUTTER)
        if labels:
            lines = labels[row_index]
            text_top = top + (cell_height - line * len(lines)) // 2
            _draw_centred_lines(draw, lines, font, 0, label_width, text_top, line)
        for column, image in enumerate(row):
            left = label_width + GUTTER + column * (cell_width + GUTTER)
            offset = ((cell_width - image.width) // 2, (cell_height - image.height) // 2)
            canvas.paste(image, (left + offset[0], top + offset[1]))
    return canvas


def _check_grid(rows: list[list[torch.Tensor]], column_titles: list[str], row_titles: list[str] | None,
                cell_size: int | None) -> None:
    if not rows:
        raise ValueError("sample_grid needs at least one row")
    for index, row in enumerate(rows):
        if len(row) != len(column_titles):
            raise ValueError(f"row {index} has {len(row)} images for {len(column_titles)} column titles")
    if row_titles is not None and len(row_titles) != len(rows):
        raise ValueError(f"{len(row_titles)} row titles for {len(rows)} rows")
    if cell_size is not None and cell_size < 1:
        raise ValueError(f"cell_size must be positive, got {cell_size}")


def save_png(img: Image.Image, path: str | Path) -> Path:
    """Write `img` to `path` as PNG, atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        img.save(temporary, format="PNG")
    return path


def _cell_image(tensor: torch.Tensor, cell_size: int | None) -> Image.Image:
    # tensor_to_image validates the shape; mixed grayscale and colour columns then share one RGB canvas.
    image = tensor_to_image(tensor).convert("RGB")
    if cell_size is None or max(image.size) == cell_size:
        return image
    scale = cell_size / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BOX
    return image.resize(size, resample)


def _draw_centred_lines(
    draw: ImageDraw.ImageDraw, lines: list[str], font: Font, left: int, width: int, top: int, line: int
) -> None:
    for number, text in enumerate(lines):
        x = left + (width - text_width(font, text)) // 2
        draw.text((x, top + number * line), text, font=font, fill=_TEXT_COLOUR)
