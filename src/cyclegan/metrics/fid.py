"""FID and KID between a folder of generated images and a folder of real images.

Features are the standard "FID Inception-v3" pool3 activations (2048-d; TensorFlow's inception-2015-12-05 graph),
computed by torch-fidelity's `inception-v3-compat` extractor, which follows the original TensorFlow FID code
(Heusel et al.'s TTUR): 8-bit RGB images, TF1-style bilinear resize to 299x299 (no antialiasing), then
(x - 128) / 128. torch-fidelity (with torchvision) is the optional `metrics` extra and is imported only inside
these functions. The distances themselves are plain NumPy.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io.download import DownloadError, cache_dir, download
from ..io.images import list_images, load_image
from ..io.pth import load_pth
from ..progress import progress_bar
from . import MetricError

logger = logging.getLogger(__name__)

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILENAME}"
WEIGHTS_VARIABLE = "CYCLEGAN_INCEPTION_WEIGHTS"
URL_VARIABLE = "CYCLEGAN_INCEPTION_URL"
FEATURE_LAYER = "2048"  # pool3, the layer of FID (Heusel et al.) and KID (Binkowski et al.)
INSTALL_HINT = "pip install 'cyclegan[metrics]'"
# A few keys and shapes that identify the FID Inception-v3 state dict (1008 classes: TensorFlow's graph).
_SIGNATURE = {"Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3), "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
              "fc.weight": (1008, 2048)}


def torch_fidelity_available() -> bool:
    """True if the optional torch-fidelity package can be imported."""
    try:
        return importlib.util.find_spec("torch_fidelity") is not None
    except (ImportError, ValueError):  # ValueError: a module entry without a spec (e.g. blocked in sys.modules)
        return False


def _inception_class() -> Any:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as error:
        raise MetricError(f"FID and KID need torch-fidelity, which is not installed ({error}); run: "
                          f"{INSTALL_HINT}") from None
    return FeatureExtractorInceptionV3


def check_inception_weights(path: str | Path) -> None:
    """Raise ValueError unless `path` is a tensors-only state dict of the FID Inception-v3."""
    # Read safely here, since torch-fidelity itself loads the file without weights_only; raises CheckpointError.
    state = load_pth(path)
    for key, shape in _SIGNATURE.items():
        if not isinstance(state, dict) or key not in state or tuple(state[key].shape) != shape:
            raise ValueError(f"{path} is not the FID Inception-v3 weights file {WEIGHTS_FILENAME} "
                             f"(expected {key} of shape {shape})")


def _missing_weights_advice(url: str, target: Path) -> str:
    return (f"FID/KID need the Inception-v3 weights file {WEIGHTS_FILENAME} (about 96 MB). Download {url} with a "
            f"browser or another machine, then pass --inception-weights PATH (Python: weights=PATH), or set "
            f"{WEIGHTS_VARIABLE}=PATH, or place the file at {target}")


def resolve_inception_weights(weights: str | Path | None = None, show_progress: bool = False) -> Path:
    """The weights file: `weights`, else $CYCLEGAN_INCEPTION_WEIGHTS, else the cache (downloaded there once).

    The download address is the standard pytorch-fid release, or $CYCLEGAN_INCEPTION_URL.
    """
    given = weights if weights is not None else os.environ.get(WEIGHTS_VARIABLE) or None
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            source = "" if weights is not None else f" (from ${WEIGHTS_VARIABLE})"
            raise MetricError(f"Inception weights file {path}{source} does not exist")
        return path
    target = cache_dir() / "inception" / WEIGHTS_FILENAME
    if target.is_file():
        return target
    url = os.environ.get(URL_VARIABLE) or WEIGHTS_URL
    try:
        return download(url, target, show_progress=show_progress, validate=check_inception_weights)
    except DownloadError as error:
        raise DownloadError(f"{error}\n{_missing_weights_advice(url, target)}") from error


def load_inception(weights: str | Path | None = None, device: str | torch.device = "cpu",
                   show_progress: bool = False) -> torch.nn.Module:
    """torch-fidelity's FID Inception-v3 returning pool3 features, loaded from a local weights file, in eval mode."""
    if not torch_fidelity_available():  # say so before fetching 96 MB of weights
        raise MetricError(f"FID and KID need torch-fidelity, which is not installed; run: {INSTALL_HINT}")
    path = resolve_inception_weights(weights, show_progress)
    extractor_class = _inception_class()
    try:
        check_inception_weights(path)
    except ValueError as error:
        raise MetricError(str(error)) from None
    extractor = extractor_class("inception-v3-compat", [FEATURE_LAYER], feature_extractor_weights_path=str(path))
    return extractor.to(device).eval()


def _image_list(images: str | Path | Sequence[str | Path]) -> list[Path]:
    paths = list_images(images) if isinstance(images, (str, Path)) else [Path(path) for path in images]
    if not paths:
        raise MetricError(f"no images in {images}")
    return paths


def inception_features(images: str | Path | Sequence[str | Path], weights: str | Path | None = None,
                       batch_size: int = 32, device: str | torch.device = "cpu", show_progress: bool = False,
                       extractor: torch.nn.Module | None = None) -> np.ndarray:
    """N x 2048 float64 pool3 features of a folder of images (or a list of image files), in order.

    Each file is read as 8-bit RGB (as torch-fidelity reads image folders) and given to the extractor unchanged:
    it resizes to 299x299 itself. Pass a loaded `extractor` (see `load_inception`) to skip loading the weights.
    """
    paths = _image_list(images)
    if extractor is None:
        extractor = load_inception(weights, device, show_progress)
    features: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        # One tensor per batch, so a batch holds images of a single size.
        batch = torch.from_numpy(np.stack(pending)).permute(0, 3, 1, 2).to(device)
        with torch.no_grad():
            (pooled,) = extractor(batch)
        features.append(pooled.double().cpu().numpy())
        pending.clear()

    for path in progress_bar(paths, description="Inception features", enabled=show_progress, unit="img"):
        pixels = np.asarray(load_image(path, 3), dtype=np.uint8)
        if pending and (pixels.shape != pending[0].shape or len(pending) == batch_size):
            flush()
        pending.append(pixels)
    flush()
    return np.concatenate(features)


def _check_features(features_a: np.ndarray, features_b: np.ndarray, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"expected two N x D feature arrays with the same D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < minimum:
        raise MetricError(f"need at least {minimum} images on each side, got {len(a)} and {len(b)}")
    return a, b


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance of Gaussians fitted to two feature sets (Heusel et al. 2017, Eq. 6):

    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), with unbiased (N - 1) covariances.
    """
    a, b = _check_features(features_a, features_b, 2)
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr((S_a S_b)^(1/2)) = tr((R S_b R)^(1/2)) with R = S_a^(1/2): a symmetric PSD matrix, whose eigenvalues
    # are stable even when the covariances are singular (fewer images than dimensions).
    eigenvalues, eigenvectors = np.linalg.eigh(cov_a)
    root_a = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    difference = mean_a - mean_b
    return float(difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray, degree: int) -> float:
    """Unbiased MMD^2 with the polynomial kernel k(x, y) = (x.y / d + 1)^degree (Binkowski et al. 2018, Eq. 4).

    As in their code and torch-fidelity, the cross term keeps its diagonal and is divided by m^2.
    """
    m, dimension = x.shape

    def kernel(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return (p @ q.T / dimension + 1.0) ** degree

    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within - 2 * k_xy.sum() / (m * m))


def kernel_inception_distance(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 100,
                              subset_size: int = 1000, degree: int = 3, seed: int = 0) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): mean and standard deviation of the unbiased MMD^2 over random subsets.

    Each subset draws `subset_size` rows without replacement from each side (capped at the smaller set size),
    with NumPy's RandomState(seed) in torch-fidelity's order, so the same seed gives torch-fidelity's value.
    """
    a, b = _check_features(features_a, features_b, 2)
    size = min(subset_size, len(a), len(b))
    if size < subset_size:
        logger.info("KID subset size %d capped at %d, the smaller set's size", subset_size, size)
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for index in range(subsets):
        rows_a = rng.choice(len(a), size, replace=False)
        rows_b = rng.choice(len(b), size, replace=False)
        values[index] = _unbiased_mmd2(a[rows_a], b[rows_b], degree)
    return float(values.mean()), float(values.std())


def fid_kid(generated_folder: str | Path, real_folder: str | Path, weights: str | Path | None = None,
            batch_size: int = 32, device: str | torch.device = "cpu", kid_subsets: int = 100,
            kid_subset_size: int = 1000, seed: int = 0, show_progress: bool = False) -> dict[str, float]:
    """FID and KID between two image folders, with the standard Inception-v3 pool3 features."""
    extractor = load_inception(weights, device, show_progress)
    generated = inception_features(generated_folder, batch_size=batch_size, device=device,
                                   show_progress=show_progress, extractor=extractor)
    real = inception_features(real_folder, batch_size=batch_size, device=device, show_progress=show_progress,
                              extractor=extractor)
    kid_mean, kid_std = kernel_inception_distance(generated, real, kid_subsets, kid_subset_size, seed=seed)
    return {"fid": frechet_distance(generated, real), "kid_mean": kid_mean, "kid_std": kid_std,
            "num_generated": len(generated), "num_real": len(real),
            "kid_subset_size": min(kid_subset_size, len(generated), len(real)), "kid_subsets": kid_subsets}
