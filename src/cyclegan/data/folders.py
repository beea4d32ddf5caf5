"""The data sets: unaligned (two folders of unpaired images, CycleGAN) and aligned (pairs, pix2pix), and where
their folders are.

A sample is a pure function of (seed, epoch, index): each item seeds its own generator with those three
numbers, which drives the choice of the B image, the crops and the flips. Worker processes, their number and
the point at which a run was interrupted never change what the model sees, so a resumed run repeats exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cyclegan.config import DataConfig
from cyclegan.data.transforms import make_multiple, preprocess, preprocess_pair
from cyclegan.io.images import IMAGE_EXTENSIONS, convert_mode, image_to_tensor, list_images, load_image

_LAYOUT = "expected layout: DATAROOT/trainA, DATAROOT/trainB, DATAROOT/testA, DATAROOT/testB"
_ALIGNED_LAYOUT = ("expected DATAROOT/{phase} of side-by-side A|B images (the official pix2pix layout), or "
                   "DATAROOT/{phase}A and DATAROOT/{phase}B with matching file names (or give --dir-a and --dir-b)")
# The generator key of the epoch order; item seeds use non-negative indices, so they never collide with it.
_ORDER_STREAM = 2**31 - 1


class DatasetError(ValueError):
    """A data set folder that is missing, empty or unusable; the message names it and the expected layout."""


def _check_folder(folder: Path) -> None:
    blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise DatasetError(f"{blocking} is a file, not a folder of images; {_LAYOUT} (or give --dir-a and --dir-b, "
                           "each a folder of images)")
    if not folder.is_dir():
        raise DatasetError(f"folder {folder} does not exist; {_LAYOUT} (or give --dir-a and --dir-b)")
    if not list_images(folder):
        raise DatasetError(f"folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); {_LAYOUT}")


def resolve_folders(config: DataConfig, phase: str = "train") -> tuple[Path, Path]:
    """(source, target) folders: dir_a/dir_b if given, else dataroot/{phase}A, {phase}B; BtoA swaps them."""
    if config.dir_a is not None and config.dir_b is not None:
        folder_a, folder_b = Path(config.dir_a), Path(config.dir_b)
    else:
        root = Path(config.dataroot)
        folder_a, folder_b = root / f"{phase}A", root / f"{phase}B"
    if config.direction == "BtoA":
        folder_a, folder_b = folder_b, folder_a
    _check_folder(folder_a)
    _check_folder(folder_b)
    return folder_a, folder_b


class UnalignedDataset(Dataset):
    """Unpaired images from two folders, indexed by (epoch, index) tuples (see `epoch_order`).

    As in the official code, the length is the larger domain's; A is taken in order and B at random (or in
    order with serial_batches), so every A image is seen once per epoch.
    """

    def __init__(self, dir_a: str | Path, dir_b: str | Path, config: DataConfig, seed: int,
                 channels_a: int = 3, channels_b: int = 3) -> None:
        self.config = config
        self.seed = seed
        self.channels_a = channels_a
        self.channels_b = channels_b
        self.files_a = self._list(Path(dir_a))
        self.files_b = self._list(Path(dir_b))

    def _list(self, folder: Path) -> list[Path]:
        _check_folder(folder)
        files = list_images(folder)
        if self.config.max_dataset_size is not None:
            files = files[: self.config.max_dataset_size]
        return files

    def __len__(self) -> int:
        return max(len(self.files_a), len(self.files_b))

    def _load(self, path: Path, channels: int, rng: np.random.Generator) -> torch.Tensor:
        img = load_image(path, channels)
        try:
            img = preprocess(img, self.config, rng, train=True)
        except ValueError as error:
            raise DatasetError(f"{path}: {error}") from None
        return image_to_tensor(img)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor | str]:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise TypeError("UnalignedDataset is indexed by (epoch, index); sample with epoch_order(...)")
        epoch, index = int(item[0]), int(item[1])
        if epoch < 0 or index < 0:
            raise IndexError(f"(epoch, index) must be non-negative, got {(epoch, index)}")
        rng = np.random.default_rng([self.seed, epoch, index])
        path_a = self.files_a[index % len(self.files_a)]
        if self.config.serial_batches:
            path_b = self.files_b[index % len(self.files_b)]
        else:  # random B breaks fixed pairs (official code)
            path_b = self.files_b[int(rng.integers(len(self.files_b)))]
        return {
            "a": self._load(path_a, self.channels_a, rng),
            "b": self._load(path_b, self.channels_b, rng),
            "path_a": str(path_a),
            "path_b": str(path_b),
        }


def resolve_aligned_folders(config: DataConfig, phase: str = "train") -> tuple[Path, Path | None]:
    """Where the pairs of `phase` are: (dir_a, dir_b) if given; else (DATAROOT/{phase}, None) if that folder
    holds side-by-side A|B images; else (DATAROOT/{phase}A, DATAROOT/{phase}B). Not swapped for BtoA:
    `AlignedDataset` applies the direction, which for side-by-side images means swapping the halves."""
    if config.dir_a is not None and config.dir_b is not None:
        return Path(config.dir_a), Path(config.dir_b)
    root = Path(config.dataroot)
    if root.exists() and not root.is_dir():
        raise DatasetError(f"{root} is a file, not a data set folder; {_ALIGNED_LAYOUT.format(phase=phase)}")
    if (root / phase).is_dir() and list_images(root / phase):
        return root / phase, None
    if (root / f"{phase}A").is_dir() and (root / f"{phase}B").is_dir():
        return root / f"{phase}A", root / f"{phase}B"
    raise DatasetError(f"{root} holds no {phase} pairs; {_ALIGNED_LAYOUT.format(phase=phase)}")


def _match_by_name(folder_a: Path, files_a: list[Path], folder_b: Path, files_b: list[Path]
                   ) -> tuple[list[Path], list[Path]]:
    """Pair the files of two folders by their path inside the folder, extension aside (a/1.png with b/1.jpg)."""
    def keyed(folder: Path, files: list[Path]) -> dict[Path, Path]:
        by_name = {path.relative_to(folder).with_suffix(""): path for path in files}
        if len(by_name) != len(files):
            raise DatasetError(f"{folder} holds two images with the same name and different extensions; pairs are "
                               "matched by name, so keep one of them")
        return by_name

    named_a, named_b = keyed(folder_a, files_a), keyed(folder_b, files_b)
    problems = []
    for folder, own, other, other_folder in ((folder_a, named_a, named_b, folder_b),
                                             (folder_b, named_b, named_a, folder_a)):
        unmatched = sorted(own[name].relative_to(folder).as_posix() for name in own.keys() - other.keys())
        if unmatched:
            shown = ", ".join(unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
            problems.append(f"{len(unmatched)} image(s) in {folder} have no match in {other_folder}: {shown}")
    if problems:
        raise DatasetError("aligned folders must hold the same file names (pairs are matched by name); "
                           + "; ".join(problems))
    names = sorted(named_a)
    return [named_a[name] for name in names], [named_b[name] for name in names]


class AlignedDataset(Dataset):
    """Aligned pairs (pix2pix), indexed by (epoch, index) tuples like `UnalignedDataset`.

    The pairs come from one folder of side-by-side A|B images, split at the middle (the official pix2pix layout;
    pass folder_b=None), or from two folders with matching file names. BtoA swaps A and B. Both images of a pair
    get the same crop and flip (`preprocess_pair`), drawn from the item's own generator.
    """

    def __init__(self, folder_a: str | Path, folder_b: str | Path | None, config: DataConfig, seed: int,
                 channels_a: int = 3, channels_b: int = 3) -> None:
        self.config = config
        self.seed = seed
        self.channels_a = channels_a
        self.channels_b = channels_b
        self.side_by_side = folder_b is None
        self.swap = config.direction == "BtoA"
        folder_a = Path(folder_a)
        _check_folder(folder_a)
        if folder_b is None:  # one file per pair
            files_a = files_b = list_images(folder_a)
        else:
            folder_b = Path(folder_b)
            _check_folder(folder_b)
            if self.swap:
                folder_a, folder_b = folder_b, folder_a
            files_a, files_b = _match_by_name(folder_a, list_images(folder_a), folder_b, list_images(folder_b))
        if config.max_dataset_size is not None:
            files_a, files_b = files_a[: config.max_dataset_size], files_b[: config.max_dataset_size]
        self.files_a, self.files_b = files_a, files_b

    def __len__(self) -> int:
        return len(self.files_a)

    def pair_images(self, index: int) -> tuple[Image.Image, Image.Image]:
        """Pair `index` as (source, target) images with the model's channels, before preprocessing."""
        if not self.side_by_side:
            return (load_image(self.files_a[index], self.channels_a),
                    load_image(self.files_b[index], self.channels_b))
        path = self.files_a[index]
        both = load_image(path, 3)
        if both.width < 2:
            raise DatasetError(f"{path} is {both.width} pixel(s) wide; side-by-side A|B images need both halves")
        middle = both.width // 2  # as the official aligned data set splits
        left, right = both.crop((0, 0, middle, both.height)), both.crop((middle, 0, both.width, both.height))
        source, target = (right, left) if self.swap else (left, right)
        return convert_mode(source, self.channels_a), convert_mode(target, self.channels_b)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor | str]:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise TypeError("AlignedDataset is indexed by (epoch, index); sample with epoch_order(...)")
        epoch, index = int(item[0]), int(item[1])
        if epoch < 0 or index < 0:
            raise IndexError(f"(epoch, index) must be non-negative, got {(epoch, index)}")
        rng = np.random.default_rng([self.seed, epoch, index])
        index %= len(self.files_a)
        img_a, img_b = self.pair_images(index)
        try:
            img_a, img_b = preprocess_pair(img_a, img_b, self.config, rng)
        except ValueError as error:
            raise DatasetError(f"{self.files_a[index]}: {error}") from None
        return {"a": image_to_tensor(img_a), "b": image_to_tensor(img_b),
                "path_a": str(self.files_a[index]), "path_b": str(self.files_b[index])}


def epoch_order(length: int, seed: int, epoch: int, shuffle: bool) -> list[tuple[int, int]]:
    """The (epoch, index) items of one epoch: a seeded permutation, or in order when not shuffling.

    A training loop resuming mid-epoch passes `epoch_order(...)[start:]` as the DataLoader's sampler.
    """
    if shuffle:
        indices = np.random.default_rng([seed, epoch, _ORDER_STREAM]).permutation(length)
    else:
        indices = np.arange(length)
    return [(epoch, int(index)) for index in indices]


def load_test_images(folder: str | Path, channels: int, size: int | None, count: int) -> list[torch.Tensor]:
    """The first `count` images of `folder` (sorted) as tensors, resized to size x size (bicubic) if given,
    else with sides rounded to a multiple of 4. Used for the fixed sample grids."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"folder {folder} does not exist; {_LAYOUT}")
    return [_test_tensor(load_image(path, channels), size) for path in list_images(folder)[:count]]


def load_test_pairs(dataset: AlignedDataset, size: int | None, count: int
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The first `count` pairs of `dataset` as (A tensors, B tensors), sized as `load_test_images` sizes them."""
    pairs = [dataset.pair_images(index) for index in range(min(count, len(dataset)))]
    return [_test_tensor(a, size) for a, _ in pairs], [_test_tensor(b, size) for _, b in pairs]


def _test_tensor(img: Image.Image, size: int | None) -> torch.Tensor:
    if size is not None:
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    else:
        img = make_multiple(img, base=4)
    return image_to_tensor(img)
