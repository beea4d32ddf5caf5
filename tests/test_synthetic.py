"""The built-in procedural street-scene data set (cyclegan.data.synthetic)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from cyclegan.data.synthetic import PALETTE, ensure_builtin, render_labels, render_scene, write_dataset
from cyclegan.io.images import load_image

COLOURS = np.array(list(PALETTE.values()))


def _class_map(labels: np.ndarray) -> np.ndarray:
    """Class index of each label pixel (-1 where the colour is not in the palette)."""
    matches = (labels[:, :, None, :] == COLOURS[None, None]).all(axis=3)
    return np.where(matches.any(axis=2), matches.argmax(axis=2), -1)


def test_palette_uses_cityscapes_colours() -> None:
    assert len(PALETTE) >= 7
    assert PALETTE["road"] == (128, 64, 128) and PALETTE["sky"] == (70, 130, 180)
    assert PALETTE["car"] == (0, 0, 142) and PALETTE["person"] == (220, 20, 60)
    assert len(set(PALETTE.values())) == len(PALETTE)


def test_render_scene_shapes_and_determinism() -> None:
    labels, photo = render_scene(0, 3, 64)
    assert labels.size == photo.size == (64, 64) and labels.mode == photo.mode == "RGB"
    again_labels, again_photo = render_scene(0, 3, 64)
    assert labels.tobytes() == again_labels.tobytes() and photo.tobytes() == again_photo.tobytes()
    assert render_labels(0, 3, 64).tobytes() == labels.tobytes()
    assert render_scene(0, 4, 64)[0].tobytes() != labels.tobytes()
    assert render_scene(1, 3, 64)[1].tobytes() != photo.tobytes()


def test_labels_hold_only_palette_colours_and_several_classes() -> None:
    seen: set[int] = set()
    for index in range(6):
        classes = _class_map(np.asarray(render_scene(0, index, 64)[0]))
        assert (classes >= 0).all()
        seen |= set(np.unique(classes).tolist())
    names = list(PALETTE)
    assert {names.index(name) for name in ("road", "sidewalk", "building", "sky")} <= seen
    assert len(seen) >= 6


def test_layout_does_not_depend_on_the_size() -> None:
    small = _class_map(np.asarray(render_scene(0, 5, 64)[0]))
    large = _class_map(np.asarray(render_scene(0, 5, 128)[0]))[::2, ::2]
    assert (small == large).mean() > 0.9


def test_photos_are_not_a_per_pixel_function_of_the_label() -> None:
    """Within one class, photo colours vary a lot: within scenes (textures) and across scenes (appearance)."""
    road = list(PALETTE).index("road")
    building = list(PALETTE).index("building")
    means = []
    for index in range(6):
        labels, photo = render_scene(0, index, 64)
        classes, pixels = _class_map(np.asarray(labels)), np.asarray(photo).astype(float)
        for cls in (road, building):
            inside = pixels[classes == cls]
            if len(inside) > 50:
                assert inside.std(axis=0).mean() > 8.0  # texture, shading, markings, windows
        means.append(pixels[classes == building].mean(axis=0))
    assert np.std(means, axis=0).mean() > 8.0  # wall colours and lighting differ between scenes


def test_photo_matches_its_labels() -> None:
    """The sky region of the photo is brighter and bluer than the road region of the same scene."""
    names = list(PALETTE)
    for index in range(4):
        labels, photo = render_scene(0, index, 64)
        classes, pixels = _class_map(np.asarray(labels)), np.asarray(photo).astype(float)
        sky, road = pixels[classes == names.index("sky")], pixels[classes == names.index("road")]
        assert sky[:, 2].mean() > road[:, 2].mean() + 20


def test_render_is_fast() -> None:
    render_scene(0, 0, 128)
    start = time.process_time()
    for index in range(20):
        render_scene(0, index, 128)
    per_scene = (time.process_time() - start) / 20
    assert per_scene < 0.04  # ~10 ms on an idle core; generous for busy CI machines


def _write(tmp_path: Path, **overrides) -> Path:
    values = {"size": 32, "n_train": 4, "n_test": 3, "seed": 0, **overrides}
    return write_dataset(tmp_path / "data", **values)


def test_write_dataset_layout_and_files(tmp_path: Path) -> None:
    root = _write(tmp_path)
    names = {folder: sorted(p.name for p in (root / folder).iterdir()) for folder in
             ("trainA", "trainB", "testA", "testB")}
    assert names["trainA"] == ["0000.png", "0001.png", "0002.png", "0003.png"]
    assert names["trainB"] == ["0004.png", "0005.png", "0006.png", "0007.png"]  # disjoint scenes
    assert names["testA"] == names["testB"] == ["0008.png", "0009.png", "0010.png"]
    palette = json.loads((root / "palette.json").read_text())
    assert [c["name"] for c in palette["classes"]] == list(PALETTE)
    assert [tuple(c["color"]) for c in palette["classes"]] == list(PALETTE.values())
    assert (root / "README.txt").read_text().strip()
    assert json.loads((root / "builtin.json").read_text())["n_train"] == 4
    assert not list(root.rglob(".*.tmp"))


def test_train_domains_are_unpaired_and_test_pairs_aligned(tmp_path: Path) -> None:
    root = _write(tmp_path)
    labels, photo = render_scene(0, 9, 32)
    assert np.array_equal(np.asarray(load_image(root / "testA" / "0009.png")), np.asarray(labels))
    assert np.array_equal(np.asarray(load_image(root / "testB" / "0009.png")), np.asarray(photo))
    train_a, train_b = load_image(root / "trainA" / "0002.png"), load_image(root / "trainB" / "0005.png")
    assert np.array_equal(np.asarray(train_a), np.asarray(render_scene(0, 2, 32)[0]))
    assert np.array_equal(np.asarray(train_b), np.asarray(render_scene(0, 5, 32)[1]))
    # No trainB photo shows a trainA scene.
    train_a_photos = {render_scene(0, index, 32)[1].tobytes() for index in range(4)}
    train_b_photos = {load_image(path).tobytes() for path in (root / "trainB").iterdir()}
    assert not train_a_photos & train_b_photos


def test_write_dataset_is_deterministic(tmp_path: Path) -> None:
    first = _write(tmp_path / "one")
    second = _write(tmp_path / "two")
    for path in sorted(first.rglob("*.png")):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes()


def test_write_dataset_is_idempotent_and_rewrites_on_new_parameters(tmp_path: Path) -> None:
    root = _write(tmp_path)
    stamps = {path: path.stat().st_mtime_ns for path in root.rglob("*")}
    assert _write(tmp_path) == root
    assert {path: path.stat().st_mtime_ns for path in root.rglob("*")} == stamps
    _write(tmp_path, n_train=2, n_test=2)
    assert sorted(p.name for p in (root / "trainA").iterdir()) == ["0000.png", "0001.png"]
    assert sorted(p.name for p in (root / "testB").iterdir()) == ["0004.png", "0005.png"]
    assert json.loads((root / "builtin.json").read_text())["n_train"] == 2


def test_incomplete_dataset_is_completed(tmp_path: Path) -> None:
    root = _write(tmp_path)
    (root / "trainB" / "0005.png").unlink()
    _write(tmp_path)
    assert (root / "trainB" / "0005.png").is_file()


def test_ensure_builtin(tmp_path: Path) -> None:
    root = ensure_builtin(tmp_path, size=32, count=4, seed=1)
    assert root.parent == tmp_path
    assert len(list((root / "trainA").glob("*.png"))) == 4
    assert len(list((root / "testB").glob("*.png"))) == 8  # at least 8 test scenes
    assert ensure_builtin(tmp_path, size=32, count=4, seed=1) == root


@pytest.mark.parametrize("size", [16, 256])
def test_other_sizes(size: int) -> None:
    labels, photo = render_scene(2, 1, size)
    assert labels.size == photo.size == (size, size)
    assert (_class_map(np.asarray(labels)) >= 0).all()


def test_paired_builtin_shows_the_same_scenes_in_train_a_and_b(tmp_path: Path) -> None:
    paired = ensure_builtin(tmp_path, size=32, count=3, paired=True)
    unpaired = ensure_builtin(tmp_path, size=32, count=3)
    assert paired != unpaired and paired.name.endswith("_paired")
    names = sorted(p.name for p in (paired / "trainA").iterdir())
    assert names == sorted(p.name for p in (paired / "trainB").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    labels, photo = render_scene(0, 1, 32)
    assert np.array_equal(np.asarray(load_image(paired / "trainA" / "0001.png")), np.asarray(labels))
    assert np.array_equal(np.asarray(load_image(paired / "trainB" / "0001.png")), np.asarray(photo))
    for folder in ("testA", "testB"):  # the same test scenes as the unpaired set, to compare models on
        assert [p.read_bytes() for p in sorted((paired / folder).iterdir())] == [
            p.read_bytes() for p in sorted((unpaired / folder).iterdir())]
    assert (paired / "palette.json").is_file() and "same scenes" in (paired / "README.txt").read_text()
    assert ensure_builtin(tmp_path, size=32, count=3, paired=True) == paired


@pytest.mark.parametrize("option, value", [("--size", "0"), ("--train", "0"), ("--test", "-1"), ("--seed", "-3")])
def test_synth_refuses_impossible_sizes_before_writing_anything(tmp_path, capsys, option, value) -> None:
    from cyclegan.cli.main import main

    assert main(["data", "synth", "--out", str(tmp_path / "out"), "--train", "2", "--test", "1", option, value]) == 2
    error = capsys.readouterr().err
    assert "at least" in error and "Traceback" not in error and value in error
    assert not (tmp_path / "out").exists()
