"""`cyclegan translate` end to end: inputs never overwritten, unique output names, bad files collected, the page."""

import os
import re
from html import unescape
from pathlib import Path
from urllib.parse import unquote_to_bytes

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.cli.main import main
from cyclegan.io.images import load_image, save_image
from cyclegan.nets.generators import build_generator
from cyclegan.training.loop import train
from cyclegan.translate import Translator

from .helpers import tiny_config, tiny_dataset, write_images


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("model")
    train(tiny_config(root / "run", tiny_dataset(root / "data"), n_epochs=1, n_epochs_decay=0), show_progress=False)
    return root / "run"


def _translate(run: Path, *args: str) -> int:
    return main(["translate", str(run), *map(str, args), "--quiet", "--device", "cpu"])


def _links(page: Path) -> list[tuple[bytes, bytes]]:
    """(input, output) link pairs of a translation page, each the raw bytes of a path relative to the page."""
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page.read_text(encoding="utf-8"))
    links = [unquote_to_bytes(unescape(link)) for link in sources]
    return list(zip(links[::2], links[1::2], strict=True))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_output_folder_over_the_inputs_is_refused_before_anything_is_written(run, tmp_path, monkeypatch, capsys):
    photos = write_images(tmp_path / "photos", 2, size=12)
    (tmp_path / "link").symlink_to(photos, target_is_directory=True)
    before = _files(photos)
    monkeypatch.chdir(tmp_path)
    for inputs, out in (([photos], photos), (["photos"], "./photos/../photos"), (["link"], "photos"),
                        ([photos / "001.png"], "link")):
        assert _translate(run, *inputs, "--out", out) == 2
        error = capsys.readouterr().err
        assert error.startswith("cyclegan: error:") and re.search(r"00[01]\.png would overwrite the input", error)
        assert "--out" in error
        assert _files(photos) == before  # no input replaced, no page written
    # A folder that holds inputs is fine when no output lands on one: a.jpg -> a.png beside it.
    Image.new("RGB", (9, 9), "blue").save(photos / "a.jpg")
    assert _translate(run, photos / "a.jpg", "--out", photos) == 0
    assert (photos / "a.png").is_file() and (photos / "index.html").is_file()
    assert all(_files(photos)[name] == data for name, data in before.items())


def test_outputs_never_collide_and_the_page_pairs_each_input_with_its_own(run, tmp_path):
    inputs = [tmp_path / "d1" / "x.png", tmp_path / "d2" / "x.png", tmp_path / "d3" / "x_1.png",
              tmp_path / "d4" / "X.PNG"]
    for seed, path in enumerate(inputs):
        path.parent.mkdir()
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(path)
    tree = write_images(tmp_path / "tree" / "a", 1, size=10, seed=7).parent
    write_images(tree / "b", 1, size=10, seed=8)
    out = tmp_path / "o"
    assert _translate(run, *inputs, tree, "--out", out) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "X_3.png", "a/000.png", "b/000.png", "x.png", "x_1.png", "x_2.png"]  # a folder's sub-folders kept
    translator = Translator.load(run, device="cpu")
    pairs = _links(out / "index.html")
    assert len(pairs) == 6
    for source, output in pairs:
        expected = translator(load_image(out / os.fsdecode(source)))
        assert np.array_equal(np.asarray(Image.open(out / os.fsdecode(output))), np.asarray(expected))


@pytest.mark.parametrize("option,value", [("--batch-size", "-1"), ("--batch-size", "0"), ("--resize", "0"),
                                          ("--resize", "-5"), ("--batch-size", "two")])
def test_sizes_below_one_are_refused(run, tmp_path, capsys, option, value):
    write_images(tmp_path / "in", 1, size=8)
    with pytest.raises(SystemExit) as exit_info:
        _translate(run, tmp_path / "in", "--out", tmp_path / "out", option, value)
    assert exit_info.value.code == 2
    assert f"argument {option}: '{value}' is not a whole number of at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _mixed_inputs(folder: Path) -> Path:
    write_images(folder, 3, size=12)
    (folder / "001.png").write_text("a text file named .png")
    save_image(torch.rand(3, 32, 32) * 2 - 1, folder / "003.png")
    (folder / "003.png").write_bytes((folder / "003.png").read_bytes()[:200])  # truncated in the pixel data
    return folder


def test_bad_files_are_listed_at_the_end_and_the_rest_translated(run, tmp_path, capsys):
    inputs = _mixed_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["translate", str(run), str(inputs), "--out", str(out), "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("*.png")) == ["000.png", "002.png"]
    assert "4/4" in captured.err  # the progress bar counts the failures too
    listed = captured.err[captured.err.index("2 of 4 image(s) not translated"):]
    assert "001.png cannot be read" in listed and "003.png cannot be read" in listed and "truncated" in listed
    assert "translated 2 of 4 image(s)" in captured.out
    page = (out / "index.html").read_text()
    assert len(_links(out / "index.html")) == 2 and "Not translated (2)" in page and "001.png" in page


def test_strict_stops_at_the_first_bad_file_and_still_writes_the_page(run, tmp_path, capsys):
    out = tmp_path / "out"
    assert _translate(run, _mixed_inputs(tmp_path / "in"), "--out", out, "--strict") == 2
    error = capsys.readouterr().err
    assert error.startswith("cyclegan: error:") and "001.png cannot be read" in error and "003.png" not in error
    assert sorted(p.name for p in out.glob("*.png")) == ["000.png"]
    page = (out / "index.html").read_text()
    assert len(_links(out / "index.html")) == 1 and "Stopped at the first failure (--strict) after 2 of 4" in page


def test_ctrl_c_mid_job_leaves_a_page_for_what_was_done(run, tmp_path, monkeypatch, capsys):
    import cyclegan.translate as translate_module

    real_load, calls = translate_module.load_image, []

    def interrupted_on_the_third(path, channels=3):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_load(path, channels)

    monkeypatch.setattr(translate_module, "load_image", interrupted_on_the_third)
    out = tmp_path / "out"
    assert _translate(run, write_images(tmp_path / "in", 4, size=8), "--out", out) == 130
    assert "interrupted" in capsys.readouterr().err
    assert len(_links(out / "index.html")) == 2 and "Interrupted after 2 of 4" in (out / "index.html").read_text()


def test_a_file_name_that_is_not_utf8_is_translated_and_linked_by_its_bytes(run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9 #1.png"  # Latin-1, as an old camera or a Windows share writes it
    Image.new("RGB", (10, 6), "red").save(os.fsdecode(raw))
    out = tmp_path / "out"
    assert _translate(run, folder, "--out", out) == 0
    assert sorted(os.listdir(os.fsencode(out))) == [b"caf\xe9 #1.png", b"index.html"]
    page = (out / "index.html").read_bytes().decode("utf-8")  # valid UTF-8: the name shows with U+FFFD
    assert "caf\ufffd #1.png" in page
    [(source, output)] = _links(out / "index.html")
    assert (source, output) == (b"../in/caf\xe9 #1.png", b"caf\xe9 #1.png")  # the files' own bytes
    assert Image.open(os.fsdecode(os.fsencode(out) + b"/" + output)).size == (10, 6)


def test_a_one_way_model_asked_for_the_other_direction_writes_nothing(tmp_path, capsys):
    model = tmp_path / "g.pth"  # an official single-generator file: A->B only
    torch.save(build_generator("resnet_6blocks", 3, 3, 4, "instance", False).state_dict(), model)
    write_images(tmp_path / "in", 1, size=8)
    out = tmp_path / "out"
    assert _translate(model, tmp_path / "in", "--out", out, "--direction", "BtoA") == 2
    error = capsys.readouterr().err
    assert error.startswith("cyclegan: error:") and "no BtoA generator: it translates AtoB only" in error
    assert not out.exists()


def test_tiny_images_through_the_command(run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for size in ((1, 1), (3, 200), (4, 4)):
        Image.new("L", size, 200).save(folder / f"{size[0]}x{size[1]}.png")
    assert _translate(run, folder, "--out", tmp_path / "out") == 0
    assert {p.name: Image.open(p).size for p in (tmp_path / "out").glob("*.png")} == {
        "1x1.png": (1, 1), "3x200.png": (3, 200), "4x4.png": (4, 4)}


def test_precision_bfloat16_translates_close_to_float32(run, tmp_path, capsys):
    photos = write_images(tmp_path / "photos", 1, size=24)
    assert _translate(run, photos, "--out", tmp_path / "exact") == 0
    assert _translate(run, photos, "--out", tmp_path / "bf16", "--precision", "bf16") == 0
    exact = np.asarray(Image.open(tmp_path / "exact" / "000.png"), dtype=np.int16)
    low = np.asarray(Image.open(tmp_path / "bf16" / "000.png"), dtype=np.int16)
    assert exact.shape == low.shape and np.abs(exact - low).mean() < 12  # the same picture, in 8-bit steps
    assert _translate(run, photos, "--out", tmp_path / "x", "--precision", "fp16") == 2
    assert "fp16 is for GPUs" in capsys.readouterr().err
