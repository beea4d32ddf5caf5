"""FID/KID: torch-fidelity's extractor against the pytorch-fid fixture, our PNG pipeline against torch-fidelity's
own folder pipeline, and the distances against independent NumPy/SciPy computations."""

import importlib.util
import socket
import sys

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image

from cyclegan.io.download import DownloadError
from cyclegan.metrics import MetricError
from cyclegan.metrics import fid as fid_module
from cyclegan.metrics.fid import (
    frechet_distance,
    inception_features,
    kernel_inception_distance,
    load_inception,
    resolve_inception_weights,
)

from .helpers import SHARED

FIXTURE = SHARED / "fixtures" / "fid"
NAMES = ("small64", "native299", "rect128x96")


def save_seeded_weights(path):
    """The fixture's stand-in Inception weights, saved as a weights file (same keys and shapes as the real one)."""
    spec = importlib.util.spec_from_file_location("seeded_weights", FIXTURE / "seeded_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save(module.seeded_state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_seeded_weights(tmp_path_factory.mktemp("inception") / "seeded.pth")


@pytest.fixture(scope="module")
def extractor(weights):
    return load_inception(weights)


def pytorch_fid_features(extractor, images):
    """Run torch-fidelity's network on inputs preprocessed as pytorch-fid does (the fixture's protocol): bilinear
    resize with align_corners=False on [0, 1] floats, then 2x - 1. A pre-hook swaps the first layer's input."""
    prepared = 2 * F.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False) - 1
    hook = extractor.Conv2d_1a_3x3.register_forward_pre_hook(lambda module, args: (prepared,))
    try:
        with torch.no_grad():
            (features,) = extractor(torch.zeros(len(images), 3, 8, 8, dtype=torch.uint8))
    finally:
        hook.remove()
    return features.numpy()


def test_extractor_reproduces_fixture_features(extractor):
    # One upscaled square and one non-square fixture image (each of the 7 passes; two keep the test fast).
    names = ("small64", "rect128x96")
    images = [torch.from_numpy(np.load(FIXTURE / f"{name}.input.npy")[:1]) for name in names]
    expected = np.concatenate([np.load(FIXTURE / f"{name}.features.npy")[:1] for name in names])
    features = pytorch_fid_features(extractor, torch.cat([
        F.interpolate(image, size=(299, 299), mode="bilinear", align_corners=False) for image in images]))
    # Resizing 299 -> 299 again inside pytorch_fid_features is the identity, so batching the two is exact.
    assert features.shape == (2, 2048)
    assert np.abs(features - expected).max() < 1e-4


def test_png_pipeline_gives_torch_fidelity_features(tmp_path, extractor):
    from torch_fidelity.datasets import ImagesPathDataset
    from torch_fidelity.utils import get_featuresdict_from_dataset

    folder = tmp_path / "images"
    folder.mkdir()
    # One non-square image (one network pass each side keeps the test fast; batching by size is tested with a
    # stand-in network in test_eval_cli.py).
    pixels = np.rint(np.load(FIXTURE / "rect128x96.input.npy")[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "photo.png")
    theirs = get_featuresdict_from_dataset(ImagesPathDataset([str(folder / "photo.png")]), extractor, batch_size=1,
                                           cuda=False, save_cpu_ram=True, verbose=False)["2048"].numpy()
    ours = inception_features(folder, extractor=extractor)
    assert ours.shape == (1, 2048) and np.abs(ours).max() > 0.1
    assert np.abs(ours - theirs).max() < 1e-5


def reference_fid(a, b):
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def reference_unbiased_mmd(x, y):
    m, d = x.shape
    total = 0.0
    for i in range(m):
        for j in range(m):
            kxx, kyy = (x[i] @ x[j] / d + 1) ** 3, (y[i] @ y[j] / d + 1) ** 3
            total += (kxx + kyy) / (m * (m - 1)) if i != j else 0.0
            total -= 2 * (x[i] @ y[j] / d + 1) ** 3 / (m * m)
    return total


def test_fid_and_kid_match_independent_computations():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 24))
    b = rng.normal(size=(60, 24)) @ rng.normal(size=(24, 24)) * 0.4 + 0.3
    assert frechet_distance(a, b) == pytest.approx(reference_fid(a, b), rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    shift = rng.normal(size=24)
    assert frechet_distance(a, a + shift) == pytest.approx(shift @ shift, rel=1e-9)
    # Subsets as large as the sets only reorder rows, so every subset gives the full-set estimate.
    mean, std = kernel_inception_distance(a, b, subsets=3, subset_size=1000)
    assert mean == pytest.approx(reference_unbiased_mmd(a, b), rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_fid_and_kid_match_torch_fidelity_on_fixture_features():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
    from torch_fidelity.metric_kid import kid_features_to_metric

    # The first 64 of the fixture's 2048 feature dimensions: torch-fidelity's eigvals of 2048x2048 is slow.
    features = np.concatenate([np.load(FIXTURE / f"{name}.features.npy") for name in NAMES])[:, :64]
    features = features.astype(np.float64)
    a, b = features[:4], features[4:] + 0.05
    statistics = [fid_features_to_statistics(torch.from_numpy(x)) for x in (a, b)]
    theirs = fid_statistics_to_metric(*statistics, verbose=False)["frechet_inception_distance"]
    assert frechet_distance(a, b) == pytest.approx(theirs, rel=1e-6)
    kid = kid_features_to_metric(torch.from_numpy(features[:5]), torch.from_numpy(features[2:] * 1.1),
                                 kid_subsets=7, kid_subset_size=3, rng_seed=5, verbose=False)
    mean, std = kernel_inception_distance(features[:5], features[2:] * 1.1, subsets=7, subset_size=3, seed=5)
    assert (mean, std) == pytest.approx((kid["kernel_inception_distance_mean"], kid["kernel_inception_distance_std"]),
                                        rel=1e-9)


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/pt_inception.pth"


def test_offline_without_weights_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CYCLEGAN_INCEPTION_WEIGHTS", raising=False)
    url = closed_port_url()
    monkeypatch.setenv("CYCLEGAN_INCEPTION_URL", url)
    with pytest.raises(DownloadError) as caught:
        resolve_inception_weights()
    message = str(caught.value)
    assert url in message and "--inception-weights PATH" in message and "CYCLEGAN_INCEPTION_WEIGHTS" in message
    assert not (tmp_path / "cache" / "inception" / fid_module.WEIGHTS_FILENAME).exists()


def test_weights_resolution_order_and_bad_files(tmp_path, monkeypatch, weights):
    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CYCLEGAN_INCEPTION_WEIGHTS", str(weights))
    assert resolve_inception_weights() == weights
    monkeypatch.setenv("CYCLEGAN_INCEPTION_WEIGHTS", str(tmp_path / "elsewhere.pth"))
    assert resolve_inception_weights(weights) == weights  # an explicit path wins over the variable
    with pytest.raises(MetricError, match="CYCLEGAN_INCEPTION_WEIGHTS"):
        resolve_inception_weights()
    with pytest.raises(MetricError, match="does not exist"):
        resolve_inception_weights(tmp_path / "missing.pth")
    monkeypatch.delenv("CYCLEGAN_INCEPTION_WEIGHTS")
    cached = tmp_path / "cache" / "inception" / fid_module.WEIGHTS_FILENAME
    cached.parent.mkdir(parents=True)
    torch.save({"fc.weight": torch.zeros(10, 2048)}, cached)
    assert resolve_inception_weights() == cached
    with pytest.raises(MetricError, match="not the FID Inception-v3"):
        load_inception()


def test_missing_torch_fidelity_says_how_to_install(monkeypatch, weights):
    for name in [name for name in sys.modules if name.startswith("torch_fidelity")] + ["torch_fidelity"]:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import torch_fidelity...` fail
    assert not fid_module.torch_fidelity_available()
    with pytest.raises(MetricError, match=r"pip install 'cyclegan\[metrics\]'"):
        load_inception(weights)
