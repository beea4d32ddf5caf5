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
# Wang's reference ssim.m (2009) first scales images so that the smaller side is about this many pixels.
SSIM_SCALE_TO = 256


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


def ssim_downsampling_factor(height: int, width: int) -> int:
    """ssim.m's factor f = max(1, round(min(H, W) / 256)); MATLAB rounds halves up (640 px gives 3, not 2)."""
    return max(1, math.floor(min(height, width) / SSIM_SCALE_TO + 0.5))


def _mirrored(size: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices of 0 .. size-1 padded by mirroring with the edge repeated (MATLAB's 'symmetric': c b a | a b c)."""
    index = torch.arange(-before, size + after, device=device)
    index = torch.where(index < 0, -index - 1, index)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def ssim_downsample(t: torch.Tensor, factor: int) -> torch.Tensor:
    """ssim.m's low-pass and subsampling: an f x f mean filter, then every f-th row and column from the first.

    The filter is MATLAB's imfilter(img, ones(f)/f^2, 'symmetric', 'same'): its centre is element floor((f+1)/2),
    so it covers offsets -floor((f-1)/2) .. +ceil((f-1)/2) around each kept pixel. Padding by those offsets and
    pooling f x f blocks with stride f gives exactly the kept pixels, ceil(H/f) x ceil(W/f) of them.
    """
    if factor == 1:
        return t
    before = (factor - 1) // 2
    after = factor - 1 - before
    height, width = t.shape[-2:]
    padded = t.index_select(-2, _mirrored(height, before, after, t.device))
    padded = padded.index_select(-1, _mirrored(width, before, after, t.device))
    return F.avg_pool2d(padded, factor, stride=factor)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> float:
    """Structural similarity (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03.

    As in the authors' ssim.m, images whose smaller side is 384 px or more are first downsampled by
    `ssim_downsampling_factor` (`ssim_downsample`). Local statistics are Gaussian-weighted (population, not
    sample, variances) over the positions where the window fits inside the image ("valid"); the SSIM map is
    averaged over positions and channels, then images.
    """
    _check_pair(a, b)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(a.shape[-2:])}")
    factor = ssim_downsampling_factor(*a.shape[-2:])
    x, y = ssim_downsample(a.double(), factor), ssim_downsample(b.double(), factor)
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
