import json
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cyclegan.cli.main import main
from cyclegan.metrics import fid as fid_module
from cyclegan.metrics.evaluate import evaluate, format_table
from cyclegan.metrics.fid import frechet_distance, kernel_inception_distance

COLORS = np.array([[128, 64, 128], [70, 70, 70], [0, 0, 142]], dtype=np.uint8)


def label_dataset(root):
    """ROOT/palette.json and ROOT/testA (truth label maps), plus generated maps in ROOT/fake: 1 wrong pixel of 32."""
    classes = [{"id": i, "name": name, "color": color.tolist()}
               for i, (name, color) in enumerate(zip(("road", "building", "car"), COLORS, strict=True))]
    root.mkdir()
    (root / "palette.json").write_text(json.dumps({"classes": classes}))
    truth, fake = root / "testA", root / "fake"
    truth.mkdir()
    fake.mkdir()
    for index in range(2):
        labels = np.zeros((16, 16), dtype=np.int64)
        labels[:, 8:] = 1 + index
        Image.fromarray(COLORS[labels]).save(truth / f"{index:04d}.png")
        if index == 0:
            labels[0, 0] = 2
        Image.fromarray(COLORS[labels]).save(fake / f"{index:04d}.png")
    return truth, fake


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/pt_inception.pth"


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No Inception weights anywhere, and the download address refuses connections."""
    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CYCLEGAN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("CYCLEGAN_INCEPTION_URL", closed_port_url())


def test_eval_paired_and_segmentation_table_and_json(tmp_path, capsys):
    truth, fake = label_dataset(tmp_path / "data")
    out = tmp_path / "scores.json"
    code = main(["eval", str(fake), "--real", str(truth), "--labels", str(truth), "--metrics", "paired,seg",
                 "--out", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert results["segmentation"]["pixel_accuracy"] == pytest.approx(511 / 512)
    assert results["segmentation"]["palette"] == str(tmp_path / "data" / "palette.json")  # found above --labels
    assert results["paired"]["count"] == 2 and results["paired"]["ssim"] < 1
    assert "fid_kid" not in results
    table = capsys.readouterr().out
    for label in ("L1", "PSNR (dB)", "SSIM", "Per-pixel acc.", "Per-class acc.", "Class IOU", "IoU car"):
        assert label in table
    assert f"{511 / 512:.4f}" in table


def test_auto_mode_reports_what_fits_and_notes_missing_weights(tmp_path, offline, capsys):
    truth, fake = label_dataset(tmp_path / "data")
    assert main(["eval", str(fake), "--real", str(truth), "--quiet"]) == 0
    results = json.loads((fake / "metrics.json").read_text())  # default --out
    assert "paired" in results and "segmentation" not in results and "fid_kid" not in results
    assert any("FID/KID skipped" in note and "--inception-weights PATH" in note for note in results["notes"])
    assert "note: FID/KID skipped" in capsys.readouterr().out
    # Identical images: PSNR is infinite, written as null since JSON has no infinity.
    assert main(["eval", str(truth), "--real", str(truth), "--metrics", "psnr", "--out", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["paired"]["psnr"] is None
    assert "inf" in capsys.readouterr().out


def test_asked_for_metrics_that_cannot_be_computed_exit_2(tmp_path, offline, capsys):
    truth, fake = label_dataset(tmp_path / "data")
    assert main(["eval", str(fake), "--real", str(truth), "--metrics", "fid", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cyclegan: error:")
    assert "--inception-weights PATH" in error and "CYCLEGAN_INCEPTION_WEIGHTS" in error
    Image.fromarray(COLORS[np.zeros((16, 16), dtype=np.int64)]).save(fake / "stray.png")
    assert main(["eval", str(fake), "--real", str(truth), "--metrics", "l1"]) == 2
    assert "stray.png" in capsys.readouterr().err
    assert main(["eval", str(fake), "--metrics", "seg"]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["eval", str(fake)]) == 2
    assert "no metric fits" in capsys.readouterr().err
    assert main(["eval", str(fake), "--metrics", "lpips"]) == 2
    assert "unknown metric 'lpips'" in capsys.readouterr().err


def test_auto_mode_skips_what_does_not_fit_with_a_note_saying_why(tmp_path, offline, capsys):
    truth, fake = label_dataset(tmp_path / "data")
    (tmp_path / "data" / "palette.json").unlink()
    out = tmp_path / "scores.json"
    assert main(["eval", str(fake), "--real", str(truth), "--labels", str(truth), "--out", str(out), "--quiet"]) == 0
    results = json.loads(out.read_text())
    assert "paired" in results and "segmentation" not in results
    assert (f"segmentation scores skipped: give --labels (ground-truth label images) and --palette (the data set's "
            f"palette.json); no palette.json in or above {truth}") in results["notes"]
    capsys.readouterr()
    Image.fromarray(COLORS[np.zeros((16, 16), dtype=np.int64)]).save(fake / "stray.png")
    assert main(["eval", str(fake), "--real", str(truth), "--quiet"]) == 2  # paired and FID/KID both skipped
    error = capsys.readouterr().err
    assert "no metric fits" in error and "paired metrics skipped: 1 of 3 generated file(s)" in error
    assert "stray.png" in error and "FID/KID skipped" in error


def test_segmentation_asked_for_with_fcn_says_the_images_are_photos(tmp_path, capsys):
    truth, fake = label_dataset(tmp_path / "data")
    assert main(["eval", str(fake), "--labels", str(truth), "--fcn", str(tmp_path / "data"), "--metrics", "seg"]) == 2
    assert "segmentation scores cannot be computed: --fcn DATAROOT is given" in capsys.readouterr().err


def fake_extractor(batch):
    """Stands in for the Inception network: cheap deterministic features of the uint8 pixels."""
    assert batch.dtype == torch.uint8 and batch.shape[1] == 3
    return (F.adaptive_avg_pool2d(batch.float(), 4).flatten(1),)


def pixel_features(folder):
    return np.stack([F.adaptive_avg_pool2d(torch.from_numpy(np.array(Image.open(path).convert("RGB")))
                                           .permute(2, 0, 1).float()[None], 4).flatten().numpy()
                     for path in sorted(folder.glob("*.png"))]).astype(np.float64)


def test_fid_and_kid_through_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(fid_module, "load_inception", lambda *args, **kwargs: fake_extractor)
    rng = np.random.default_rng(0)
    generated, real = tmp_path / "generated", tmp_path / "real"
    # Mixed sizes: batches hold one size each, and features must come back in file order.
    for folder, sizes in ((generated, (24, 24, 20, 24)), (real, (20,) * 5)):
        folder.mkdir()
        for index, size in enumerate(sizes):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    out = tmp_path / "fid.json"
    assert main(["eval", str(generated), "--real", str(real), "--metrics", "fid,kid", "--kid-subsets", "6",
                 "--kid-subset-size", "3", "--batch-size", "2", "--out", str(out), "--quiet"]) == 0
    scores = json.loads(out.read_text())["fid_kid"]
    features_generated, features_real = pixel_features(generated), pixel_features(real)
    assert scores["fid"] == pytest.approx(frechet_distance(features_generated, features_real), rel=1e-9)
    kid = kernel_inception_distance(features_generated, features_real, subsets=6, subset_size=3)
    assert (scores["kid_mean"], scores["kid_std"]) == pytest.approx(kid, rel=1e-9)
    assert (scores["num_generated"], scores["num_real"], scores["kid_subset_size"]) == (4, 5, 3)
    table = format_table(evaluate(generated, real, metrics=["kid"]))
    assert "KID" in table and "FID" not in table.split("note")[0]


def test_core_package_never_imports_torchvision():
    code = ("import sys, cyclegan, cyclegan.cli.main, cyclegan.metrics.fid, cyclegan.metrics.evaluate, "
            "cyclegan.metrics.paired, cyclegan.metrics.segmentation\n"
            "cyclegan.cli.main.build_parser()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torchvision', 'torch_fidelity')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_eval_gives_the_fcn_score_of_generated_photos(tmp_path, monkeypatch, capsys):
    """Real test photos scored as if generated: the FCN score equals the scorer's own score on real photos."""
    from cyclegan.cli.main import main as cli_main
    from cyclegan.data.synthetic import write_dataset

    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cache"))
    import functools

    from cyclegan.metrics import fcn_score

    monkeypatch.setattr(fcn_score, "get_scorer", functools.partial(fcn_score.get_scorer, steps=40))
    root = write_dataset(tmp_path / "data", size=32, n_train=6, n_test=4)
    out = tmp_path / "fcn.json"
    assert cli_main(["eval", str(root / "testB"), "--labels", str(root / "testA"), "--fcn", str(root),
                     "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "FCN Per-pixel acc." in table and "FCN Class IOU" in table
    import json

    results = json.loads(out.read_text())
    assert "segmentation" not in results
    assert results["fcn"]["pixel_accuracy"] == results["fcn"]["scorer_on_real_photos"]["pixel_accuracy"]
