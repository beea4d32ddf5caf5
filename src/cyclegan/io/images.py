"""Images: the one place where files, PIL images and tensors are converted into each other.

Tensors are float32, channels first (C x H x W), in [-1, 1] as the generators' tanh outputs are. PIL images
are mode "RGB" (3 channels) or "L" (1 channel); every other mode a file can hold is converted on load.
"""

from __future__ import annotations

import glob
import itertools
import logging
import os
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

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


@dataclass(frozen=True)
class InputImage:
    """An image found for a command-line input, and where its output goes below the output folder: its path
    below the folder (or the pattern's fixed leading folders) that was given, or just its name."""

    path: Path
    relative: PurePath


def collect_inputs(items: Sequence[str]) -> list[InputImage]:
    """Expand command-line inputs (files, folders, glob patterns such as `photos/**/*.jpg`) into images.

    The result keeps the order of `items`, each real file once. An item matching no image raises ImageError.
    """
    result: list[InputImage] = []
    seen: set[Path] = set()
    for item in items:
        if Path(item).exists():
            base = Path(item) if Path(item).is_dir() else Path(item).parent
            matches = list_images(item)
        elif _GLOB_CHARACTERS & set(item):
            base = _fixed_prefix(item)
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
                result.append(InputImage(match, _relative_to(match, base)))
    return result


def expand_inputs(items: Sequence[str]) -> list[Path]:
    """The image paths of `collect_inputs(items)`."""
    return [found.path for found in collect_inputs(items)]


def _fixed_prefix(pattern: str) -> Path:
    """The leading folders of a glob pattern that hold no wildcard: `photos/**/*.jpg` -> `photos`."""
    parts = Path(pattern).parts
    fixed = [part for part in itertools.takewhile(lambda part: not _GLOB_CHARACTERS & set(part), parts)]
    return Path(*fixed) if fixed else Path()


def _relative_to(path: Path, base: Path) -> PurePath:
    """`path` below `base`, or only its name if it is not below it (a pattern with `..` after a wildcard)."""
    try:
        relative = path.relative_to(base)
    except ValueError:
        return PurePath(path.name)
    return relative if ".." not in relative.parts else PurePath(path.name)


def output_paths(sources: Sequence[Path], names: Sequence[str | PurePath], out_dir: Path,
                 suffix: str = ".png") -> list[Path]:
    """Where each source's output goes: `out_dir / name` with `suffix`, numbered (`x_1.png`, `x_2.png`, ...) where
    two names would collide, and checked before anything is written.

    Names are compared case-insensitively (as macOS and Windows file systems do), a name that is some input's own
    wanted name keeps it, and a numbered name avoids every other output and sub-folder. Raises ImageError for a
    name that leaves `out_dir` and for an output that already exists as, or links to, one of the sources: writing
    into a folder that holds inputs is fine, writing over one is refused.
    """
    if len(names) != len(sources):
        raise ValueError(f"{len(names)} output names for {len(sources)} inputs")
    wanted = [_safe_name(name).with_suffix(suffix) for name in names]
    taken = {_key(folder) for name in wanted for folder in name.parents}
    chosen: list[PurePath | None] = [None] * len(wanted)
    for index, name in enumerate(wanted):  # first, each distinct name to the first input that wants it
        if _key(name) not in taken:
            taken.add(_key(name))
            chosen[index] = name
    for index, name in enumerate(wanted):  # then numbers for the rest, avoiding every name handed out
        number = 1
        while chosen[index] is None:
            candidate = name.with_name(f"{name.stem}_{number}{name.suffix}")
            if _key(candidate) not in taken:
                taken.add(_key(candidate))
                chosen[index] = candidate
            number += 1
    outputs = [Path(out_dir, name) for name in chosen if name is not None]
    _refuse_overwriting_inputs(sources, outputs)
    return outputs


def _safe_name(name: str | PurePath) -> PurePath:
    relative = PurePath(name)
    if relative.is_absolute() or relative.anchor or ".." in relative.parts or not relative.name:
        raise ImageError(f"output name {printable_path(relative)!r} must be a relative path inside the output folder")
    return relative


def _key(name: PurePath) -> str:
    return unicodedata.normalize("NFC", name.as_posix()).casefold()


def _file_ids(path: Path) -> set[tuple[int, int]]:
    """The (device, inode) of a path and, if it is a link, of what it points to; empty if it does not exist."""
    ids = set()
    for stat in (os.lstat, os.stat):
        try:
            result = stat(path)
        except OSError:
            continue
        ids.add((result.st_dev, result.st_ino))
    return ids


def _refuse_overwriting_inputs(sources: Sequence[Path], outputs: Sequence[Path]) -> None:
    source_ids = {file_id: source for source in sources for file_id in _file_ids(Path(source))}
    for output in outputs:
        for file_id in _file_ids(output):
            if file_id in source_ids:
                raise ImageError(
                    f"{output} would overwrite the input image {source_ids[file_id]}; nothing was written. "
                    "Choose another output folder (--out)")


def printable_path(path: str | Path) -> str:
    """A path as text that any UTF-8 stream or page takes: bytes that are not UTF-8 (a Linux file name in
    Latin-1, say) show as U+FFFD."""
    return os.fsencode(path).decode("utf-8", errors="replace")


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
    except Image.DecompressionBombError as error:
        raise ImageError(f"{path} is larger than Pillow's guard against decompression bombs allows ({error}); "
                         "if you trust the file, raise the limit (cyclegan translate --max-pixels N; Python: "
                         "PIL.Image.MAX_IMAGE_PIXELS = N)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
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
    return array_to_tensor(np.asarray(img, dtype=np.uint8))


def array_to_tensor(array: np.ndarray) -> torch.Tensor:
    """A uint8 H x W x C (or H x W) array to a float32 C x H x W tensor in [-1, 1]: the one formula, also for the
    bands of tiled translation."""
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
    array = tensor_to_array(tensor)
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def tensor_to_array(tensor: torch.Tensor) -> np.ndarray:
    """A C x H x W tensor in [-1, 1] to a uint8 H x W x C array, clamped and rounded: the one quantisation."""
    scaled = ((tensor.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return scaled.permute(1, 2, 0).numpy()


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


# What an upload may be: the formats Pillow decodes itself (never EPS or PDF, which it hands to Ghostscript).
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
# Output formats of `encode_image` by the names a request uses, with their MIME types.
ENCODINGS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}


class ImageTooLarge(ImageError):
    """An image with more pixels than allowed (a decompression bomb, or just too large for the limit)."""


def decode_image(data: bytes, channels: int = 3, max_pixels: int | None = None, name: str = "the upload"
                 ) -> Image.Image:
    """Decode image bytes (one of UPLOAD_FORMATS; the first frame of an animation) as `load_image` reads a file:
    upright per EXIF, mode "RGB" or "L", alpha over white, 16-bit scaled. The pixel count is checked against
    `max_pixels` from the header, before any pixel is decoded (ImageTooLarge); anything unreadable is an ImageError.
    """
    import io

    if not data:
        raise ImageError(f"{name} is empty; send the bytes of a PNG, JPEG, WebP, BMP, TIFF or GIF image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS) as opened:
                width, height = opened.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageTooLarge(f"{name} is {width}x{height} = {width * height} pixels, over the limit of "
                                        f"{max_pixels}; scale it down and send it again")
                opened.load()
                return convert_mode(ImageOps.exif_transpose(opened), channels)
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"{name} has more pixels than the decompression-bomb guard allows; scale it down and "
                            "send it again") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
        if isinstance(error, ImageError):
            raise
        reason = "not an image in a supported format" if isinstance(error, UnidentifiedImageError) else \
            "a damaged or truncated image"
        raise ImageError(f"{name} is {reason}; send a PNG, JPEG, WebP, BMP, TIFF or GIF image") from None


def encode_image(image: Image.Image | torch.Tensor, encoding: str = "png") -> bytes:
    """An image (or [-1, 1] tensor) as the bytes of a PNG, JPEG or WebP file (ENCODINGS; JPEG and WebP at quality
    95, as `save_image` writes them)."""
    import io

    if encoding not in ENCODINGS:
        raise ImageError(f"format {encoding!r} is not one of {', '.join(ENCODINGS)}")
    img = tensor_to_image(image) if isinstance(image, torch.Tensor) else image
    options = {"quality": 95} if encoding in ("jpeg", "webp") else {}
    buffer = io.BytesIO()
    img.save(buffer, format=ENCODINGS[encoding][0], **options)
    return buffer.getvalue()
