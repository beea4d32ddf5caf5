"""The unaligned data set, its folders and its epoch order (cyclegan.data.folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cyclegan.config import DataConfig
from cyclegan.data.folders import (
    DatasetError,
    UnalignedDataset,
    epoch_order,
    load_test_images,
    resolve_folders,
)


def _write(folder: Path, count: int, size: tuple[int, int] = (20, 18), start: int = 0) -> None:
    """Images whose red value encodes their number, so a sample tells which file it came from."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(start, start + count):
        Image.new("RGB", size, (number * 10, 50, 100)).save(folder / f"{number:03d}.png")


def _config(**values) -> DataConfig:
    return DataConfig(**{"load_size": 20, "crop_size": 16, "num_workers": 0, **values})


@pytest.fixture
def dataroot(tmp_path: Path) -> Path:
    _write(tmp_path / "trainA", 3)
    _write(tmp_path / "trainB", 5, start=10)
    _write(tmp_path / "testA", 2)
    _write(tmp_path / "testB", 2)
    return tmp_path


def test_resolve_folders_from_dataroot_and_direction(dataroot: Path) -> None:
    assert resolve_folders(_config(dataroot=str(dataroot))) == (dataroot / "trainA", dataroot / "trainB")
    test_folders = resolve_folders(_config(dataroot=str(dataroot)), "test")
    assert test_folders == (dataroot / "testA", dataroot / "testB")
    swapped = resolve_folders(_config(dataroot=str(dataroot), direction="BtoA"))
    assert swapped == (dataroot / "trainB", dataroot / "trainA")


def test_resolve_folders_from_explicit_dirs(dataroot: Path) -> None:
    config = _config(dir_a=str(dataroot / "testA"), dir_b=str(dataroot / "trainB"))
    assert resolve_folders(config) == (dataroot / "testA", dataroot / "trainB")
    swapped = _config(dir_a=str(dataroot / "testA"), dir_b=str(dataroot / "trainB"), direction="BtoA")
    assert resolve_folders(swapped) == (dataroot / "trainB", dataroot / "testA")


def test_missing_or_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    _write(tmp_path / "trainA", 1)
    with pytest.raises(DatasetError, match=r"trainB.*does not exist.*trainA, DATAROOT/trainB"):
        resolve_folders(_config(dataroot=str(tmp_path)))
    (tmp_path / "trainB").mkdir()
    (tmp_path / "trainB" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"trainB.*no images"):
        resolve_folders(_config(dataroot=str(tmp_path)))


def test_length_is_the_larger_domain_and_items_are_tensors(dataroot: Path) -> None:
    dataset = UnalignedDataset(dataroot / "trainA", dataroot / "trainB", _config(), seed=0)
    assert len(dataset) == 5
    item = dataset[(0, 4)]
    assert item["a"].shape == (3, 16, 16) and item["b"].shape == (3, 16, 16)
    assert item["a"].dtype == torch.float32 and -1.0 <= item["a"].min() and item["a"].max() <= 1.0
    assert item["path_a"].endswith("001.png")  # A wraps around: 4 % 3 == 1


def test_items_are_a_pure_function_of_seed_epoch_index(dataroot: Path) -> None:
    config = _config()
    first = UnalignedDataset(dataroot / "trainA", dataroot / "trainB", config, seed=3)
    second = UnalignedDataset(dataroot / "trainA", dataroot / "trainB", config, seed=3)
    for key in [(0, 0), (2, 1), (7, 4)]:
        one, two = first[key], second[key]
        assert one["path_b"] == two["path_b"]
        assert torch.equal(one["a"], two["a"]) and torch.equal(one["b"], two["b"])
    # Varying the epoch changes the random B choice (and the crops) for the same index.
    choices = {first[(epoch, 0)]["path_b"] for epoch in range(20)}
    assert len(choices) > 2


def test_serial_batches_pairs_b_in_order(dataroot: Path) -> None:
    dataset = UnalignedDataset(dataroot / "trainA", dataroot / "trainB", _config(serial_batches=True), seed=0)
    paths = [Path(dataset[(0, index)]["path_b"]).name for index in range(5)]
    assert paths == ["010.png", "011.png", "012.png", "013.png", "014.png"]
    random = UnalignedDataset(dataroot / "trainA", dataroot / "trainB", _config(), seed=0)
    random_paths = [Path(random[(epoch, 0)]["path_b"]).name for epoch in range(30)]
    assert len(set(random_paths)) >= 4


def test_sample_content_matches_its_file(dataroot: Path) -> None:
    dataset = UnalignedDataset(dataroot / "trainA", dataroot / "trainB", _config(), seed=0)
    for index in range(5):
        item = dataset[(1, index)]
        red = (item["b"][0].mean().item() + 1) * 127.5
        assert round(red / 10) == int(Path(item["path_b"]).stem)


def test_domains_of_different_sizes_and_channels(tmp_path: Path) -> None:
    _write(tmp_path / "A", 7)
    _write(tmp_path / "B", 2)
    dataset = UnalignedDataset(tmp_path / "A", tmp_path / "B", _config(), seed=0, channels_a=1, channels_b=3)
    assert len(dataset) == 7
    item = dataset[(0, 6)]
    assert item["a"].shape == (1, 16, 16) and item["b"].shape == (3, 16, 16)
    assert Path(item["path_a"]).name == "006.png"


def test_max_dataset_size_caps_each_domain(dataroot: Path) -> None:
    dataset = UnalignedDataset(dataroot / "trainA", dataroot / "trainB", _config(max_dataset_size=2), seed=0)
    assert len(dataset) == 2
    assert [p.name for p in dataset.files_b] == ["010.png", "011.png"]


def test_integer_index_is_refused(dataroot: Path) -> None:
    dataset = UnalignedDataset(dataroot / "trainA", dataroot / "trainB", _config(), seed=0)
    with pytest.raises(TypeError, match="epoch_order"):
        dataset[0]


def test_too_small_image_error_names_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "A", 1, size=(8, 8))
    _write(tmp_path / "B", 1)
    dataset = UnalignedDataset(tmp_path / "A", tmp_path / "B", _config(preprocess="crop"), seed=0)
    with pytest.raises(DatasetError, match=r"000.png.*crop_size=16"):
        dataset[(0, 0)]


def test_epoch_order_is_a_seeded_permutation() -> None:
    order = epoch_order(50, seed=1, epoch=3, shuffle=True)
    assert sorted(index for _, index in order) == list(range(50))
    assert all(epoch == 3 for epoch, _ in order)
    assert order == epoch_order(50, seed=1, epoch=3, shuffle=True)
    assert order != epoch_order(50, seed=1, epoch=4, shuffle=True)
    assert order != epoch_order(50, seed=2, epoch=3, shuffle=True)
    assert [index for _, index in order] != list(range(50))
    assert epoch_order(4, seed=1, epoch=2, shuffle=False) == [(2, 0), (2, 1), (2, 2), (2, 3)]


def test_dataloader_with_epoch_order_resumes_identically(dataroot: Path) -> None:
    dataset = UnalignedDataset(dataroot / "trainA", dataroot / "trainB", _config(), seed=5)
    order = epoch_order(len(dataset), seed=5, epoch=1, shuffle=True)
    full = list(DataLoader(dataset, batch_size=2, sampler=order))
    resumed = list(DataLoader(dataset, batch_size=2, sampler=order[2:]))
    assert full[0]["a"].shape == (2, 3, 16, 16)
    assert torch.equal(full[1]["a"], resumed[0]["a"]) and torch.equal(full[1]["b"], resumed[0]["b"])
    assert full[1]["path_b"] == resumed[0]["path_b"]


def test_load_test_images(tmp_path: Path) -> None:
    folder = tmp_path / "testA"
    _write(folder, 4, size=(30, 22))
    images = load_test_images(folder, channels=3, size=16, count=3)
    assert len(images) == 3 and all(image.shape == (3, 16, 16) for image in images)
    assert np.isclose((images[2][0].mean().item() + 1) * 127.5, 20, atol=1)  # the third file, sorted
    native = load_test_images(folder, channels=1, size=None, count=10)
    assert len(native) == 4 and native[0].shape == (1, 24, 32)  # sides rounded to a multiple of 4
    with pytest.raises(DatasetError, match="missing"):
        load_test_images(tmp_path / "missing", channels=3, size=16, count=2)
