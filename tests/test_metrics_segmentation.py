import json

import numpy as np
import pytest
from PIL import Image

from cyclegan.metrics import MetricError
from cyclegan.metrics.segmentation import (
    colors_to_labels,
    confusion_matrix,
    load_palette,
    score_label_folders,
    segmentation_scores,
)

COLORS = np.array([[128, 64, 128], [70, 70, 70], [0, 0, 142]], dtype=np.uint8)  # road, building, car


def write_palette(folder, classes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "palette.json").write_text(json.dumps({"classes": classes}))
    return folder / "palette.json"


def test_load_palette_from_file_or_folder_in_id_order(tmp_path):
    path = write_palette(tmp_path / "data", [{"id": 1, "name": "building", "color": [70, 70, 70]},
                                             {"id": 0, "name": "road", "color": [128, 64, 128]}])
    for source in (path, tmp_path / "data", str(path)):
        names, colors = load_palette(source)
        assert names == ["road", "building"]
        assert colors.dtype == np.uint8 and colors.tolist() == [[128, 64, 128], [70, 70, 70]]
    bad = write_palette(tmp_path / "bad", [{"id": 0, "name": "road", "color": [1, 2, 3]},
                                           {"id": 2, "name": "car", "color": [4, 5, 6]}])
    with pytest.raises(MetricError, match="0 .. K-1"):
        load_palette(bad)
    with pytest.raises(MetricError, match="does not exist"):
        load_palette(tmp_path / "missing")


def test_colors_to_labels_nearest_colour_with_noise_and_ignore():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (20, 30))
    noisy = COLORS[truth].astype(np.int64) + rng.integers(-12, 13, (20, 30, 3))
    image = np.clip(noisy, 0, 255).astype(np.uint8)
    assert (colors_to_labels(image, COLORS) == truth).all()
    assert colors_to_labels(image, COLORS).dtype == np.int64

    image[0, 0] = (255, 255, 0)  # far from every class colour
    labels = colors_to_labels(image, COLORS, ignore_index=99, max_distance=40.0)
    assert labels[0, 0] == 99 and (labels.ravel()[1:] == truth.ravel()[1:]).all()
    # Exactly at max_distance still counts; the nearest wins, ties go to the lower id.
    edge = np.array([[[128, 64, 168]]], dtype=np.uint8)
    assert colors_to_labels(edge, COLORS, max_distance=40.0)[0, 0] == 0
    tie = np.array([[[10, 10, 10]]], dtype=np.uint8)
    assert colors_to_labels(tie, np.array([[0, 10, 10], [20, 10, 10]], dtype=np.uint8))[0, 0] == 0


def test_confusion_matrix_rows_truth_columns_prediction_skips_ignored():
    truth = np.array([[0, 0, 1], [1, 2, 255]])
    predicted = np.array([[0, 1, 1], [2, 2, 0]])
    expected = [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert confusion_matrix(predicted, truth, 3).tolist() == expected
    assert confusion_matrix(predicted, truth, 3).dtype == np.int64
    with pytest.raises(ValueError, match="predicted labels"):
        confusion_matrix(np.array([3]), np.array([0]), 3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(predicted[:1], truth, 3)


def test_segmentation_scores_exact_values():
    # class 2 is predicted but absent from the truth; class 3 appears nowhere
    confusion = np.array([[3, 1, 0, 0], [0, 2, 2, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    scores = segmentation_scores(confusion)
    assert scores["pixel_accuracy"] == pytest.approx(5 / 8)
    assert scores["class_accuracy"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert scores["class_iou"][:3] == pytest.approx([3 / 4, 2 / 5, 0.0])
    assert scores["class_iou"][3] is None
    assert scores["mean_iou"] == pytest.approx((3 / 4 + 2 / 5 + 0.0) / 3)
    with pytest.raises(MetricError, match="no labelled pixels"):
        segmentation_scores(np.zeros((2, 2)))


def test_score_label_folders_ignores_void_truth_and_sums_over_images(tmp_path):
    palette = write_palette(tmp_path / "data", [{"id": i, "name": n, "color": c.tolist()}
                                                for i, (n, c) in enumerate(zip(("road", "building", "car"),
                                                                               COLORS, strict=True))])
    predicted, truth = tmp_path / "fake", tmp_path / "data" / "testA"
    predicted.mkdir()
    truth.mkdir()
    truth_a = np.zeros((4, 4), dtype=np.int64)
    truth_a[:, 2:] = 1
    predicted_a = truth_a.copy()
    predicted_a[0, 0] = 2  # one road pixel predicted as car
    truth_b = np.full((4, 4), 2)
    predicted_b = truth_b.copy()
    truth_rgb_b = COLORS[truth_b]
    truth_rgb_b[3] = 0  # black row: void, far from every class colour
    predicted_b[3] = 0  # whatever is predicted there is not counted
    Image.fromarray(COLORS[truth_a]).save(truth / "a.png")
    Image.fromarray(truth_rgb_b).save(truth / "b.png")
    Image.fromarray(np.clip(COLORS[predicted_a].astype(int) + 7, 0, 255).astype(np.uint8)).save(predicted / "a.png")
    Image.fromarray(COLORS[predicted_b]).save(predicted / "b.png")
    scores = score_label_folders(predicted, truth, palette)
    assert scores["confusion"] == [[7, 0, 1], [0, 8, 0], [0, 0, 12]]
    assert scores["pixel_accuracy"] == pytest.approx(27 / 28)
    assert scores["class_accuracy"] == pytest.approx((7 / 8 + 1 + 1) / 3)
    assert scores["class_iou"] == pytest.approx([7 / 8, 1.0, 12 / 13])
    assert scores["classes"] == ["road", "building", "car"] and scores["count"] == 2
    Image.fromarray(COLORS[predicted_b]).save(predicted / "c.png")
    with pytest.raises(MetricError, match="c.png"):
        score_label_folders(predicted, truth, tmp_path / "data")
