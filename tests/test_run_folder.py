"""RunFolder is the one owner of the run folder's layout: the report and checkpoint lookup ask it for every path."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from cyclegan.io.checkpoints import CheckpointError, find_checkpoint
from cyclegan.io.run_folder import RunFolder
from cyclegan.report.html import write_run_report

# A layout unlike the real one in every name, so that any name spelled outside RunFolder shows.
MOVED = {
    "log_file": "journal.jsonl", "losses_plot": "curves.png", "report_file": "report.html",
    "scores_file": "metrics.json", "config_file": "settings.yaml", "samples": "grids", "translations": "gallery",
}


@pytest.fixture
def moved_layout(monkeypatch):
    for name, relative in MOVED.items():
        monkeypatch.setattr(RunFolder, name, property(lambda self, relative=relative: self.root / relative))
    monkeypatch.setattr(RunFolder, "latest_checkpoint", property(lambda self: self.root / "weights" / "last.st"))


def test_the_report_reads_and_writes_where_run_folder_says(tmp_path, moved_layout):
    run = RunFolder(tmp_path / "run")
    run.samples.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(run.samples / "epoch_0003.png")
    run.log_file.write_text(json.dumps({"epoch": 3, "iteration": 1, "step": 7, "time": 1.0, "lr": 2e-4,
                                        "losses": {"gen": 0.5}}) + "\n")
    run.scores_file.write_text(json.dumps({"metric": "L1", "scores": {"AtoB": {"trained": 0.25}}}))
    run.config_file.write_text("model: moved\n")
    run.translations.mkdir()
    run.translations_page.write_text("<html></html>")

    assert write_run_report(run.root) == run.root / "report.html"
    page = (run.root / "report.html").read_text()
    assert not (run.root / "index.html").exists() and (run.root / "curves.png").is_file()
    assert re.findall(r'<img src="([^"]+)"', page) == ["curves.png", "grids/epoch_0003.png"]
    assert 'href="gallery/index.html"' in page and "model: moved" in page and "0.25" in page
    assert "Global step</th><td>7" in page


def test_a_run_folder_checkpoint_is_found_where_run_folder_says(tmp_path, moved_layout):
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    with pytest.raises(CheckpointError, match="holds no weights/last.st; is it a cyclegan run folder"):
        find_checkpoint(run.root)
    run.latest_checkpoint.parent.mkdir()
    run.latest_checkpoint.write_bytes(b"")
    assert find_checkpoint(run.root) == run.latest_checkpoint


def test_sample_grids_are_listed_newest_first_by_number(tmp_path):
    run = RunFolder(tmp_path)
    run.samples.mkdir()
    for name in ("epoch_0002.png", "epoch_0010.png", "epoch_9.png", "notes.png", "epoch_x.png"):
        (run.samples / name).write_bytes(b"")
    assert [(epoch, path.name) for epoch, path in run.sample_files()] == [
        (10, "epoch_0010.png"), (9, "epoch_9.png"), (2, "epoch_0002.png")]
