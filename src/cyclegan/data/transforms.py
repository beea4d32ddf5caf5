"""Preprocessing as in the official code (`data/base_dataset.py`): resize, crop, flip.

All randomness comes from a `numpy.random.Generator` passed in, so a preprocessed sample is a pure function of
its generator's seed; that is what lets a run resume bit for bit whatever the number of loader processes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cyclegan.config import DataConfig

_CROP_MODES = ("resize_and_crop", "crop", "scale_width_and_crop")


def make_multiple(img: Image.Image, base: int = 4) -> Image.Image:
    """Resize (bicubic) so each side is the nearest multiple of `base` (the generators downsample by 4)."""
    width, height = img.size
    new_width = max(base, int(round(width / base) * base))
    new_height = max(base, int(round(height / base) * base))
    if (new_width, new_height) == (width, height):
        return img
    return img.resize((new_width, new_height), Image.Resampling.BICUBIC)


def scale_width(img: Image.Image, target_width: int, min_height: int) -> Image.Image:
    """Scale to `target_width` keeping the aspect ratio, height never below `min_height` (official code)."""
    width, height = img.size
    if width == target_width and height >= min_height:
        return img
    new_height = int(max(target_width * height / width, min_height))
    return img.resize((target_width, new_height), Image.Resampling.BICUBIC)


def _crop(img: Image.Image, size: int, rng: np.random.Generator, random: bool, mode: str) -> Image.Image:
    width, height = img.size
    if width < size or height < size:
        raise ValueError(
            f"image is {width}x{height} pixels, smaller than crop_size={size} (preprocess={mode}); "
            "use a smaller --crop-size, or --preprocess resize_and_crop / scale_width_and_crop")
    if random:
        left = int(rng.integers(0, width - size + 1))
        top = int(rng.integers(0, height - size + 1))
    else:  # evaluation: deterministic centre crop
        left, top = (width - size) // 2, (height - size) // 2
    return img.crop((left, top, left + size, top + size))


def preprocess(img: Image.Image, config: DataConfig, rng: np.random.Generator,
               train: bool = True) -> Image.Image:
    """Apply `config.preprocess` and the random flip to one image.

    Modes (official code): resize_and_crop (square resize to load_size, then crop crop_size), crop (crop
    only), scale_width (width to load_size, aspect kept), scale_width_and_crop (then crop), none (sides
    rounded to a multiple of 4). With train=False crops are centred and nothing is flipped.
    """
    mode = config.preprocess
    if mode == "resize_and_crop":
        img = img.resize((config.load_size, config.load_size), Image.Resampling.BICUBIC)
    elif mode in ("scale_width", "scale_width_and_crop"):
        img = scale_width(img, config.load_size, config.crop_size)
    elif mode == "none":
        img = make_multiple(img, base=4)
    elif mode != "crop":
        raise ValueError(f"unknown preprocess mode {mode!r}")
    if mode in _CROP_MODES:
        img = _crop(img, config.crop_size, rng, random=train, mode=mode)
    if train and config.flip and rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return img


def preprocess_pair(img_a: Image.Image, img_b: Image.Image, config: DataConfig, rng: np.random.Generator,
                    train: bool = True) -> tuple[Image.Image, Image.Image]:
    """`preprocess` both images of an aligned pair with the same resize, crop and flip, so they stay aligned.

    B is first resized (bicubic) to A's size if the two differ, so one crop fits both; the random draws made for
    A are then replayed for B.
    """
    if img_b.size != img_a.size:
        img_b = img_b.resize(img_a.size, Image.Resampling.BICUBIC)
    state = rng.bit_generator.state
    img_a = preprocess(img_a, config, rng, train)
    rng.bit_generator.state = state  # equal sizes make equal draws: the same crop and flip
    return img_a, preprocess(img_b, config, rng, train)
