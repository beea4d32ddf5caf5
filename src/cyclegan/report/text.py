"""Fonts and text fitting for the report's Pillow drawings (the package does not depend on matplotlib)."""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

# Measuring needs a Draw object; one 1x1 scratch image serves every call.
_SCRATCH = ImageDraw.Draw(Image.new("L", (1, 1)))
_ELLIPSIS = "..."  # ASCII: the bitmap fallback font has no "…" glyph


@lru_cache(maxsize=32)
def load_font(size: int) -> Font:
    """Pillow's built-in font at about `size` pixels; Pillow < 10.1 only has a fixed-size bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: load_default() takes no size
        return ImageFont.load_default()


def is_scalable(font: Font) -> bool:
    """True when the font is a real TrueType font, so drawing at a larger scale keeps text proportions."""
    return isinstance(font, ImageFont.FreeTypeFont)


def text_width(font: Font, text: str) -> int:
    left, _, right, _ = _SCRATCH.textbbox((0, 0), text, font=font)
    return right - left


def line_height(font: Font) -> int:
    """Height of one line of text drawn at y=0, including the font's ascent, plus a little leading."""
    _, _, _, bottom = _SCRATCH.textbbox((0, 0), "Ag(|", font=font)
    return bottom + max(1, bottom // 5)


def _shorten(text: str, font: Font, max_width: int, force_ellipsis: bool = False) -> str:
    """`text` cut and ended with an ellipsis until it fits in `max_width` pixels."""
    if not force_ellipsis and text_width(font, text) <= max_width:
        return text
    while text and text_width(font, text + _ELLIPSIS) > max_width:
        text = text[:-1]
    return text.rstrip() + _ELLIPSIS if text else ""


def truncate(text: str, font: Font, max_width: int) -> str:
    """`text` unchanged if it fits in `max_width` pixels, otherwise cut and ended with an ellipsis."""
    return _shorten(text, font, max_width)


def fit_lines(text: str, font: Font, max_width: int, max_lines: int) -> list[str]:
    """Greedy word wrap of `text` into at most `max_lines` lines no wider than `max_width` pixels."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if current and text_width(font, candidate) > max_width:
            lines.append(current)
            current = word
        else:
            current = candidate
    lines.append(current)
    if len(lines) > max_lines:
        # More text follows the last line kept, so it always ends with the ellipsis.
        lines = lines[:max_lines]
        lines[-1] = _shorten(lines[-1], font, max_width, force_ellipsis=True)
    return [_shorten(line, font, max_width) for line in lines]
