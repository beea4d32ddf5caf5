"""The FCN score's instrument: a small segmentation network trained on real photo -> label pairs, cached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.data.synthetic import PALETTE, render_scene, write_dataset
from cyclegan.io.download import cache_dir
from cyclegan.metrics import MetricError
from cyclegan.metrics import fcn_score as fcn
from cyclegan.metrics.segmentation import colors_to_labels, load_palette

SIZE = 32
STEPS = 300  # measured: real-photo pixel accuracy 0.84, mean IoU 0.43 at 32 px (40 scenes), about 9 s on one core


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Shared CI cores: one thread is faster than two contended ones, and fixes the thread count for determinism.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    # 20 scenes per domain: the scorer trains on both domains' scenes, 40 pairs; 8 paired test scenes.
    return write_dataset(tmp_path_factory.mktemp("data") / "streets", size=SIZE, n_train=20, n_test=8, seed=3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CYCLEGAN_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield cache_dir()


@pytest.fixture(scope="module")
def scorer(dataset, cache) -> fcn.Scorer:
    return fcn.get_scorer(dataset, SIZE, show_progress=False, steps=STEPS)


def test_network_is_small_and_keeps_the_image_size():
    network = fcn.SegmentationNet(num_classes=8)
    assert sum(parameter.numel() for parameter in network.parameters()) < 150_000
    assert network(torch.zeros(2, 3, 32, 32)).shape == (2, 8, 32, 32)
    assert network(torch.zeros(1, 3, 36, 44)).shape == (1, 8, 36, 44)  # not a multiple of 8


def test_scorer_segments_real_held_out_photos_well(scorer):
    assert not scorer.from_cache
    assert scorer.real_scores["count"] == 8
    assert scorer.real_scores["pixel_accuracy"] > 0.7  # always guessing the commonest class gives about 0.4
    assert scorer.real_scores["mean_iou"] > 0.3


def test_fcn_score_of_real_photos_beats_noise_and_shuffled_labels(scorer, dataset, tmp_path):
    real = fcn.fcn_score(dataset / "testB", dataset / "testA", scorer)
    assert real["pixel_accuracy"] == pytest.approx(scorer.real_scores["pixel_accuracy"])
    assert real["count"] == 8 and real["classes"] == scorer.class_names
    assert set(real) >= {"pixel_accuracy", "class_accuracy", "mean_iou"}

    rng = np.random.default_rng(0)
    noise, shuffled = tmp_path / "noise", tmp_path / "shuffled"
    noise.mkdir()
    shuffled.mkdir()
    labels = sorted((dataset / "testA").glob("*.png"))
    for position, path in enumerate(labels):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(noise / path.name)
        shutil.copy(labels[(position + 1) % len(labels)], shuffled / path.name)  # another scene's labels
    for folder, labels_folder in ((noise, dataset / "testA"), (dataset / "testB", shuffled)):
        worse = fcn.fcn_score(folder, labels_folder, scorer)
        assert worse["pixel_accuracy"] < real["pixel_accuracy"] - 0.15
        assert worse["mean_iou"] < real["mean_iou"] - 0.1


def test_fcn_score_names_photos_without_labels(scorer, dataset, tmp_path):
    Image.new("RGB", (SIZE, SIZE)).save(tmp_path / "unknown.png")
    with pytest.raises(MetricError, match="unknown"):
        fcn.fcn_score(tmp_path, dataset / "testA", scorer)


def test_scorer_is_cached_and_reused(scorer, dataset, cache, monkeypatch):
    weights = cache / "fcn_scorers" / f"{scorer.fingerprint}.safetensors"
    metadata = json.loads(weights.with_suffix(".json").read_text(encoding="utf-8"))
    assert metadata["size"] == SIZE and metadata["classes"] == scorer.class_names
    assert metadata["real_scores"] == scorer.real_scores and metadata["training_pairs"] == 40

    def no_training(*args, **kwargs):
        raise AssertionError("the cached scorer should have been reused")

    monkeypatch.setattr(fcn, "train_scorer", no_training)
    again = fcn.get_scorer(dataset, SIZE, show_progress=False, steps=STEPS)
    assert again.from_cache and again.fingerprint == scorer.fingerprint
    assert again.real_scores == scorer.real_scores
    for name, tensor in scorer.network.state_dict().items():
        assert torch.equal(again.network.state_dict()[name], tensor)
    # Another budget or size is another instrument: it is not taken from this cache entry.
    with pytest.raises(AssertionError, match="reused"):
        fcn.get_scorer(dataset, SIZE, show_progress=False, steps=STEPS + 1)


def test_a_damaged_cache_entry_is_retrained(scorer, dataset, cache, monkeypatch):
    folder = cache / "damaged"
    shutil.copytree(cache / "fcn_scorers", folder)
    (folder / f"{scorer.fingerprint}.safetensors").write_bytes(b"not safetensors")
    trained = []
    monkeypatch.setattr(fcn, "train_scorer", lambda *args, **kwargs: trained.append(1) or scorer.network)
    again = fcn.get_scorer(dataset, SIZE, cache=folder, show_progress=False, steps=STEPS)
    assert trained == [1] and not again.from_cache


def _pairs(count: int) -> tuple[list[Image.Image], list[np.ndarray]]:
    colors = np.array(list(PALETTE.values()), dtype=np.uint8)
    rendered = [render_scene(5, index, SIZE) for index in range(count)]
    return [photo for _, photo in rendered], [colors_to_labels(np.asarray(labels), colors) for labels, _ in rendered]


def test_training_is_deterministic_for_a_seed():
    photos, labels = _pairs(6)
    first = fcn.train_scorer(photos, labels, len(PALETTE), steps=8, seed=1, batch_size=4)
    second = fcn.train_scorer(photos, labels, len(PALETTE), steps=8, seed=1, batch_size=4)
    other = fcn.train_scorer(photos, labels, len(PALETTE), steps=8, seed=2, batch_size=4)
    first_state, second_state = first.state_dict(), second.state_dict()
    assert all(torch.equal(first_state[name], second_state[name]) for name in first_state)
    assert not torch.equal(first_state["classifier.weight"], other.state_dict()["classifier.weight"])
    assert not first.training  # returned ready to evaluate


def test_other_data_sets_train_on_a_paired_folder(dataset, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(dataset / "palette.json", other / "palette.json")  # no builtin.json: not the built-in data set
    with pytest.raises(MetricError, match="train_pairs"):
        fcn.get_scorer(other, SIZE, cache=tmp_path / "cache", show_progress=False)
    scorer = fcn.get_scorer(other, SIZE, cache=tmp_path / "cache", show_progress=False, steps=4,
                            train_pairs=(dataset / "testB", dataset / "testA"))
    assert scorer.real_scores is None  # no held-out pairs given
    assert scorer.class_names == load_palette(dataset)[0]
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1


def test_segment_writes_palette_coloured_label_maps(scorer, dataset, tmp_path):
    written = fcn.segment(dataset / "testB", scorer, tmp_path / "segmented")
    assert [path.name for path in written] == sorted(path.name for path in (dataset / "testB").glob("*.png"))
    colours = np.asarray(Image.open(written[0]).convert("RGB")).reshape(-1, 3)
    assert {tuple(colour) for colour in colours} <= {tuple(colour) for colour in scorer.colors}
