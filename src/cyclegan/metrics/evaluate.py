"""Evaluate a folder of generated images with the metrics that fit what is given, and format the result.

The metrics are registered here, in table order (see `registry.py` for the fields and the skip-or-raise rule);
their modules are imported when a metric runs, so that importing this one stays light.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..io.download import DownloadError
from ..io.images import list_images
from . import MetricError
from .registry import METRICS, Inputs, Metric, Row, expand_names, nothing_fits, register_metric, run_metric

# Below this many images the 2048 x 2048 covariance is rank-deficient (Heusel et al. advise at least 10,000).
FID_RELIABLE_SIZE = 2048
KID_KEYS = ("kid_mean", "kid_std", "kid_subset_size", "kid_subsets")


# --- paired: L1, PSNR, SSIM against same-named ground-truth images ---------------------------------------------

def _names_match(inputs: Inputs) -> str | None:
    from .paired import match_by_stem

    try:
        match_by_stem(list_images(inputs.generated), list_images(inputs.real))
    except MetricError as error:
        return str(error)
    return None


def _paired(inputs: Inputs, asked: tuple[str, ...]) -> dict[str, Any]:
    from .paired import paired_scores

    scores = paired_scores(inputs.generated, inputs.real)
    return {**{name: scores[name] for name in asked}, "count": scores["count"]}


def _paired_rows(scores: dict[str, Any]) -> list[Row]:
    shown = {"l1": ("L1 (on [-1, 1])", 4), "psnr": ("PSNR (dB)", 2), "ssim": ("SSIM", 4)}
    return [Row(label, scores[key], str(scores["count"]), digits)
            for key, (label, digits) in shown.items() if key in scores]


register_metric(Metric(
    section="paired", names=("l1", "psnr", "ssim"), alias="paired", title="paired metrics",
    needs={"real": "the ground-truth images"}, tried_when=("real",),
    ready=_names_match, compute=_paired, rows=_paired_rows))


# --- segmentation scores of generated label maps (paper Sec. 5.1.2) ---------------------------------------------

def _segmentation(inputs: Inputs, asked: tuple[str, ...]) -> dict[str, Any]:
    from .segmentation import score_label_folders

    return {**score_label_folders(inputs.generated, inputs.labels, inputs.palette), "palette": str(inputs.palette)}


def _segmentation_rows(seg: dict[str, Any], prefix: str = "") -> list[Row]:
    count = str(seg["count"])
    rows = [Row(f"{prefix}Per-pixel acc.", seg["pixel_accuracy"], count),
            Row(f"{prefix}Per-class acc.", seg["class_accuracy"], count),
            Row(f"{prefix}Class IOU", seg["mean_iou"], count)]
    return rows + [Row(f"  IoU {name}", iou, "") for name, iou in zip(seg["classes"], seg["class_iou"], strict=True)]


register_metric(Metric(
    section="segmentation", names=("seg",), title="segmentation scores",
    needs={"labels": "ground-truth label images", "palette": "the data set's palette.json"},
    tried_when=("labels", "palette"),
    excluded_by={"fcn_dataroot": "GENERATED are then photos (for the FCN score), not label maps"},
    compute=_segmentation, rows=_segmentation_rows))


# --- FCN score of generated photos (paper Sec. 5.1.2) ------------------------------------------------------------

def _fcn(inputs: Inputs, asked: tuple[str, ...]) -> dict[str, Any]:
    from PIL import Image

    from .fcn_score import fcn_score, get_scorer

    labels = list_images(inputs.labels)
    if not labels:
        raise MetricError(f"no label maps in {inputs.labels}")
    with Image.open(labels[0]) as first:
        size = min(first.size)
    scorer = get_scorer(inputs.fcn_dataroot, size, show_progress=inputs.show_progress)
    return {**fcn_score(inputs.generated, inputs.labels, scorer), "scorer_on_real_photos": scorer.real_scores}


def _fcn_rows(scores: dict[str, Any]) -> list[Row]:
    return _segmentation_rows(scores, prefix="FCN ")


register_metric(Metric(
    section="fcn", names=("fcn",), title="FCN scores",
    needs={"labels": "the label maps the photos were made from",
           "fcn_dataroot": "the data set whose real photo/label pairs train the scorer"},
    tried_when=("fcn_dataroot",),
    compute=_fcn, rows=_fcn_rows))


# --- FID and KID against a folder of real images ------------------------------------------------------------------

def _torch_fidelity_installed(inputs: Inputs) -> str | None:
    from . import fid

    return None if fid.torch_fidelity_available() else f"torch-fidelity is not installed ({fid.INSTALL_HINT})"


def _fid_kid(inputs: Inputs, asked: tuple[str, ...]) -> dict[str, Any]:
    from . import fid

    scores = fid.fid_kid(inputs.generated, inputs.real, inputs.inception_weights, inputs.batch_size, inputs.device,
                         inputs.kid_subsets, inputs.kid_subset_size, show_progress=inputs.show_progress)
    dropped = (() if "fid" in asked else ("fid",)) + (() if "kid" in asked else KID_KEYS)
    return {key: value for key, value in scores.items() if key not in dropped}


def _fid_kid_rows(scores: dict[str, Any]) -> list[Row]:
    count = f"{scores['num_generated']} vs {scores['num_real']}"
    rows = [Row("FID", scores["fid"], count, 2)] if "fid" in scores else []
    if "kid_mean" in scores:
        rows.append(Row("KID", scores["kid_mean"], count, 5, spread=scores["kid_std"]))
    return rows


def _fid_caveats(scores: dict[str, Any]) -> list[str]:
    if "fid" in scores and min(scores["num_generated"], scores["num_real"]) < FID_RELIABLE_SIZE:
        return [f"FID from fewer than {FID_RELIABLE_SIZE} images per side is strongly biased upwards; compare only "
                "with numbers from equally many images (KID is unbiased)"]
    return []


register_metric(Metric(
    section="fid_kid", names=("fid", "kid"), title="FID/KID",
    needs={"real": "a folder of real images"}, tried_when=("real",),
    ready=_torch_fidelity_installed, compute=_fid_kid, rows=_fid_kid_rows, caveats=_fid_caveats,
    unavailable=(DownloadError, MetricError)))  # Inception weights missing, or too few images: skip when automatic


# --- evaluate and the table ---------------------------------------------------------------------------------------

def _inputs(generated: str | Path, real: str | Path | None, labels: str | Path | None, palette: str | Path | None,
            fcn_dataroot: str | Path | None, **settings: Any) -> Inputs:
    """Paths as Paths; the palette defaults to palette.json beside or above the labels (ROOT/palette.json)."""
    def path(value: str | Path | None) -> Path | None:
        return Path(value) if value is not None else None

    labels_path, not_found = path(labels), {}
    found = path(palette)
    if found is None and labels_path is not None:
        found = next((folder / "palette.json" for folder in (labels_path, labels_path.parent)
                      if (folder / "palette.json").is_file()), None)
        if found is None:
            not_found["palette"] = f"no palette.json in or above {labels_path}"
    return Inputs(Path(generated), path(real), labels_path, found, path(fcn_dataroot), not_found=not_found,
                  **settings)


def evaluate(generated: str | Path, real: str | Path | None = None, labels_truth: str | Path | None = None,
             palette: str | Path | None = None, inception_weights: str | Path | None = None,
             metrics: Iterable[str] | None = None, batch_size: int = 32, device: str = "cpu",
             kid_subsets: int = 100, kid_subset_size: int = 1000, show_progress: bool = False,
             fcn_dataroot: str | Path | None = None) -> dict[str, Any]:
    """Score the images in `generated` with the registered metrics; `metrics=None` picks every one that fits.

    - paired (l1, psnr, ssim): `real` holds a file of the same name for every generated image;
    - seg: `generated` are colour label maps, `labels_truth` their ground truth, with the data set's `palette`
      (default: palette.json in or above `labels_truth`);
    - fcn: `generated` are photos made from the label maps in `labels_truth`, and `fcn_dataroot` names the data set
      whose real photo/label pairs train (once, then cached) the FCN scorer (paper Sec. 5.1.2);
    - fid, kid: `real` is given and torch-fidelity is installed.
    Metrics chosen automatically but impossible are skipped with a note; metrics named in `metrics` (aliases such
    as 'paired' allowed) raise MetricError (or DownloadError for missing Inception weights) instead. Returns the
    inputs, "notes" and one section per computed metric; `table_rows` turns it into rows.
    """
    wanted = expand_names(metrics) if metrics is not None else None
    inputs = _inputs(generated, real, labels_truth, palette, fcn_dataroot, inception_weights=inception_weights,
                     batch_size=batch_size, device=device, kid_subsets=kid_subsets,
                     kid_subset_size=kid_subset_size, show_progress=show_progress)
    list_images(inputs.generated)  # a missing folder fails here, with the image module's message
    results: dict[str, Any] = {"generated": str(inputs.generated), "real": str(real) if real else None,
                               "labels_truth": str(labels_truth) if labels_truth else None, "notes": []}
    for metric in METRICS.values():
        asked = tuple(name for name in metric.names if wanted is None or name in wanted)
        if not asked:
            continue
        section = run_metric(metric, inputs, asked, wanted is not None, results["notes"])
        if section is not None:
            results[metric.section] = section
            results["notes"] += metric.caveats(section)
    if not any(section in results for section in METRICS):
        raise nothing_fits(results["notes"])
    return results


def table_rows(results: dict[str, Any]) -> list[Row]:
    """The rows of every computed metric in `results` (from `evaluate`), in registry order."""
    return [row for section, metric in METRICS.items() if section in results for row in metric.rows(results[section])]


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def format_table(results: dict[str, Any]) -> str:
    """The scores of `evaluate` as an aligned plain-text table, followed by any notes."""
    rows = [(row.label, _number(row.value, row.digits) + ("" if row.spread is None else
                                                           f" ± {_number(row.spread, row.digits)}"), row.images)
            for row in table_rows(results)]
    if rows:
        header = ("metric", "value", "images")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
        lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}".rstrip() for a, b, c in [header, *rows]]
    else:
        lines = ["no metric could be computed from what was given"]
    return "\n".join(lines + [f"note: {note}" for note in results.get("notes", [])])
