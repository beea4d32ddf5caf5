import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity

from cyclegan.metrics import MetricError
from cyclegan.metrics.paired import l1, paired_scores, psnr, ssim, ssim_downsampling_factor


def reference_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 2.0) -> float:
    """Wang et al. (2004) SSIM written independently with SciPy: valid 11x11 Gaussian filtering, per channel."""
    t = np.arange(11) - 5.0
    g = np.exp(-(t**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    per_image = []
    for a, b in zip(x, y, strict=True):
        maps = []
        for p, q in zip(a, b, strict=True):
            def filt(z):
                return convolve2d(z, window[::-1, ::-1], mode="valid")
            mp, mq = filt(p), filt(q)
            sp, sq, spq = filt(p * p) - mp**2, filt(q * q) - mq**2, filt(p * q) - mp * mq
            maps.append((2 * mp * mq + c1) * (2 * spq + c2) / ((mp**2 + mq**2 + c1) * (sp + sq + c2)))
        per_image.append(np.mean(maps))
    return float(np.mean(per_image))


def test_ssim_matches_independent_reference_and_known_properties():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 3, 16, 21))
    y = np.clip(x + rng.normal(0, 0.3, x.shape), -1, 1)
    a, b = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    assert ssim(a, b) == pytest.approx(reference_ssim(a.double().numpy(), b.double().numpy()), abs=1e-10)
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) < 0.9
    with pytest.raises(ValueError, match="11x11"):
        ssim(a[..., :10], b[..., :10])


def skimage_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """scikit-image's SSIM with the settings of Wang et al.: Gaussian sigma 1.5 (an 11x11 window at skimage's
    truncation of 3.5 sigma), population covariances; its mean over the valid positions, per image then averaged."""
    return float(np.mean([structural_similarity(p, q, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                                data_range=2.0, channel_axis=0) for p, q in zip(x, y, strict=True)]))


def noisy_pair(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, shape)
    return x, np.clip(x + rng.normal(0, 0.3, shape), -1, 1)


# Both sides compute the same float64 sums of at most a few hundred terms of size <= 4 in another order: rounding
# differences stay near 1e-13, far inside this bound on any CPU.
FLOAT64_SUMS = 1e-10


def test_ssim_matches_scikit_image_where_no_downsampling_applies():
    x, y = noisy_pair((2, 3, 64, 383), seed=2)
    assert ssim_downsampling_factor(64, 383) == 1
    assert ssim(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(skimage_ssim(x, y), abs=FLOAT64_SUMS)


def test_ssim_downsampling_factor_rounds_as_matlab():
    # f = max(1, round(min(H, W) / 256)); MATLAB's round takes halves away from zero.
    cases = {(16, 16): 1, (383, 5000): 1, (384, 384): 2, (639, 700): 2, (640, 640): 3, (700, 640): 3,
             (895, 900): 3, (896, 896): 4}
    assert {size: ssim_downsampling_factor(*size) for size in cases} == cases


def test_ssim_of_block_images_is_the_ssim_of_the_blocks():
    """With f = 2 the reference's 2x2 mean filter covers each kept pixel and the next (imfilter's centre for an
    even kernel is its first element), so an image of constant 2x2 blocks downsamples to exactly its blocks."""
    x, y = noisy_pair((2, 3, 200, 230), seed=3)
    big_x, big_y = (np.repeat(np.repeat(t, 2, axis=2), 2, axis=3) for t in (x, y))  # 400 x 460: f = 2
    assert ssim(torch.from_numpy(big_x), torch.from_numpy(big_y)) == pytest.approx(skimage_ssim(x, y),
                                                                                   abs=FLOAT64_SUMS)


def matlab_downsample(image: np.ndarray, f: int) -> np.ndarray:
    """ssim.m: imfilter(img, ones(f)/f^2, 'symmetric', 'same'), then img(1:f:end, 1:f:end), for C x H x W."""
    centre = (f + 1) // 2  # imfilter's kernel centre, 1-based: floor((size + 1) / 2)
    before, after = centre - 1, f - centre
    padded = np.pad(image, ((0, 0), (before, after), (before, after)), mode="symmetric")
    height, width = image.shape[1:]
    filtered = sum(padded[:, i:i + height, j:j + width] for i in range(f) for j in range(f)) / f**2
    return filtered[:, ::f, ::f]


@pytest.mark.parametrize(("height", "width", "factor"), [(640, 701, 3), (1030, 1024, 4)])
def test_ssim_downsamples_large_images_as_the_reference(height, width, factor):
    x, y = noisy_pair((1, 3, height, width), seed=factor)
    small_x, small_y = matlab_downsample(x[0], factor)[None], matlab_downsample(y[0], factor)[None]
    assert small_x.shape[-2:] == (-(-height // factor), -(-width // factor))
    expected = skimage_ssim(small_x, small_y)
    assert ssim(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(expected, abs=FLOAT64_SUMS)
    assert abs(skimage_ssim(x, y) - expected) > 100 * FLOAT64_SUMS  # without the step the value differs


def test_psnr_and_l1_of_a_constant_offset_are_exact():
    a = torch.rand(2, 3, 8, 8) * 1.5 - 0.9
    b = a + 0.02
    assert psnr(a, b) == pytest.approx(40.0, abs=1e-5)  # 10 log10(2^2 / 0.02^2)
    assert psnr(a, b, data_range=1.0) == pytest.approx(20 * math.log10(1 / 0.02), abs=1e-5)
    assert l1(a, b) == pytest.approx(0.02, abs=1e-7)
    assert psnr(a, a) == math.inf
    with pytest.raises(ValueError):
        l1(a, b[:1])


def test_psnr_averages_per_image_values():
    a = torch.zeros(2, 1, 4, 4)
    b = torch.cat([torch.full((1, 1, 4, 4), 0.2), torch.full((1, 1, 4, 4), 0.02)])
    assert psnr(a, b) == pytest.approx((20 * math.log10(2 / 0.2) + 20 * math.log10(2 / 0.02)) / 2, abs=1e-5)


def test_paired_scores_match_by_stem_and_name_unmatched_files(tmp_path):
    rng = np.random.default_rng(1)
    generated, truth = tmp_path / "generated", tmp_path / "truth"
    generated.mkdir()
    truth.mkdir()
    for name in ("a", "b"):
        pixels = rng.integers(0, 200, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(generated / f"{name}.png")
        Image.fromarray(pixels + 10).save(truth / f"{name}.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(truth / "extra.png")
    scores = paired_scores(generated, truth)
    step = 10 / 127.5  # 10 grey levels on the [-1, 1] scale
    assert scores["count"] == 2
    assert scores["l1"] == pytest.approx(step, abs=1e-6)
    assert scores["psnr"] == pytest.approx(10 * math.log10(4 / step**2), abs=1e-4)
    assert 0 < scores["ssim"] < 1

    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(generated / "stray.png")
    with pytest.raises(MetricError, match="stray.png"):
        paired_scores(generated, truth)
    (generated / "stray.png").unlink()
    Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(truth / "b.png")
    with pytest.raises(MetricError, match="same size"):
        paired_scores(generated, truth)
