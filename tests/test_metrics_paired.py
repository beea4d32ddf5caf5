import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.signal import convolve2d

from cyclegan.metrics import MetricError
from cyclegan.metrics.paired import l1, paired_scores, psnr, ssim


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
