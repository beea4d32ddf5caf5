"""The unaligned data set (two folders of unpaired images) and where its folders are.

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
from cyclegan.data.transforms import make_multiple, preprocess
from cyclegan.io.images import IMAGE_EXTENSIONS, image_to_tensor, list_images, load_image

_LAYOUT = "expected layout: DATAROOT/trainA, DATAROOT/trainB, DATAROOT/testA, DATAROOT/testB"
# The generator key of the epoch order; item seeds use non-negative indices, so they never collide with it.
_ORDER_STREAM = 2**31 - 1


class DatasetError(ValueError):
    """A data set folder that is missing, empty or unusable; the message names it and the expected layout."""


def _check_folder(folder: Path) -> None:
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
    tensors = []
    for path in list_images(folder)[:count]:
        img = load_image(path, channels)
        if size is not None:
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        else:
            img = make_multiple(img, base=4)
        tensors.append(image_to_tensor(img))
    return tensors
