"""The paper-tables benchmark runs end to end (on its smoke preset) and writes tables shaped like the paper's."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from .test_feature_gan import closed_port_url, standin  # noqa: F401, F811 - standin is a fixture

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_tables.py"


def _load_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("paper_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "paper_tables", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


TABLE_2_ROWS = ["CoGAN", "BiGAN/ALI", "SimGAN (GAN + L1 to input)", "Feature loss + GAN", "CycleGAN (ours)",
                "pix2pix (paired)"]  # the paper's order
ABLATIONS = ["GAN alone", "Cycle alone", "GAN + forward cycle", "GAN + backward cycle"]


def _rows(tables, title):
    table = tables.split(f"**{title}")[1].split("\n\n**")[0].split("\n\nDifferences")[0]
    return [line.split(" | ")[0].lstrip("| ") for line in table.splitlines() if line.startswith("| ")][1:]


@pytest.mark.slow
def test_paper_tables_smoke_preset(tmp_path, monkeypatch, standin):  # noqa: F811 - the imported fixture
    """Every row of the paper's Tables 2-3 for two seeds, as mean ± sd, with each difference from CycleGAN set
    against the seed spread (Feature loss + GAN with stand-in VGG-16 weights); then the ablations of Tables 4-5,
    one seed, in the same folder (CycleGAN's finished run is reused)."""
    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CYCLEGAN_VGG16_WEIGHTS", str(standin.path))
    script, out = _load_script(monkeypatch), tmp_path / "out"
    assert script.main(["--preset", "smoke", "--seeds", "0", "1", "--precision", "float32", "--out", str(out),
                        "--methods", *TABLE_2_ROWS]) == 0
    tables = (out / "tables.md").read_text()
    assert tables.startswith("Preset smoke, seeds 0, 1 (mean ± sd over seeds), float32 (as asked)")
    assert _rows(tables, "Table 2") == TABLE_2_ROWS and _rows(tables, "Table 3") == TABLE_2_ROWS
    results = json.loads((out / "tables.json").read_text())
    assert len(results["results"]) == 2 * (2 * 5 + 2)  # two seeds; five two-way methods, pix2pix once per direction
    assert {r["seed"] for r in results["results"]} == {0, 1}
    for result in results["results"]:
        assert set(result["scores"]) == {"pixel_accuracy", "class_accuracy", "mean_iou"}
        assert all(0 <= value <= 1 for value in result["scores"].values())
    for name in TABLE_2_ROWS:  # each cell is the mean ± sample sd of the two seeds' scores
        for direction, title in (("AtoB", "Table 2"), ("BtoA", "Table 3")):
            values = [r["scores"]["mean_iou"] for r in results["results"]
                      if r["name"] == name and r["direction"] == direction]
            mean, sd = sum(values) / 2, abs(values[0] - values[1]) / 2 ** 0.5
            row = tables.split(f"**{title}")[1].split(f"| {name} | ")[1].splitlines()[0]
            assert row.endswith(f"{mean:.2f} ± {sd:.2f} |"), (name, title, row)
    assert tables.count("class IoU against CycleGAN (ours)") == 2 * 5
    assert "within the seed spread" in tables or "larger than the seed spread" in tables
    assert (out / "figure.png").stat().st_size > 1000
    assert script.main(["--preset", "smoke", "--seeds", "0", "--out", str(out),
                        "--methods", *ABLATIONS, "CycleGAN (ours)"]) == 0
    tables = (out / "tables.md").read_text()
    # the reused run keeps the training time its first call measured (a part of a table made in parts)
    before, after = ([r["seconds"] for r in found["results"] if r["name"] == "CycleGAN (ours)" and r["seed"] == 0]
                     for found in (results, json.loads((out / "tables.json").read_text())))
    assert before[0] > 0 and after == pytest.approx(before, abs=0.5)
    assert _rows(tables, "Table 4") == [*ABLATIONS[1::-1], *ABLATIONS[2:], "CycleGAN (ours)"]  # paper's order
    assert " ± 0.00 |" in tables  # one seed: no spread
    judged = [line for line in tables.splitlines() if "class IoU against" in line]
    assert len(judged) == 2 * 4 and all(line.endswith("one seed, no spread to judge it by") for line in judged)


def test_without_vgg16_weights_the_feature_loss_row_says_so_and_is_not_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CYCLEGAN_VGG16_WEIGHTS", raising=False)
    monkeypatch.setenv("CYCLEGAN_VGG16_URL", closed_port_url("vgg16-397923af.pth"))
    script = _load_script(monkeypatch)
    assert script.main(["--preset", "smoke", "--seeds", "0", "--methods", "Feature loss + GAN",
                        "--out", str(tmp_path / "out")]) == 0
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "| Feature loss + GAN | needs VGG-16 weights | needs VGG-16 weights | needs VGG-16 weights |" in tables
    assert json.loads((tmp_path / "out" / "tables.json").read_text())["results"] == []
    assert not (tmp_path / "out" / "runs").exists()


def test_auto_precision_is_bf16_only_where_the_cpu_has_amx(monkeypatch):
    script = _load_script(monkeypatch)
    monkeypatch.setattr(script.torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert script.training_precision("auto") == ("bf16", "the CPU has AMX")
    monkeypatch.setattr(script.torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert script.training_precision("auto") == ("float32", "the CPU has no AMX")
    assert script.training_precision("bf16") == ("bf16", "as asked")


def _tables(path, precision, scores):
    """A tables.json as paper_tables writes it: {(name, direction): [mean_iou per seed]}."""
    results = [{"name": name, "direction": direction, "seed": seed,
                "scores": {"pixel_accuracy": 0.5, "class_accuracy": 0.5, "mean_iou": value}, "seconds": 1.0}
               for (name, direction), values in scores.items() for seed, value in enumerate(values)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"precision": precision, "seeds": [0, 1, 2], "results": results}))
    return path


def test_two_runs_are_compared_against_their_seed_spread(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("compare_tables", SCRIPT.parent / "compare_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = _tables(tmp_path / "a" / "tables.json", "float32",
                    {("CycleGAN (ours)", "AtoB"): [0.30, 0.32, 0.34], ("CoGAN", "AtoB"): [0.10, 0.10, 0.10]})
    second = _tables(tmp_path / "b" / "tables.json", "bf16",
                     {("CycleGAN (ours)", "AtoB"): [0.31, 0.33, 0.35], ("CoGAN", "AtoB"): [0.20, 0.20, 0.20]})
    assert module.main([str(first), str(second)]) == 0
    comparison = json.loads((tmp_path / "b" / "comparison.json").read_text())
    verdict = {(row["name"], row["metric"]): row["beyond_spread"] for row in comparison["rows"]}
    assert verdict[("CycleGAN (ours)", "mean_iou")] is False  # 0.01 apart, spread 0.02 + 0.02
    assert verdict[("CoGAN", "mean_iou")] is True  # 0.10 apart, no spread
    assert verdict[("CoGAN", "pixel_accuracy")] is False  # equal
    out = capsys.readouterr().out
    assert "| CoGAN | labels -> photo | mean_iou | 0.10 ± 0.00 | 0.20 ± 0.00 | +0.10 | yes |" in out
    assert "1 of 6 scores differ by more than the seed spread between float32 and bf16 training." in out
