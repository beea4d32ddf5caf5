"""Tests for the report: sample grids, loss plots and the HTML pages."""

from __future__ import annotations

import json
import math
import re
from html import unescape
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.report.grids import GUTTER, sample_grid, save_png
from cyclegan.report.html import write_run_report, write_translation_page
from cyclegan.report.plots import HEIGHT, WIDTH, plot_losses, read_log


def exact_tensor(levels: np.ndarray) -> torch.Tensor:
    """A [-1, 1] tensor whose conversion to 8-bit gives exactly `levels` (C x H x W integers in 0..255)."""
    return torch.from_numpy(levels.astype(np.float32)) / 127.5 - 1.0


def random_levels(channels: int, height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(channels, height, width))


def make_records(count: int, nan_every: int = 0) -> list[dict]:
    records = []
    for step in range(count):
        losses = {
            "gan_ab": 0.5 + 0.1 * math.sin(step),
            "cycle_a": 2.0 / (1 + step / 100),
            "disc_a": 0.25,
        }
        if nan_every and step % nan_every == 0:
            losses["gan_ab"] = float("nan")
            losses["cycle_a"] = float("inf")
        record = {"epoch": step // 10 + 1, "iteration": step % 10, "step": step, "time": step * 0.5}
        records.append({**record, "lr": 2e-4, "losses": losses})
    return records


# ---------------------------------------------------------------- grids


def test_grid_size_arithmetic() -> None:
    def grid(rows: int, cell_size: int | None = None) -> Image.Image:
        cells = [[torch.zeros(3, 16, 8) for _ in range(3)] for _ in range(rows)]
        return sample_grid(cells, ["real A", "G(A)", "F(G(A))"], cell_size=cell_size)

    two, three = grid(2), grid(3)
    assert two.width == three.width == GUTTER + 3 * (8 + GUTTER)
    header = two.height - GUTTER - 2 * (16 + GUTTER)
    assert header >= 10  # room for a line of title text
    assert three.height == header + GUTTER + 3 * (16 + GUTTER)

    # cell_size scales the longer side (16 -> 64), keeping the aspect ratio (8 -> 32).
    scaled = grid(2, cell_size=64)
    assert scaled.width == GUTTER + 3 * (32 + GUTTER)
    scaled_header = scaled.height - GUTTER - 2 * (64 + GUTTER)
    assert scaled_header >= 10
    assert grid(3, cell_size=64).height == scaled_header + GUTTER + 3 * (64 + GUTTER)


def test_grid_cells_hold_the_exact_images_upscaled_by_nearest_neighbour() -> None:
    levels = [[random_levels(3, 8, 8, seed=row * 10 + column) for column in range(2)] for row in range(2)]
    rows = [[exact_tensor(item) for item in row] for row in levels]
    for row_titles in (None, ["sample 1", "sample 2"]):
        grid = np.asarray(sample_grid(rows, ["real A", "G(A)"], row_titles=row_titles, cell_size=32))
        height, width, _ = grid.shape
        for row in range(2):
            for column in range(2):
                # Cells are laid out from the bottom-right corner, whatever the header and row titles take.
                top = height - (2 - row) * (32 + GUTTER)
                left = width - (2 - column) * (32 + GUTTER)
                cell = grid[top : top + 32, left : left + 32]
                expected = np.repeat(np.repeat(levels[row][column].transpose(1, 2, 0), 4, axis=0), 4, axis=1)
                np.testing.assert_array_equal(cell, expected)
    assert sample_grid(rows, ["a", "b"], row_titles=["x", "y"]).width > sample_grid(rows, ["a", "b"]).width


def test_grid_mixes_grayscale_and_rgb_as_rgb() -> None:
    gray_levels = random_levels(1, 8, 8, seed=1)
    colour_levels = random_levels(3, 8, 8, seed=2)
    grid = sample_grid([[exact_tensor(gray_levels), exact_tensor(colour_levels)]], ["gray", "colour"])
    assert grid.mode == "RGB"
    pixels = np.asarray(grid)
    top = pixels.shape[0] - (8 + GUTTER)
    gray_cell = pixels[top : top + 8, GUTTER : GUTTER + 8]
    colour_cell = pixels[top : top + 8, 2 * GUTTER + 8 : 2 * GUTTER + 16]
    for channel in range(3):
        np.testing.assert_array_equal(gray_cell[:, :, channel], gray_levels[0])
    np.testing.assert_array_equal(colour_cell, colour_levels.transpose(1, 2, 0))


def test_grid_rejects_rows_that_do_not_match_the_titles() -> None:
    with pytest.raises(ValueError, match="column titles"):
        sample_grid([[torch.zeros(3, 4, 4)]], ["a", "b"])


def test_save_png_round_trips(tmp_path: Path) -> None:
    grid = sample_grid([[torch.zeros(3, 4, 4), torch.ones(1, 4, 4)]], ["a", "b"], cell_size=8)
    path = save_png(grid, tmp_path / "deep" / "grid.png")
    with Image.open(path) as saved:
        assert saved.format == "PNG"
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(grid))
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary file left behind


# ---------------------------------------------------------------- log and plots


def test_read_log_skips_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    good = make_records(3)
    text = "".join(json.dumps(record) + "\n" for record in good)
    path.write_text(text + '{"epoch": 1, "iteration": 3, "step": 3, "los')
    assert read_log(path) == good
    path.write_bytes(text.encode() + '{"name": "caf\u00e9"}'.encode()[:-3])  # cut inside a UTF-8 character
    assert read_log(path) == good


def test_read_log_rejects_corruption_before_the_end(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 0}\n{"ste\n{"step": 2}\n')
    with pytest.raises(ValueError, match=":2:"):
        read_log(path)


def coloured_pixels(path: Path) -> int:
    """Pixels clearly away from gray: the curves and markers, not the text, grid or axes."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 60).sum())


@pytest.mark.parametrize(("count", "nan_every"), [(0, 0), (1, 0), (5000, 0), (300, 3)])
def test_plot_losses_writes_a_png_of_the_expected_size(tmp_path: Path, count: int, nan_every: int) -> None:
    path = tmp_path / "losses.png"
    plot_losses(make_records(count, nan_every), path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (WIDTH, HEIGHT)
    if count == 0:
        assert coloured_pixels(path) == 0  # only the "no data yet" text
    else:
        assert coloured_pixels(path) > 20


def test_plot_losses_survives_a_loss_that_is_always_nan(tmp_path: Path) -> None:
    records = [{"step": step, "losses": {"gan_ab": float("nan"), "disc_a": 0.2}} for step in range(5)]
    plot_losses(records, tmp_path / "losses.png")
    assert coloured_pixels(tmp_path / "losses.png") > 0


# ---------------------------------------------------------------- HTML


def image_links(page: str) -> list[str]:
    return [unquote(unescape(link)) for link in re.findall(r'<img[^>]* src="([^"]+)"', page)]


def make_run(run_dir: Path) -> None:
    (run_dir / "samples").mkdir(parents=True)
    log = "".join(json.dumps(record) + "\n" for record in make_records(25))
    (run_dir / "log.jsonl").write_text(log + '{"epoch": 3, "ite')
    for epoch in (2, 10):  # numbered so that a text sort would put epoch 2 first
        Image.new("RGB", (8, 8), (epoch, 0, 0)).save(run_dir / "samples" / f"epoch_{epoch}.png")
    (run_dir / "config.yaml").write_text("model:\n  generator: resnet_9blocks  # <b>bold</b> & more\n")


def test_run_report_links_the_plot_and_samples_newest_first(tmp_path: Path) -> None:
    run_dir = tmp_path / "horse2zebra"
    make_run(run_dir)
    page_path = write_run_report(run_dir)
    assert page_path == run_dir / "index.html"
    page = page_path.read_text(encoding="utf-8")
    assert image_links(page) == ["losses.png", "samples/epoch_10.png", "samples/epoch_2.png"]
    for link in image_links(page):
        assert (run_dir / link).is_file()
    with Image.open(run_dir / "losses.png") as plot:
        assert plot.size == (WIDTH, HEIGHT)
    assert "horse2zebra" in page
    assert "resnet_9blocks" in page and "&lt;b&gt;bold&lt;/b&gt; &amp; more" in page
    assert "translations/index.html" not in page
    assert "http://" not in page and "https://" not in page and "<script" not in page

    (run_dir / "translations").mkdir()
    (run_dir / "translations" / "index.html").write_text("<html></html>")
    assert 'href="translations/index.html"' in write_run_report(run_dir).read_text(encoding="utf-8")


def test_run_report_without_a_log_says_so(tmp_path: Path) -> None:
    page = write_run_report(tmp_path).read_text(encoding="utf-8")
    assert "No training log yet" in page
    assert (tmp_path / "losses.png").is_file()


def test_run_report_escapes_the_run_name(tmp_path: Path) -> None:
    run_dir = tmp_path / "<script>alert('x')"
    make_run(run_dir)
    page = write_run_report(run_dir).read_text(encoding="utf-8")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)" in page


def test_translation_page_links_are_relative_and_exist(tmp_path: Path) -> None:
    inputs, outputs = tmp_path / "data" / "testA", tmp_path / "gallery" / "images"
    inputs.mkdir(parents=True)
    outputs.mkdir(parents=True)
    pairs = []
    for name in ("horse 1.png", "horse#2.png"):  # characters that must be percent-encoded in a link
        Image.new("RGB", (4, 4)).save(inputs / name)
        Image.new("RGB", (4, 4)).save(outputs / name)
        pairs.append((inputs / name, outputs / name))
    out_html = tmp_path / "gallery" / "index.html"
    assert write_translation_page(pairs, out_html, "horse -> zebra <test>") == out_html
    page = out_html.read_text(encoding="utf-8")
    links = image_links(page)
    assert len(links) == 4
    for link in links:
        assert not link.startswith("/") and ":" not in link
        assert (out_html.parent / link).resolve().is_file()
    assert "../data/testA/horse 1.png" in links and "images/horse#2.png" in links
    assert "horse 1.png" in page and "horse -&gt; zebra &lt;test&gt;" in page
    assert 'src="images/horse%232.png"' in page and 'src="../data/testA/horse%201.png"' in page


def test_report_shows_scores_when_the_run_has_them(tmp_path):
    import json as json_module

    from cyclegan.report.html import write_run_report as write_report

    (tmp_path / "scores.json").write_text(json_module.dumps(
        {"metric": "mean L1 <lower>", "scores": {"AtoB": {"trained": 0.25, "untrained": 0.5}}}))
    html = write_report(tmp_path).read_text()
    assert "<h2>Scores</h2>" in html and "mean L1 &lt;lower&gt;" in html
    assert "AtoB" in html and "0.25" in html and "0.5" in html
