"""Segmentation scores as in the paper's Cityscapes evaluation (Sec. 5.1.2): per-pixel accuracy, per-class
accuracy and mean class IoU, from colour label images mapped to the nearest palette colour, with an ignore label.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io.images import list_images, load_image
from . import MetricError
from .paired import match_by_stem

IGNORE_INDEX = 255  # Cityscapes' trainId for "void"
# Ground-truth colours farther than this (Euclidean RGB) from every class colour are void, e.g. Cityscapes'
# unlabelled black; compression noise on label images stays well below it.
TRUTH_MAX_DISTANCE = 30.0
_CHUNK = 1 << 14  # distinct colours scored at once


def load_palette(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Class names and K x 3 uint8 colours from palette.json (or a data-set folder holding it), ordered by id.

    The format is {"classes": [{"id": 0, "name": "road", "color": [128, 64, 128]}, ...]}; ids must be 0 .. K-1.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "palette.json"
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))["classes"]
        classes = sorted(classes, key=lambda entry: int(entry["id"]))
        names = [str(entry["name"]) for entry in classes]
        colors = np.array([entry["color"] for entry in classes], dtype=np.int64)
    except FileNotFoundError:
        raise MetricError(f"{path} does not exist; give the data set's palette.json") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise MetricError(f"{path} is not a palette file ({error!r}); expected "
                          '{"classes": [{"id": 0, "name": ..., "color": [r, g, b]}, ...]}') from None
    ids = [int(entry["id"]) for entry in classes]
    if ids != list(range(len(ids))) or colors.shape != (len(ids), 3) or colors.min() < 0 or colors.max() > 255:
        raise MetricError(f"{path}: class ids must be 0 .. K-1 and colours three values in 0 .. 255")
    return names, colors.astype(np.uint8)


def colors_to_labels(image: np.ndarray, colors: np.ndarray, ignore_index: int = IGNORE_INDEX,
                     max_distance: float | None = None) -> np.ndarray:
    """H x W x 3 colour image to H x W int64 class ids: the nearest palette colour (Euclidean in RGB).

    Pixels farther than `max_distance` from every palette colour get `ignore_index`. Ties go to the lower id.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 colour image, got shape {image.shape}")
    # Score each distinct colour once, in chunks, so large images need little memory.
    packed = image.reshape(-1, 3).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1], dtype=np.int64)
    distinct, inverse = np.unique(packed, return_inverse=True)
    rgb = np.stack([distinct >> 16, (distinct >> 8) & 255, distinct & 255], axis=1)
    palette = colors.reshape(1, -1, 3).astype(np.int64)
    labels = np.empty(len(distinct), dtype=np.int64)
    for start in range(0, len(distinct), _CHUNK):
        squared = ((rgb[start:start + _CHUNK, None, :] - palette) ** 2).sum(axis=2)  # exact in integers
        chunk = squared.argmin(axis=1)
        if max_distance is not None:
            chunk[squared.min(axis=1) > max_distance**2] = ignore_index
        labels[start:start + _CHUNK] = chunk
    return labels[inverse.reshape(-1)].reshape(image.shape[:2])


def confusion_matrix(predicted: np.ndarray, truth: np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """K x K pixel counts, rows = true class, columns = predicted class; pixels whose truth is ignored are skipped."""
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted labels {predicted.shape} and truth {truth.shape} differ in shape")
    keep = truth != ignore_index
    truth, predicted = truth[keep].astype(np.int64), predicted[keep].astype(np.int64)
    for name, labels in (("truth", truth), ("predicted", predicted)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} labels must be in 0 .. {num_classes - 1} (or {ignore_index} in the truth)")
    counts = np.bincount(truth * num_classes + predicted, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def segmentation_scores(confusion: np.ndarray) -> dict[str, float | list[float | None]]:
    """Per-pixel accuracy, per-class accuracy, mean IoU and per-class IoU from a confusion matrix (rows = truth).

    Per-class accuracy averages over classes present in the truth; mean IoU over classes present in the truth or
    the prediction. `class_iou` holds None for a class in neither.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    if total == 0:
        raise MetricError("no labelled pixels to score (every ground-truth pixel is ignored)")
    correct = np.diag(confusion)
    true_counts, predicted_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    union = true_counts + predicted_counts - correct
    present = true_counts > 0
    seen = union > 0
    class_iou = [float(c / u) if u > 0 else None for c, u in zip(correct, union, strict=True)]
    return {
        "pixel_accuracy": float(correct.sum() / total),
        "class_accuracy": float(np.mean(correct[present] / true_counts[present])),
        "mean_iou": float(np.mean(correct[seen] / union[seen])),
        "class_iou": class_iou,
    }


def _load_colors(path: Path) -> np.ndarray:
    return np.asarray(load_image(path, 3), dtype=np.uint8)


def score_label_folders(predicted_folder: str | Path, truth_folder: str | Path,
                        palette: str | Path | tuple[list[str], np.ndarray], ignore_index: int = IGNORE_INDEX,
                        truth_max_distance: float | None = TRUTH_MAX_DISTANCE) -> dict:
    """Segmentation scores of colour label images against ground-truth label images of the same stem.

    Every predicted pixel takes its nearest palette colour (as the paper maps generated label images to classes);
    ground-truth pixels farther than `truth_max_distance` from every class colour are ignored. The confusion
    matrix is summed over all images before scoring.
    """
    names, colors = load_palette(palette) if isinstance(palette, (str, Path)) else palette
    pairs = match_by_stem(list_images(predicted_folder), list_images(truth_folder), "ground-truth label")
    confusion = np.zeros((len(names), len(names)), dtype=np.int64)
    for predicted_path, truth_path in pairs:
        predicted, truth = _load_colors(predicted_path), _load_colors(truth_path)
        if predicted.shape != truth.shape:
            raise MetricError(f"{predicted_path} is {predicted.shape[1]}x{predicted.shape[0]} but {truth_path} is "
                              f"{truth.shape[1]}x{truth.shape[0]}; label images must have the same size")
        confusion += confusion_matrix(colors_to_labels(predicted, colors, ignore_index),
                                      colors_to_labels(truth, colors, ignore_index, truth_max_distance),
                                      len(names), ignore_index)
    scores = segmentation_scores(confusion)
    scores.update(classes=names, count=len(pairs), confusion=confusion.tolist())
    return scores
