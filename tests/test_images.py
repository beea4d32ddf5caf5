"""Image files <-> PIL images <-> tensors (cyclegan.io.images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.io.images import (
    IMAGE_EXTENSIONS,
    ImageError,
    collect_inputs,
    expand_inputs,
    image_to_tensor,
    list_images,
    load_image,
    output_paths,
    save_image,
    tensor_to_image,
)


def _pattern(height: int = 12, width: int = 16) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _smooth(height: int = 32, width: int = 48) -> Image.Image:
    """A smooth gradient, which lossy formats keep within a few grey levels."""
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    array = np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2)
    return Image.fromarray(array.astype(np.uint8))


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff", ".PNG"])
def test_lossless_formats_round_trip_exactly(tmp_path: Path, suffix: str) -> None:
    image = _pattern()
    path = tmp_path / "sub" / f"image{suffix}"
    save_image(image, path)
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert np.array_equal(np.asarray(loaded), np.asarray(image))


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".webp"])
def test_lossy_formats_round_trip_closely(tmp_path: Path, suffix: str) -> None:
    image = _smooth()
    path = tmp_path / f"image{suffix}"
    save_image(image, path)
    loaded = np.asarray(load_image(path)).astype(int)
    assert loaded.shape == (32, 48, 3)
    assert np.abs(loaded - np.asarray(image).astype(int)).mean() < 3.0


def test_save_image_writes_the_format_of_the_suffix(tmp_path: Path) -> None:
    formats = [(".jpg", "JPEG"), (".png", "PNG"), (".webp", "WEBP"), (".bmp", "BMP"), (".tif", "TIFF")]
    for suffix, name in formats:
        save_image(_pattern(), tmp_path / f"x{suffix}")
        with Image.open(tmp_path / f"x{suffix}") as opened:
            assert opened.format == name
    assert not list(tmp_path.glob(".*.tmp")), "no temporary files are left behind"


def test_save_image_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="x.txt"):
        save_image(_pattern(), tmp_path / "x.txt")


def test_grayscale_replicated_to_rgb_and_rgb_to_gray(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8)).save(tmp_path / "gray.png")
    rgb = np.asarray(load_image(tmp_path / "gray.png", channels=3))
    assert rgb.shape == (1, 3, 3)
    assert rgb[0, :, 0].tolist() == [0, 100, 255] and (rgb[..., 0] == rgb[..., 2]).all()
    Image.new("RGB", (2, 2), (200, 200, 200)).save(tmp_path / "rgb.png")
    gray = load_image(tmp_path / "rgb.png", channels=1)
    assert gray.mode == "L" and np.asarray(gray)[0, 0] == 200


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as opened:
        assert opened.mode in ("I;16", "I")
    assert np.asarray(load_image(tmp_path / "deep.png", channels=1))[0].tolist() == [0, 1, 128, 255]


def test_big_endian_sixteen_bit_tiff(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=">u2")
    Image.frombytes("I;16B", (4, 1), values.tobytes()).save(tmp_path / "deep.tif")
    with Image.open(tmp_path / "deep.tif") as opened:
        assert opened.mode == "I;16B"
    assert np.asarray(load_image(tmp_path / "deep.tif", channels=3))[0, :, 1].tolist() == [0, 1, 128, 255]


def test_32_bit_integer_images_use_the_16_bit_range(tmp_path: Path) -> None:
    Image.fromarray(np.array([[65535, 32768]], dtype=np.int32)).save(tmp_path / "wide.tif")
    with Image.open(tmp_path / "wide.tif") as opened:
        assert opened.mode == "I"
    assert np.asarray(load_image(tmp_path / "wide.tif", 3))[0, :, 0].tolist() == [255, 128]


def test_float_images_in_unit_range_are_scaled(tmp_path: Path) -> None:
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert image.mode == "F"
    image.save(tmp_path / "float.tif")
    assert np.asarray(load_image(tmp_path / "float.tif", 1))[0].tolist() == [0, 128, 255]


def test_rgba_transparent_pixels_become_white(tmp_path: Path) -> None:
    array = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(array, "RGBA").save(tmp_path / "alpha.png")
    loaded = np.asarray(load_image(tmp_path / "alpha.png"))
    assert loaded[0, 0].tolist() == [255, 255, 255]
    assert loaded[0, 1].tolist() == [10, 20, 30]
    assert np.abs(loaded[0, 2].astype(int) - 127).max() <= 1  # half-transparent black over white


def test_la_transparent_pixels_become_white(tmp_path: Path) -> None:
    array = np.array([[[50, 0], [50, 255]]], dtype=np.uint8)
    Image.fromarray(array, "LA").save(tmp_path / "la.png")
    assert np.asarray(load_image(tmp_path / "la.png", 1))[0].tolist() == [255, 50]


def test_palette_images_with_and_without_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / "p.png")
    assert np.asarray(load_image(tmp_path / "p.png"))[0].tolist() == [[255, 0, 0], [0, 0, 255]]
    palette.info["transparency"] = 0
    palette.save(tmp_path / "pt.png", transparency=0)
    assert np.asarray(load_image(tmp_path / "pt.png"))[0].tolist() == [[255, 255, 255], [0, 0, 255]]


def test_cmyk_and_one_bit_images(tmp_path: Path) -> None:
    Image.new("CMYK", (2, 2), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg")
    assert np.asarray(load_image(tmp_path / "cmyk.jpg")).min() >= 250
    bits = Image.new("1", (2, 1))
    bits.putpixel((1, 0), 1)
    bits.save(tmp_path / "bits.png")
    assert np.asarray(load_image(tmp_path / "bits.png", 1))[0].tolist() == [0, 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (4, 2), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").size == (2, 4)


def test_corrupt_and_missing_files_raise_image_error(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ImageError, match="broken.png"):
        load_image(tmp_path / "broken.png")
    with pytest.raises(ImageError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    truncated = tmp_path / "truncated.png"
    save_image(_pattern(64, 64), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ImageError, match="truncated.png"):
        load_image(truncated)


def test_image_to_tensor_range_shape_and_values() -> None:
    image = Image.fromarray(np.array([[[0, 255, 51]]], dtype=np.uint8))
    tensor = image_to_tensor(image)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 1, 1)
    assert torch.allclose(tensor.flatten(), torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]))
    assert image_to_tensor(image.convert("L")).shape == (1, 1, 1)


def test_tensor_round_trip_is_exact() -> None:
    image = _pattern()
    assert np.array_equal(np.asarray(tensor_to_image(image_to_tensor(image))), np.asarray(image))
    gray = image.convert("L")
    back = tensor_to_image(image_to_tensor(gray)[None])  # a 1 x C x H x W batch of one works too
    assert back.mode == "L" and np.array_equal(np.asarray(back), np.asarray(gray))


def test_tensor_to_image_clamps_and_rejects_bad_shapes() -> None:
    image = tensor_to_image(torch.tensor([-3.0, 0.0, 5.0]).view(3, 1, 1))
    assert image.mode == "RGB" and np.asarray(image)[0, 0].tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="shape"):
        tensor_to_image(torch.zeros(2, 4, 4))


def test_save_image_accepts_tensors(tmp_path: Path) -> None:
    save_image(torch.ones(3, 4, 5), tmp_path / "white.png")
    assert np.asarray(load_image(tmp_path / "white.png")).min() == 255


def _tree(root: Path) -> None:
    for relative in ["b.png", "a.JPG", "sub/c.webp", "sub/deep/d.tiff", "notes.txt", ".hidden.png",
                     ".cache/e.png"]:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative.endswith(".txt"):
            path.write_text("x")
        else:
            save_image(_pattern(4, 4), path)


def test_list_images_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    _tree(tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert names == ["a.JPG", "b.png", "sub/c.webp", "sub/deep/d.tiff"]
    assert list_images(tmp_path / "b.png") == [tmp_path / "b.png"]
    with pytest.raises(ImageError, match="notes.txt"):
        list_images(tmp_path / "notes.txt")
    with pytest.raises(ImageError, match="nowhere"):
        list_images(tmp_path / "nowhere")
    assert set(IMAGE_EXTENSIONS) >= {".jpg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".jpeg"}


def test_expand_inputs_files_folders_and_globs(tmp_path: Path) -> None:
    _tree(tmp_path)
    root = tmp_path.as_posix()
    found = expand_inputs([f"{root}/b.png", f"{root}/sub", f"{root}/*.png", f"{root}/**/*.tiff"])
    names = [p.relative_to(tmp_path).as_posix() for p in found]
    assert names == ["b.png", "sub/c.webp", "sub/deep/d.tiff"]  # in order, without duplicates


def test_expand_inputs_names_what_matches_nothing(tmp_path: Path) -> None:
    _tree(tmp_path)
    with pytest.raises(ImageError, match=r"\*\.gif"):
        expand_inputs([f"{tmp_path.as_posix()}/*.gif"])
    with pytest.raises(ImageError, match="absent.png"):
        expand_inputs([str(tmp_path / "absent.png")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="empty"):
        expand_inputs([str(tmp_path / "empty")])


def test_list_images_follows_symlinked_folders_and_ends_on_a_loop(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    for path in (root / "a" / "x.png", outside / "y.png"):
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(_pattern(4, 4), path)
    (root / "a" / "loop").symlink_to(root, target_is_directory=True)  # back to an ancestor
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "linked_again").symlink_to(outside, target_is_directory=True)  # the same folder twice
    (root / "x_link.png").symlink_to(root / "a" / "x.png")  # the same file twice
    names = [p.relative_to(root).as_posix() for p in list_images(root)]
    assert names == ["a/x.png", "linked/y.png"]
    inside = root / "a" / "loop" / "a"  # a root inside the loop: the whole tree, each file once
    assert [p.relative_to(inside).as_posix() for p in list_images(inside)] == ["loop/linked/y.png", "x.png"]


def test_collect_inputs_keeps_paths_below_a_folder_or_pattern(tmp_path: Path) -> None:
    _tree(tmp_path)
    root = tmp_path.as_posix()
    found = collect_inputs([f"{root}/b.png", root, f"{root}/sub/**/*.tiff", f"{root}/*/c.webp"])
    relative = {p.path.relative_to(tmp_path).as_posix(): p.relative.as_posix() for p in found}
    assert relative == {"b.png": "b.png", "a.JPG": "a.JPG", "sub/c.webp": "sub/c.webp",
                        "sub/deep/d.tiff": "sub/deep/d.tiff"}  # each real file once, first item wins
    found = collect_inputs([f"{root}/sub/**/*.tiff", f"{root}/*/c.webp", f"{root}/sub/deep/d.tiff"])
    assert [p.relative.as_posix() for p in found] == ["deep/d.tiff", "sub/c.webp"]


def _names(sources: list[Path], names: list[str], out: Path) -> list[str]:
    return [p.relative_to(out).as_posix() for p in output_paths(sources, names, out)]


def test_output_names_are_unique_case_insensitively_and_avoid_wanted_names(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sources = [tmp_path / f"in{i}.png" for i in range(6)]
    names = ["x.png", "x.jpg", "x_1.png", "X.PNG", "sub/x.png", "sub.png"]
    # x_1.png is an input's own name, so the numbered copies of x skip it.
    assert _names(sources, names, out) == ["x.png", "x_2.png", "x_1.png", "X_3.png", "sub/x.png", "sub.png"]
    assert _names(sources[:2], ["a/b.png", "A/B.webp"], out) == ["a/b.png", "A/B_1.png"]
    assert _names(sources[:2], ["d.jpg", "D.png/y.png"], out) == ["d_1.png", "D.png/y.png"]  # d.png is a folder
    for bad in ("../x.png", "/tmp/x.png", "a/../../x.png"):
        with pytest.raises(ImageError, match="relative path inside the output folder"):
            output_paths(sources[:1], [bad], out)


def test_output_paths_refuse_to_overwrite_an_input_however_it_is_reached(tmp_path: Path, monkeypatch) -> None:
    photos = tmp_path / "photos"
    for name in ("a.png", "b.jpg"):
        save_image(_pattern(4, 4), photos / name)
    (tmp_path / "link").symlink_to(photos, target_is_directory=True)
    sources = [photos / "a.png", photos / "b.jpg"]
    monkeypatch.chdir(tmp_path)
    for out in (photos, Path("photos"), tmp_path / "link", Path("photos/../link")):
        with pytest.raises(ImageError, match=r"a\.png would overwrite the input image .*photos/a\.png.*--out"):
            output_paths(sources, ["a.png", "b.jpg"], out)
    linked_input = [tmp_path / "link" / "a.png"]
    with pytest.raises(ImageError, match="would overwrite"):
        output_paths(linked_input, ["a.png"], photos)
    # A folder that holds inputs is fine while no output lands on one: b.jpg -> b.png beside it.
    assert output_paths(sources[1:], ["b.jpg"], photos) == [photos / "b.png"]
    assert (photos / "b.jpg").is_file() and not (photos / "b.png").exists()
