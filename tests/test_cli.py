import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cyclegan.cli.main import main

from .helpers import tiny_dataset, write_images

TINY = ["--gen-arch", "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
        "--num-workers", "0", "--device", "cpu", "--quiet"]


def test_train_then_translate_files_folders_and_globs(tmp_path, capsys):
    dataroot = tiny_dataset(tmp_path / "data")
    run = tmp_path / "run"
    config = tmp_path / "options.yaml"
    config.write_text("train:\n  n_epochs: 1\n  n_epochs_decay: 1\nmodel:\n  ndf: 8\n")
    assert main(["train", "--dataroot", str(dataroot), "--run-dir", str(run), "--config", str(config), *TINY,
                 "--ndf", "4"]) == 0
    assert "finished after 2 epoch(s)" in capsys.readouterr().out
    saved = (run / "config.yaml").read_text()
    assert "n_epochs_decay: 1" in saved and "ndf: 4" in saved  # flags override the file

    inputs = tmp_path / "inputs"
    write_images(inputs / "nested", 2, size=30)
    Image.new("RGB", (45, 27), "green").save(inputs / "odd.jpg")
    Image.new("RGBA", (20, 20)).save(tmp_path / "single.webp")
    out = tmp_path / "out"
    assert main(["translate", str(run), str(inputs), str(tmp_path / "*.webp"), "--out", str(out),
                 "--direction", "BtoA", "--quiet", "--device", "cpu"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["nested/000.png", "nested/001.png", "odd.png", "single.png"]  # a folder's sub-folders kept
    assert Image.open(out / "odd.png").size == (45, 27)
    page = (out / "index.html").read_text()
    assert "odd.png" in page and "single.png" in page
    # oneDNN's direct convolutions instead of NNPACK's: the same 8-bit image, or 1 off where a value sits near a
    # rounding boundary. On a textured image: a flat one (odd.jpg is one colour) has feature maps of almost zero
    # variance, which instance norm divides by (sqrt(var + 1e-5)), magnifying float32 rounding up to ~300 times for
    # any two kernels, whatever the CPU.
    textured = tmp_path / "textured.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (27, 45, 3), dtype=np.uint8)).save(textured)
    outputs = {}
    for kind, flags in (("fast", []), ("exact", ["--exact-convolutions", "--batch-size", "2"])):
        assert main(["translate", str(run), str(textured), "--out", str(tmp_path / kind), "--direction", "BtoA",
                     "--quiet", "--device", "cpu", *flags]) == 0
        outputs[kind] = np.asarray(Image.open(tmp_path / kind / "textured.png"), dtype=int)
    assert np.abs(outputs["exact"] - outputs["fast"]).max() <= 1


def test_python_m_entry_point_and_help():
    result = subprocess.run([sys.executable, "-m", "cyclegan", "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "--lambda-identity" in result.stdout and "paper Sec. 5.2" in result.stdout


def test_data_synth_writes_the_official_layout(tmp_path):
    assert main(["data", "synth", "--out", str(tmp_path / "d"), "--size", "32", "--train", "3", "--test", "2"]) == 0
    root = tmp_path / "d"
    counts = {name: len(list((root / name).glob("*.png"))) for name in ("trainA", "trainB", "testA", "testB")}
    assert counts == {"trainA": 3, "trainB": 3, "testA": 2, "testB": 2}
    assert json.loads((root / "palette.json").read_text())


@pytest.mark.parametrize("argv,message", [
    (["train", "--dataroot", "/nonexistent/data", "--quiet"], "/nonexistent/data"),
    (["train", "--dataroot", ".", "--crop-size", "512", "--quiet"], "crop_size=512"),
    (["translate", "/nonexistent/run", "x.png"], "x.png"),
    (["train", "--resume", "--run-dir", "/nonexistent/run"], "/nonexistent/run"),
])
def test_bad_input_gives_a_clear_error_and_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("cyclegan: error:") and message in error


def test_translate_names_a_missing_model(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["translate", str(tmp_path / "no_run"), str(tmp_path / "x.png")]) == 2
    assert "no_run" in capsys.readouterr().err
