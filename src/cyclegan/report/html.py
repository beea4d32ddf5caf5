"""HTML pages: the run report (summary, loss curves, sample grids, config) and a translation gallery.

The pages are self-contained: inline CSS, no JavaScript, no external resources, and images linked by paths
relative to the page, so a run folder can be copied, zipped or served as it is.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from datetime import datetime
from html import escape
from pathlib import Path
from urllib.parse import quote

from cyclegan.io.atomic import atomic_write_text
from cyclegan.io.images import printable_path
from cyclegan.io.run_folder import RunFolder
from cyclegan.report.plots import plot_losses, read_log

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222;
       background: #f6f6f4; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.6rem; margin: 0 0 4px; word-break: break-all; }
h2 { font-size: 1.15rem; margin: 32px 0 10px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.muted { color: #777; font-size: 0.9rem; }
section, figure.card { background: #fff; border: 1px solid #e2e2e2; border-radius: 6px; padding: 14px 16px; }
table { border-collapse: collapse; font-size: 0.92rem; }
td, th { padding: 3px 14px 3px 0; text-align: left; vertical-align: top; }
th { color: #666; font-weight: 600; }
td.number { font-variant-numeric: tabular-nums; text-align: right; }
.summary { display: flex; flex-wrap: wrap; gap: 36px; }
figure { margin: 0 0 18px; }
figcaption { color: #555; font-size: 0.9rem; margin-top: 6px; }
img { max-width: 100%; height: auto; display: block; }
pre { background: #fff; border: 1px solid #e2e2e2; border-radius: 6px; padding: 12px 14px; overflow-x: auto;
      font-size: 0.85rem; }
.pairs { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 16px; }
.pair { display: flex; gap: 8px; }
.pair figure { flex: 1; margin: 0; }
.pair img { width: 100%; background: #eee; }
.pair figcaption { word-break: break-all; font-size: 0.8rem; }
"""


def write_run_report(run_dir: Path) -> Path:
    """Regenerate the run's loss plot from its log, then write and return its report (RunFolder names both)."""
    run = RunFolder(Path(run_dir))
    records = read_log(run.log_file) if run.log_file.is_file() else []
    name = run.root.resolve().name
    plot_losses(records, run.losses_plot, title=f"Training losses: {name}")

    body = [
        f"<h1>{escape(name)}</h1>",
        f'<p class="muted">CycleGAN run report, written {escape(_now())}</p>',
        "<h2>Summary</h2>",
        _summary(records),
        "<h2>Losses</h2>",
        _figure(run.relative(run.losses_plot), "training losses", None),
    ]
    body += _scores(run.scores_file)
    if run.translations_page.is_file():
        body += [
            "<h2>Translations</h2>",
            f'<p><a href="{_href(run.relative(run.translations_page))}">Open the gallery</a></p>',
        ]
    body.append("<h2>Samples, newest first</h2>")
    samples = run.sample_files()
    if not samples:
        body.append('<p class="muted">No sample grids yet; one is written after each epoch.</p>')
    for epoch, path in samples:
        body.append(_figure(run.relative(path), f"samples after epoch {epoch}", f"epoch {epoch}"))
    body.append("<h2>Configuration</h2>")
    if run.config_file.is_file():
        body.append(f"<pre>{escape(run.config_file.read_text(encoding='utf-8'))}</pre>")
    else:
        body.append(f'<p class="muted">No {escape(run.config_file.name)} in this run folder.</p>')

    atomic_write_text(run.report_file, _page(f"{name}: CycleGAN run", body))
    return run.report_file


def _scores(path: Path) -> list[str]:
    """A table of scores.json ({"metric": ..., "scores": {row: {column: value}}}), if the run has one."""
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        scores: dict[str, dict[str, float]] = data["scores"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return []
    columns = list(dict.fromkeys(column for row in scores.values() for column in row))
    header = "".join(f"<th>{escape(str(column))}</th>" for column in columns)
    rows = "".join(
        f"<tr><td>{escape(str(name))}</td>"
        + "".join(f'<td class="number">{escape(_number(row.get(column)))}</td>' for column in columns)
        + "</tr>"
        for name, row in scores.items()
    )
    return ["<h2>Scores</h2>", f'<section><p class="muted">{escape(str(data.get("metric", "")))}</p>'
            f"<table><tr><th></th>{header}</tr>{rows}</table></section>"]


def write_translation_page(pairs: Sequence[tuple[Path, Path]], out_html: Path, title: str,
                           failures: Sequence[tuple[Path, str]] = (), note: str | None = None) -> Path:
    """Write a gallery with each input image beside its translation; image links are relative to the page.

    `failures`: (input, reason) for inputs that were not translated, listed below the gallery; `note`: a line
    under the title (say, that the job was interrupted). File names that are not UTF-8 are shown with U+FFFD and
    linked by their raw bytes, percent-encoded, so the page stays valid UTF-8 and its links reach the files.
    """
    out_html = Path(out_html)
    folder = out_html.parent.resolve()
    items = []
    for source, output in pairs:
        cells = [
            _pair_cell(Path(path), folder, role) for path, role in ((source, "input"), (output, "output"))
        ]
        items.append(f'<div class="pair">{"".join(cells)}</div>')
    title = printable_path(title)
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">{len(pairs)} image{"s" if len(pairs) != 1 else ""}: input left, output right</p>',
    ]
    if note:
        body.append(f"<p><strong>{escape(printable_path(note))}</strong></p>")
    body.append(f'<div class="pairs">{"".join(items)}</div>' if items else '<p class="muted">No images.</p>')
    if failures:
        rows = "".join(f"<tr><td>{escape(printable_path(source))}</td><td>{escape(printable_path(reason))}</td></tr>"
                       for source, reason in failures)
        body += [f"<h2>Not translated ({len(failures)})</h2>",
                 f"<section><table><tr><th>Input</th><th>Reason</th></tr>{rows}</table></section>"]
    atomic_write_text(out_html, _page(title, body))
    return out_html


def _pair_cell(path: Path, folder: Path, role: str) -> str:
    # os.path.relpath, unlike Path.relative_to, also reaches files outside the page's folder ("../...").
    relative = Path(os.path.relpath(path.resolve(), folder)).as_posix()
    href = _href(relative)
    label = f"{role}: {printable_path(path.name)}"
    return (
        f'<figure><a href="{href}"><img src="{href}" alt="{escape(label)}" loading="lazy"></a>'
        f"<figcaption>{escape(label)}</figcaption></figure>"
    )


def _summary(records: list[dict]) -> str:
    if not records:
        return '<section><p class="muted">No training log yet.</p></section>'
    last = records[-1]
    facts = [
        ("Epoch", _text(last.get("epoch"))),
        ("Iteration", _text(last.get("iteration"))),
        ("Global step", _text(last.get("step"))),
        ("Elapsed", _duration(last.get("time"))),
        ("Learning rate", _number(last.get("lr"))),
        ("Records logged", str(len(records))),
    ]
    facts_html = "".join(f"<tr><th>{escape(key)}</th><td>{escape(value)}</td></tr>" for key, value in facts)

    # The last record is a single noisy iteration; the mean over its epoch is the steadier figure.
    epoch = last.get("epoch")
    in_epoch = [record for record in records if record.get("epoch") == epoch]
    last_losses = last.get("losses") if isinstance(last.get("losses"), dict) else {}
    rows = []
    for loss_name, last_value in last_losses.items():
        values = [(record.get("losses") or {}).get(loss_name) for record in in_epoch]
        finite = [value for value in values if _is_finite(value)]
        mean = sum(finite) / len(finite) if finite else None
        rows.append(
            f'<tr><td>{escape(str(loss_name))}</td><td class="number">{escape(_number(last_value))}'
            f'</td><td class="number">{escape(_number(mean))}</td></tr>'
        )
    header = f"<tr><th>Loss</th><th>Last</th><th>Mean, epoch {escape(_text(epoch))}</th></tr>"
    losses_html = (
        f"<table>{header}{''.join(rows)}</table>"
        if rows
        else '<p class="muted">No losses in the last record.</p>'
    )
    return f'<section class="summary"><table>{facts_html}</table>{losses_html}</section>'


def _figure(relative: str, alt: str, caption: str | None) -> str:
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure class="card"><img src="{_href(relative)}" alt="{escape(alt)}">{caption_html}</figure>'


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )


def _href(relative_posix: str) -> str:
    """A relative link: the path's bytes (UTF-8, or the raw bytes of a name that is not UTF-8) percent-encoded
    (spaces, '#', '?'), then escaped for the attribute."""
    return escape(quote(os.fsencode(relative_posix)), quote=True)


def _is_finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: object) -> str:
    return "n/a" if value is None else str(value)


def _number(value: object) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.4g}"
    return _text(value)


def _duration(seconds: object) -> str:
    if not _is_finite(seconds):
        return "n/a"
    total = int(seconds)
    hours, remainder = divmod(total, 3600)
    minutes, secs = divmod(remainder, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _now() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
