"""The paper-tables benchmark runs end to end (on its smoke preset) and writes tables shaped like the paper's."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_tables.py"


def _load_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("paper_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "paper_tables", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_paper_tables_smoke_preset(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cache"))
    script = _load_script(monkeypatch)
    assert script.main(["--preset", "smoke", "--out", str(tmp_path / "out")]) == 0
    tables = (tmp_path / "out" / "tables.md").read_text()
    for title in ("Table 2", "Table 3", "Table 4", "Table 5"):
        assert title in tables
    for row in ("CycleGAN (ours)", "pix2pix (paired)", "SimGAN", "GAN alone", "Cycle alone", "GAN + forward cycle",
                "GAN + backward cycle"):
        assert f"| {row}" in tables
    results = json.loads((tmp_path / "out" / "tables.json").read_text())
    assert len(results["results"]) == 2 * 6 + 2  # six two-way methods, pix2pix once per direction
    for result in results["results"]:
        assert set(result["scores"]) == {"pixel_accuracy", "class_accuracy", "mean_iou"}
        assert all(0 <= value <= 1 for value in result["scores"].values())
    assert (tmp_path / "out" / "figure.png").stat().st_size > 1000
