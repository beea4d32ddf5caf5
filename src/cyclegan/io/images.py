"""Images: the one place where files, PIL images and tensors are converted into each other.

Tensors are float32, channels first (C x H x W), in [-1, 1] as the generators' tanh outputs are. PIL images
are mode "RGB" (3 channels) or "L" (1 channel); every other mode a file can hold is converted on load.
"""

from __future__ import annotations

import glob
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from cyclegan.io.atomic import atomic_path
from cyclegan.progress import progress_bar

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

logger = logging.getLogger(__name__)

_GLOB_CHARACTERS = set("*?[")
_GRAYSCALE_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


class ImageError(ValueError):
    """An image file that cannot be found, read or written; the message names the file and what to do."""


def is_image_file(path: str | Path) -> bool:
    """True if `path` has one of the supported image extensions (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(path: str | Path) -> list[Path]:
    """The images in a folder (recursive, sorted, hidden files and folders skipped), or one image file.

    Symlinked folders are followed; a folder reached twice (a link back to an ancestor, or two links to one
    folder) is listed once, and so is a file reached by two paths, so listing always ends.
    """
    path = Path(path)
    if path.is_file():
        if not is_image_file(path):
            raise ImageError(f"{path} is not a supported image; use one of {', '.join(IMAGE_EXTENSIONS)}")
        return [path]
    if not path.is_dir():
        raise ImageError(f"{path} does not exist; give an image file or a folder of images")
    seen_folders: set[str] = set()
    candidates = []
    for folder, subfolders, files in os.walk(path, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen_folders:
            logger.debug("%s is %s, listed already; not followed again", folder, real)
            subfolders.clear()
            continue
        seen_folders.add(real)
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        candidates += [Path(folder, name) for name in files if not name.startswith(".") and is_image_file(name)]
    # A file reached by two paths is listed by one: not a file link if it can, then the shallowest.
    found: dict[str, Path] = {}
    for file in sorted(candidates, key=lambda file: (file.is_symlink(), len(file.parts), file)):
        if file.is_file():
            found.setdefault(os.path.realpath(file), file)
    return sorted(found.values())


def expand_inputs(items: list[str]) -> list[Path]:
    """Expand command-line inputs (files, folders, glob patterns such as `photos/**/*.jpg`) into image paths.

    The result keeps the order of `items`, without duplicates. An item matching no image raises ImageError.
    """
    result: list[Path] = []
    seen: set[Path] = set()
    for item in items:
        if Path(item).exists():
            matches = list_images(item)
        elif _GLOB_CHARACTERS & set(item):
            matches = []
            for match in sorted(glob.glob(item, recursive=True)):
                if Path(match).is_dir():
                    matches.extend(list_images(match))
                elif is_image_file(match):
                    matches.append(Path(match))
        else:
            raise ImageError(f"{item} does not exist; give an image file, a folder or a pattern like '*.png'")
        if not matches:
            extensions = ", ".join(IMAGE_EXTENSIONS)
            raise ImageError(f"{item} matches no image ({extensions}); check the path or pattern")
        for match in matches:
            key = match.resolve()
            if key not in seen:
                seen.add(key)
                result.append(match)
    return result


def _over_white(img: Image.Image) -> Image.Image:
    """Composite an image with alpha over white: transparent areas are paper, not black."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float grayscale to 8-bit "L", scaling the range instead of clipping it."""
    values = np.asarray(img)
    if img.mode in _SIXTEEN_BIT_MODES:
        # Pillow reads 16-bit PNG/TIFF as these modes; map 0..65535 onto 0..255 with rounding.
        wide = np.clip(values.astype(np.int64), 0, 65535)
        scaled = (wide * 255 + 32767) // 65535
    else:  # "F": floats are either in [0, 1] or already in [0, 255]
        floats = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if floats.size and floats.max() <= 1.0:
            floats = floats * 255.0
        scaled = np.rint(np.clip(floats, 0.0, 255.0))
    return Image.fromarray(scaled.astype(np.uint8))


def convert_mode(img: Image.Image, channels: int = 3) -> Image.Image:
    """Convert any PIL mode to "RGB" (channels=3) or "L" (channels=1)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    mode = img.mode
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA") if has_alpha else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "RGBa", "LA", "La"):
        img = _over_white(img)
    elif mode in _SIXTEEN_BIT_MODES or mode == "F":
        img = _to_8bit_gray(img)
    elif mode == "1":
        img = img.convert("L")
    elif mode not in ("RGB", "L"):  # CMYK, YCbCr, HSV, ...
        img = img.convert("RGB")
    target = "RGB" if channels == 3 else "L"
    return img if img.mode == target else img.convert(target)  # L -> RGB replicates the gray channel


def load_image(path: str | Path, channels: int = 3) -> Image.Image:
    """Read an image file as mode "RGB" (channels=3) or "L" (channels=1), upright per its EXIF orientation."""
    path = Path(path)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    if not path.is_file():
        raise ImageError(f"{path} does not exist; check the path")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Pillow's "palette images with transparency" hint
            with Image.open(path) as opened:
                opened.load()
                img = ImageOps.exif_transpose(opened)
                return convert_mode(img, channels)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageError(f"{path} cannot be read as an image ({error}); remove or replace the file") from None


def unreadable_images(paths: list[Path], show_progress: bool = False) -> list[str]:
    """Read each file's header (format, size: no pixels decoded) and return "PATH: reason" for those that are no
    readable image, so that a training run can refuse its data before the first step, listing them all."""
    problems = []
    for path in progress_bar(paths, total=len(paths), description="checking images", unit="img",
                             enabled=show_progress and len(paths) >= 1000):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as opened:
                    width, height = opened.size
            if width < 1 or height < 1:
                problems.append(f"{path}: the image is empty ({width}x{height})")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            problems.append(f"{path}: {error}")
    return problems


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image to a float32 C x H x W tensor in [-1, 1]; "L" gives one channel, other modes three."""
    if img.mode not in ("RGB", "L"):
        img = convert_mode(img, 1 if img.mode in _GRAYSCALE_MODES else 3)
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32)
    return tensor / 127.5 - 1.0


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """A C x H x W (or 1 x C x H x W) tensor in [-1, 1] to a PIL image; values outside are clamped."""
    tensor = tensor.detach().to("cpu", torch.float32)
    if tensor.dim() == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3):
        raise ValueError(f"expected a 1- or 3-channel C x H x W tensor, not shape {tuple(tensor.shape)}")
    scaled = ((tensor.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    array = scaled.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def _format_for(path: Path) -> str:
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None or not is_image_file(path):
        raise ImageError(f"{path}: cannot tell the image format; use one of {', '.join(IMAGE_EXTENSIONS)}")
    return image_format


def save_image(image: Image.Image | torch.Tensor, path: str | Path) -> None:
    """Write an image or a [-1, 1] tensor atomically, in the format of the suffix, making parent folders."""
    path = Path(path)
    image_format = _format_for(path)
    img = tensor_to_image(image) if isinstance(image, torch.Tensor) else image
    options: dict[str, object] = {}
    if image_format in ("JPEG", "WEBP"):
        options["quality"] = 95
        if img.mode not in ("RGB", "L"):
            img = convert_mode(img, 3)
    try:
        with atomic_path(path) as temporary:
            img.save(temporary, format=image_format, **options)
    except OSError as error:
        raise ImageError(f"{path} cannot be written ({error}); check the folder and free space") from None
