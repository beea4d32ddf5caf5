"""Evaluate a folder of generated images with the metrics that fit what is given, and format the result."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from ..io.download import DownloadError
from ..io.images import list_images
from . import MetricError

logger = logging.getLogger(__name__)

PAIRED_KINDS = ("l1", "psnr", "ssim")
ALL_KINDS = (*PAIRED_KINDS, "seg", "fcn", "fid", "kid")
# Below this many images the 2048 x 2048 covariance is rank-deficient (Heusel et al. advise at least 10,000).
FID_RELIABLE_SIZE = 2048


def parse_kinds(text: str) -> set[str]:
    """'l1,psnr,fid' -> {'l1', 'psnr', 'fid'}; 'paired' stands for l1, psnr and ssim."""
    kinds: set[str] = set()
    for item in (part.strip().lower() for part in text.split(",")):
        if item == "paired":
            kinds.update(PAIRED_KINDS)
        elif item in ALL_KINDS:
            kinds.add(item)
        elif item:
            raise MetricError(f"unknown metric {item!r}; choose from {', '.join(ALL_KINDS)} (or 'paired')")
    if not kinds:
        raise MetricError(f"no metric named; choose from {', '.join(ALL_KINDS)}")
    return kinds


def _find_palette(labels_truth: Path) -> Path | None:
    """palette.json beside or above the ground-truth labels, as the data sets store it (ROOT/palette.json)."""
    for folder in (labels_truth, labels_truth.parent):
        if (folder / "palette.json").is_file():
            return folder / "palette.json"
    return None


def _unmatched(generated: Path, real: Path) -> list[Path]:
    stems = {path.stem for path in list_images(real)}
    return [path for path in list_images(generated) if path.stem not in stems]


def evaluate(generated: str | Path, real: str | Path | None = None, labels_truth: str | Path | None = None,
             palette: str | Path | None = None, inception_weights: str | Path | None = None,
             kinds: set[str] | None = None, batch_size: int = 32, device: str = "cpu", kid_subsets: int = 100,
             kid_subset_size: int = 1000, show_progress: bool = False,
             fcn_dataroot: str | Path | None = None) -> dict[str, Any]:
    """Score the images in `generated`; `kinds=None` picks every metric the inputs allow.

    - paired (l1, psnr, ssim): `real` holds a file of the same name for every generated image;
    - seg: `generated` are colour label maps, `labels_truth` their ground truth, with the data set's `palette`
      (default: palette.json in or above `labels_truth`);
    - fcn: `generated` are photos made from the label maps in `labels_truth`, and `fcn_dataroot` names the data set
      whose real photo/label pairs train (once, then cached) the FCN scorer (paper Sec. 5.1.2);
    - fid, kid: `real` is given and torch-fidelity is installed.
    Metrics chosen automatically but impossible are skipped with a note; metrics asked for in `kinds` raise
    MetricError (or DownloadError for missing Inception weights) instead.
    """
    generated = Path(generated)
    real = Path(real) if real is not None else None
    labels_truth = Path(labels_truth) if labels_truth is not None else None
    explicit = kinds is not None
    wanted = set(ALL_KINDS) if kinds is None else set(kinds)
    if unknown := wanted - set(ALL_KINDS):
        raise MetricError(f"unknown metric(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL_KINDS)}")
    list_images(generated)  # a missing folder fails here, with the image module's message
    results: dict[str, Any] = {"generated": str(generated), "real": str(real) if real else None,
                               "labels_truth": str(labels_truth) if labels_truth else None, "notes": []}
    notes: list[str] = results["notes"]

    def skip(reason: str) -> None:
        if explicit:
            raise MetricError(reason)
        notes.append(reason)
        logger.debug(reason)

    paired = wanted & set(PAIRED_KINDS)
    if paired and (explicit or real is not None):
        if real is None:
            skip("paired metrics need --real (the ground-truth images)")
        elif not explicit and (missing := _unmatched(generated, real)):
            skip(f"paired metrics skipped: {len(missing)} generated file(s) have no same-named file in {real}")
        else:
            from .paired import paired_scores

            scores = paired_scores(generated, real)
            results["paired"] = {name: scores[name] for name in PAIRED_KINDS if name in paired}
            results["paired"]["count"] = scores["count"]

    if "fcn" in wanted and (fcn_dataroot is not None or explicit):
        if fcn_dataroot is None or labels_truth is None:
            raise MetricError("the FCN score needs --labels (the label maps the photos were made from) and --fcn "
                              "DATAROOT (the data set whose real photo/label pairs train the scorer)")
        from PIL import Image

        from .fcn_score import fcn_score, get_scorer

        with Image.open(list_images(labels_truth)[0]) as first:
            size = min(first.size)
        scorer = get_scorer(Path(fcn_dataroot), size, show_progress=show_progress)
        results["fcn"] = fcn_score(generated, labels_truth, scorer)
        results["fcn"]["scorer_on_real_photos"] = scorer.real_scores

    if "seg" in wanted and fcn_dataroot is None and (explicit or labels_truth is not None or palette is not None):
        palette = Path(palette) if palette is not None else (labels_truth and _find_palette(labels_truth))
        if labels_truth is None or palette is None:
            found = f"; no palette.json in or above {labels_truth}" if labels_truth is not None else ""
            raise MetricError("segmentation scores need --labels (ground-truth label images) and --palette (the "
                              f"data set's palette.json){found}")
        from .segmentation import score_label_folders

        results["segmentation"] = score_label_folders(generated, labels_truth, palette)
        results["segmentation"]["palette"] = str(palette)

    distribution = wanted & {"fid", "kid"}
    if distribution and (explicit or real is not None):
        from . import fid

        if real is None:
            skip("FID/KID need --real (a folder of real images)")
        elif not fid.torch_fidelity_available():
            skip(f"FID/KID skipped: torch-fidelity is not installed ({fid.INSTALL_HINT})")
        else:
            try:
                scores = fid.fid_kid(generated, real, inception_weights, batch_size, device, kid_subsets,
                                     kid_subset_size, show_progress=show_progress)
            except (DownloadError, MetricError) as error:
                if explicit:
                    raise
                notes.append(f"FID/KID skipped: {error}")
                logger.debug("FID/KID skipped: %s", error)
            else:
                if "fid" not in distribution:
                    del scores["fid"]
                if "kid" not in distribution:
                    for key in ("kid_mean", "kid_std", "kid_subset_size", "kid_subsets"):
                        del scores[key]
                results["fid_kid"] = scores
                if "fid" in scores and min(scores["num_generated"], scores["num_real"]) < FID_RELIABLE_SIZE:
                    notes.append(f"FID from fewer than {FID_RELIABLE_SIZE} images per side is strongly biased "
                                 "upwards; compare only with numbers from equally many images (KID is unbiased)")
    if not any(key in results for key in ("paired", "segmentation", "fcn", "fid_kid")):
        raise MetricError("no metric fits what was given: give --real (paired metrics, FID/KID) and/or --labels "
                          "with --palette (segmentation)" + "".join(f"; {note}" for note in notes))
    return results


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _segmentation_rows(seg: dict[str, Any], prefix: str) -> list[tuple[str, str, str]]:
    count = str(seg["count"])
    rows = [(f"{prefix}Per-pixel acc.", _number(seg["pixel_accuracy"]), count),
            (f"{prefix}Per-class acc.", _number(seg["class_accuracy"]), count),
            (f"{prefix}Class IOU", _number(seg["mean_iou"]), count)]
    return rows + [(f"  IoU {name}", _number(iou), "")
                   for name, iou in zip(seg["classes"], seg["class_iou"], strict=True)]


def format_table(results: dict[str, Any]) -> str:
    """The scores of `evaluate` as an aligned plain-text table, followed by any notes."""
    rows: list[tuple[str, str, str]] = []
    if paired := results.get("paired"):
        count = str(paired["count"])
        for key, label in (("l1", "L1 (on [-1, 1])"), ("psnr", "PSNR (dB)"), ("ssim", "SSIM")):
            if key in paired:
                rows.append((label, _number(paired[key], 2 if key == "psnr" else 4), count))
    for key, prefix in (("segmentation", ""), ("fcn", "FCN ")):
        if seg := results.get(key):
            rows += _segmentation_rows(seg, prefix)
    if scores := results.get("fid_kid"):
        count = f"{scores['num_generated']} vs {scores['num_real']}"
        if "fid" in scores:
            rows.append(("FID", _number(scores["fid"], 2), count))
        if "kid_mean" in scores:
            rows.append(("KID", f"{_number(scores['kid_mean'], 5)} ± {_number(scores['kid_std'], 5)}", count))
    lines = []
    if rows:
        header = ("metric", "value", "images")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
        lines = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}".rstrip() for a, b, c in [header, *rows]]
    else:
        lines.append("no metric could be computed from what was given")
    lines += [f"note: {note}" for note in results.get("notes", [])]
    return "\n".join(lines)
