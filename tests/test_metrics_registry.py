import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclegan.cli.main import main
from cyclegan.io.images import list_images
from cyclegan.metrics import MetricError
from cyclegan.metrics.evaluate import evaluate, format_table, table_rows
from cyclegan.metrics.registry import METRICS, Inputs, Metric, Row, register_metric, run_metric


def mean_level(folder: Path) -> float:
    return float(np.mean([np.asarray(Image.open(path), dtype=np.float64).mean() for path in list_images(folder)]))


def brightness(inputs: Inputs, asked: tuple[str, ...]) -> dict:
    return {"gap": mean_level(inputs.generated) - mean_level(inputs.real), "count": len(list_images(inputs.generated))}


BRIGHTNESS = Metric(section="brightness", names=("brightness",), title="brightness gaps",
                    needs={"real": "the images to compare with"}, tried_when=("real",), compute=brightness,
                    rows=lambda scores: [Row("Brightness gap", scores["gap"], str(scores["count"]), 3)])


@pytest.fixture
def registered():
    register_metric(BRIGHTNESS)
    yield BRIGHTNESS
    del METRICS[BRIGHTNESS.section]


def write_folders(root: Path) -> tuple[Path, Path]:
    generated, real = root / "generated", root / "real"
    for folder, level in ((generated, 100), (real, 90)):
        folder.mkdir(parents=True)
        for index in range(2):
            Image.fromarray(np.full((16, 16, 3), level + index, dtype=np.uint8)).save(folder / f"{index}.png")
    return generated, real


def test_a_registered_metric_runs_through_evaluate_the_table_and_the_command(tmp_path, registered, capsys):
    generated, real = write_folders(tmp_path)
    results = evaluate(generated, real, metrics=["brightness"])
    assert results["brightness"] == {"gap": pytest.approx(10.0), "count": 2}
    assert set(results) & set(METRICS) == {"brightness"}
    assert table_rows(results) == [Row("Brightness gap", pytest.approx(10.0), "2", 3)]
    assert "Brightness gap  10.000       2" in format_table(results)

    out = tmp_path / "scores.json"
    assert main(["eval", str(generated), "--real", str(real), "--metrics", "brightness,psnr", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["brightness"]["gap"] == pytest.approx(10.0)
    assert "Brightness gap" in capsys.readouterr().out
    assert main(["eval", str(generated), "--metrics", "brightness"]) == 2
    assert "brightness gaps cannot be computed: give --real (the images to compare with)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "kid,brightness" in capsys.readouterr().out.replace("\n", "").replace(" ", "")


def test_register_metric_refuses_taken_names_and_unknown_inputs(registered):
    with pytest.raises(ValueError, match="brightness"):
        register_metric(Metric(**{**vars(BRIGHTNESS), "section": "other"}))
    with pytest.raises(ValueError, match="ssim"):
        register_metric(Metric(**{**vars(BRIGHTNESS), "section": "other", "names": ("ssim",)}))
    with pytest.raises(ValueError, match="unknown inputs"):
        register_metric(Metric(**{**vars(BRIGHTNESS), "section": "other", "names": ("other",),
                                  "needs": {"depth": "depth maps"}}))


def rule(metric: Metric, inputs: Inputs, explicit: bool) -> tuple[dict | None, list[str]]:
    notes: list[str] = []
    return run_metric(metric, inputs, metric.names, explicit, notes), notes


def test_the_skip_or_raise_rule(tmp_path):
    def fail(inputs: Inputs, asked: tuple[str, ...]) -> dict:
        raise LookupError("the weights file is missing")

    metric = Metric(section="x", names=("x",), title="x scores", needs={"real": "real images", "labels": "labels"},
                    tried_when=("real",), excluded_by={"fcn_dataroot": "x needs label maps"},
                    compute=lambda inputs, asked: {"asked": asked}, rows=lambda scores: [])
    nothing, only_labels = Inputs(Path("g")), Inputs(Path("g"), labels=Path("l"))
    both = Inputs(Path("g"), real=Path("r"), labels=Path("l"))
    # Chosen automatically: tried only when an input of `tried_when` is given; if it cannot run, a note says why.
    assert rule(metric, nothing, False) == (None, [])
    assert rule(metric, only_labels, False) == (None, [])
    assert rule(metric, Inputs(Path("g"), real=Path("r")), False) == (
        None, ["x scores skipped: give --real (real images) and --labels (labels)"])
    assert rule(metric, both, False) == ({"asked": ("x",)}, [])
    excluded = Inputs(Path("g"), real=Path("r"), labels=Path("l"), fcn_dataroot=Path("d"))
    assert rule(metric, excluded, False) == (None, [])
    not_ready = Metric(**{**vars(metric), "ready": lambda inputs: "torch-fidelity is not installed"})
    assert rule(not_ready, both, False) == (None, ["x scores skipped: torch-fidelity is not installed"])
    unavailable = Metric(**{**vars(metric), "compute": fail, "unavailable": (LookupError,)})
    assert rule(unavailable, both, False) == (None, ["x scores skipped: the weights file is missing"])
    # Asked for: computed, or an error saying what is missing.
    assert rule(metric, both, True) == ({"asked": ("x",)}, [])
    with pytest.raises(MetricError, match=r"^x scores cannot be computed: give --real \(real images\) and --labels"):
        rule(metric, only_labels, True)
    with pytest.raises(MetricError, match="--fcn DATAROOT is given: x needs label maps"):
        rule(metric, excluded, True)
    with pytest.raises(MetricError, match="x scores cannot be computed: torch-fidelity is not installed"):
        rule(not_ready, both, True)
    with pytest.raises(LookupError, match="weights file"):
        rule(unavailable, both, True)
    with pytest.raises(LookupError):  # errors that do not mean a missing resource propagate in both modes
        rule(Metric(**{**vars(metric), "compute": fail}), both, False)


def test_metric_names_are_checked_before_anything_runs(tmp_path):
    generated, real = write_folders(tmp_path)
    with pytest.raises(MetricError, match="unknown metric 'lpips'; choose from l1, psnr, ssim, seg, fcn, fid, kid"):
        evaluate(generated, real, metrics=["psnr", "lpips"])
    with pytest.raises(MetricError, match="no metric named"):
        evaluate(generated, real, metrics=[])
    assert set(evaluate(generated, real, metrics=["paired"])["paired"]) == {"l1", "psnr", "ssim", "count"}
