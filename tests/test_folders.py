"""The unaligned and aligned data sets, their folders and their epoch order (cyclegan.data.folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cyclegan.config import DataConfig
from cyclegan.data.folders import (
    AlignedDataset,
    DatasetError,
    UnalignedDataset,
    epoch_order,
    load_test_images,
    load_test_pairs,
    resolve_aligned_folders,
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


def _side_by_side(folder: Path, count: int, left: tuple, right: tuple | None = None) -> None:
    """A|B images: each half is the same random picture unless `right` paints B one colour."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for number in range(count):
        half = rng.integers(0, 256, (18, 20, 3), dtype=np.uint8)
        half[0, 0] = left
        other = half.copy() if right is None else np.full_like(half, right)
        Image.fromarray(np.concatenate([half, other], axis=1)).save(folder / f"{number:03d}.png")


def test_aligned_side_by_side_pairs_get_the_same_crop_and_flip(tmp_path: Path) -> None:
    _side_by_side(tmp_path / "train", 3, left=(1, 2, 3))
    folder_a, folder_b = resolve_aligned_folders(_config(dataroot=str(tmp_path)))
    assert (folder_a, folder_b) == (tmp_path / "train", None)
    dataset = AlignedDataset(folder_a, folder_b, _config(preprocess="crop", crop_size=12), seed=5)
    assert len(dataset) == 3
    for epoch in range(6):
        for index in range(3):
            item = dataset[(epoch, index)]
            assert item["a"].shape == (3, 12, 12) and torch.equal(item["a"], item["b"])
            assert torch.equal(item["a"], dataset[(epoch, index)]["a"])  # a pure function of (seed, epoch, index)
    assert not torch.equal(dataset[(0, 0)]["a"], dataset[(1, 0)]["a"])  # crops and flips do vary


def test_aligned_side_by_side_direction_swaps_the_halves(tmp_path: Path) -> None:
    _side_by_side(tmp_path / "train", 1, left=(0, 0, 0), right=(200, 10, 10))
    forward = AlignedDataset(tmp_path / "train", None, _config(), seed=0)[(0, 0)]
    backward = AlignedDataset(tmp_path / "train", None, _config(direction="BtoA"), seed=0)[(0, 0)]
    assert torch.equal(forward["a"], backward["b"]) and torch.equal(forward["b"], backward["a"])
    assert torch.allclose(forward["b"][0], torch.full((16, 16), 200 / 127.5 - 1))
    gray = AlignedDataset(tmp_path / "train", None, _config(), seed=0, channels_b=1)[(0, 0)]
    assert gray["a"].shape == (3, 16, 16) and gray["b"].shape == (1, 16, 16)


def test_aligned_two_folders_match_names_and_share_the_augmentation(tmp_path: Path) -> None:
    for folder in ("trainA", "trainB"):
        _write(tmp_path / folder, 4, size=(24, 20))
    (tmp_path / "trainB" / "002.png").rename(tmp_path / "trainB" / "002.jpg")  # matched by name, not extension
    config = _config(dataroot=str(tmp_path), preprocess="scale_width_and_crop")
    folder_a, folder_b = resolve_aligned_folders(config)
    assert (folder_a, folder_b) == (tmp_path / "trainA", tmp_path / "trainB")
    dataset = AlignedDataset(folder_a, folder_b, config, seed=1)
    assert [p.name for p in dataset.files_b] == ["000.png", "001.png", "002.jpg", "003.png"]
    for index in range(4):
        item = dataset[(2, index)]
        assert torch.allclose(item["a"], item["b"], atol=0.02)  # 002.jpg: lossy
        assert Path(item["path_a"]).stem == Path(item["path_b"]).stem
    reversed_ = AlignedDataset(folder_a, folder_b, _config(dataroot=str(tmp_path), direction="BtoA"), seed=1)
    assert reversed_.files_a[0].parent == tmp_path / "trainB"


def test_aligned_folders_with_unmatched_names_are_refused_by_name(tmp_path: Path) -> None:
    _write(tmp_path / "trainA", 3)
    _write(tmp_path / "trainB", 3, start=1)
    with pytest.raises(DatasetError, match=r"1 image\(s\) in .*trainA have no match in .*trainB: 000.png.*"
                                           r"1 image\(s\) in .*trainB have no match .*: 003.png"):
        AlignedDataset(tmp_path / "trainA", tmp_path / "trainB", _config(), seed=0)
    with pytest.raises(DatasetError, match="no train pairs"):
        resolve_aligned_folders(_config(dataroot=str(tmp_path / "missing")))


def test_load_test_pairs(tmp_path: Path) -> None:
    _side_by_side(tmp_path / "test", 3, left=(9, 9, 9))
    images_a, images_b = load_test_pairs(AlignedDataset(tmp_path / "test", None, _config(), seed=0), 8, 2)
    assert len(images_a) == len(images_b) == 2 and images_a[0].shape == (3, 8, 8)
    assert torch.equal(images_a[1], images_b[1])
