"""Paired metrics, for when each generated image has a ground-truth image: L1, PSNR and SSIM.

The tensor functions take float N x C x H x W tensors in [-1, 1] (the generators' range), score every image on its
own and return the mean over the batch.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..io.images import image_to_tensor, list_images, load_image
from . import MetricError

# Wang et al., "Image quality assessment: from error visibility to structural similarity" (TIP 2004), Sec. III-C.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"expected two N x C x H x W tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def l1(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference (on the [-1, 1] scale of the tensors)."""
    _check_pair(a, b)
    return float((a.double() - b.double()).abs().mean())


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(range^2 / MSE), per image then averaged; inf for equal images."""
    _check_pair(a, b)
    mse = (a.double() - b.double()).pow(2).flatten(1).mean(dim=1)
    values = [math.inf if m == 0 else 10.0 * math.log10(data_range**2 / m) for m in mse.tolist()]
    return sum(values) / len(values)


def _gaussian_window(channels: int, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(SSIM_WINDOW, dtype=dtype) - (SSIM_WINDOW - 1) / 2
    profile = torch.exp(-coords**2 / (2 * SSIM_SIGMA**2))
    profile = profile / profile.sum()
    return torch.outer(profile, profile).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> float:
    """Structural similarity (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03.

    Local statistics are Gaussian-weighted (population, not sample, variances) over the positions where the
    window fits inside the image ("valid"); the SSIM map is averaged over positions and channels, then images.
    No downsampling is applied first (unlike the later MATLAB `ssim.m` for large images).
    """
    _check_pair(a, b)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(a.shape[-2:])}")
    x, y = a.double(), b.double()
    channels = x.shape[1]
    window = _gaussian_window(channels, x.dtype).to(x.device)

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)  # one filter per channel, valid positions only

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov_xy = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.flatten(1).mean(dim=1).mean())


def match_by_stem(generated: list[Path], truth: list[Path], what: str = "ground-truth") -> list[tuple[Path, Path]]:
    """Pair files of two folders by file name without extension; MetricError names the unmatched ones."""
    by_stem: dict[str, Path] = {}
    for path in truth:
        if path.stem in by_stem:
            raise MetricError(f"two {what} files share the name {path.stem!r}: {by_stem[path.stem]} and {path}")
        by_stem[path.stem] = path
    missing = [path for path in generated if path.stem not in by_stem]
    if missing:
        shown = ", ".join(str(path) for path in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise MetricError(f"{len(missing)} of {len(generated)} generated file(s) have no {what} file of the same "
                          f"name: {shown}")
    if not generated:
        raise MetricError("no generated images to score")
    return [(path, by_stem[path.stem]) for path in generated]


def paired_scores(generated_folder: str | Path, truth_folder: str | Path, channels: int = 3) -> dict[str, float]:
    """Mean L1, PSNR and SSIM of each generated image against the ground-truth image of the same stem.

    Images are compared at their stored size (8-bit values mapped to [-1, 1]); sizes must agree.
    """
    pairs = match_by_stem(list_images(generated_folder), list_images(truth_folder))
    totals = {"l1": 0.0, "psnr": 0.0, "ssim": 0.0}
    for generated_path, truth_path in pairs:
        generated = image_to_tensor(load_image(generated_path, channels))[None]
        truth = image_to_tensor(load_image(truth_path, channels))[None]
        if generated.shape != truth.shape:
            raise MetricError(f"{generated_path} is {generated.shape[-1]}x{generated.shape[-2]} but {truth_path} is "
                              f"{truth.shape[-1]}x{truth.shape[-2]}; paired metrics need images of the same size")
        totals["l1"] += l1(generated, truth)
        totals["psnr"] += psnr(generated, truth)
        totals["ssim"] += ssim(generated, truth)
    scores = {name: total / len(pairs) for name, total in totals.items()}
    scores["count"] = len(pairs)
    return scores
