"""Preprocessing modes of the official code (cyclegan.data.transforms)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cyclegan.config import DataConfig
from cyclegan.data.transforms import make_multiple, preprocess


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _config(**values) -> DataConfig:
    return DataConfig(**{"load_size": 40, "crop_size": 32, **values})


@pytest.mark.parametrize(
    ("mode", "size", "expected"),
    [
        ("resize_and_crop", (70, 50), (32, 32)),
        ("crop", (70, 50), (32, 32)),
        ("scale_width", (80, 60), (40, 32)),  # 40 x 30 would be below crop_size: height held at 32
        ("scale_width", (40, 100), (40, 100)),  # already load_size wide: unchanged
        ("scale_width", (20, 40), (40, 80)),  # aspect ratio kept
        ("scale_width_and_crop", (80, 120), (32, 32)),
        ("none", (70, 50), (72, 48)),  # round() as in the official code: 12.5 -> 12
        ("none", (33, 31), (32, 32)),
    ],
)
def test_output_sizes(mode: str, size: tuple[int, int], expected: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    assert preprocess(_image(*size), _config(preprocess=mode), rng).size == expected


def test_scale_width_and_crop_crops_from_the_scaled_image() -> None:
    image = Image.new("RGB", (80, 120), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 80, 60))  # top half white
    config = _config(preprocess="scale_width_and_crop", flip=False)
    crops = [np.asarray(preprocess(image, config, np.random.default_rng(seed))) for seed in range(20)]
    # The scaled image is 40 x 60; a 32 x 32 crop always straddles rows 28-32, the white/black border at 30.
    assert all(crop[:, :, 0].min() < 20 and crop[:, :, 0].max() > 235 for crop in crops)


@pytest.mark.parametrize("mode", ["resize_and_crop", "crop", "scale_width_and_crop", "none", "scale_width"])
def test_same_rng_seed_gives_the_same_output(mode: str) -> None:
    image, config = _image(90, 70), _config(preprocess=mode)
    first = preprocess(image, config, np.random.default_rng(7))
    second = preprocess(image, config, np.random.default_rng(7))
    assert np.array_equal(np.asarray(first), np.asarray(second))


def test_different_seeds_give_different_crops_and_flips() -> None:
    image, config = _image(90, 70), _config(preprocess="resize_and_crop")
    outputs = {preprocess(image, config, np.random.default_rng(seed)).tobytes() for seed in range(10)}
    assert len(outputs) > 5


def test_flip_happens_about_half_the_time_and_not_when_off() -> None:
    image = _image(32, 32)
    mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes()
    config = _config(preprocess="crop", load_size=32, crop_size=32)
    flips = [preprocess(image, config, np.random.default_rng(s)).tobytes() == mirrored for s in range(200)]
    assert 60 < sum(flips) < 140
    no_flip = _config(preprocess="crop", load_size=32, crop_size=32, flip=False)
    assert all(preprocess(image, no_flip, np.random.default_rng(s)).tobytes() == image.tobytes()
               for s in range(50))


def test_evaluation_centre_crops_and_never_flips() -> None:
    image = _image(50, 40)
    config = _config(preprocess="crop")
    expected = image.crop((9, 4, 41, 36)).tobytes()
    assert all(preprocess(image, config, np.random.default_rng(s), train=False).tobytes() == expected
               for s in range(20))


def test_crop_positions_stay_inside_the_image() -> None:
    image = _image(36, 34)
    config = _config(preprocess="crop", flip=False)
    array = np.asarray(image)
    for seed in range(30):
        crop = np.asarray(preprocess(image, config, np.random.default_rng(seed)))
        found = any(np.array_equal(array[top:top + 32, left:left + 32], crop)
                    for top in range(3) for left in range(5))
        assert found


def test_too_small_image_for_crop_names_size_and_option() -> None:
    with pytest.raises(ValueError, match=r"20x50.*crop_size=32.*--crop-size"):
        preprocess(_image(20, 50), _config(preprocess="crop"), np.random.default_rng(0))


def test_make_multiple() -> None:
    assert make_multiple(_image(64, 32), 4).size == (64, 32)
    assert make_multiple(_image(65, 30), 4).size == (64, 32)
    assert make_multiple(_image(2, 1), 4).size == (4, 4)  # never zero
    unchanged = _image(8, 8)
    assert make_multiple(unchanged, 4) is unchanged


def test_grayscale_images_stay_grayscale() -> None:
    image = _image(50, 40).convert("L")
    assert preprocess(image, _config(), np.random.default_rng(0)).mode == "L"
