"""Winograd F(m x m, 3 x 3) convolution (nets/winograd.py): exact transforms, float32 rounding within a derived
bound for any CPU, the weight cache, and where `conv2d(..., fast=True)` uses it (nets/convolutions.py)."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as functional

from cyclegan.nets import convolutions
from cyclegan.nets.generators import ResidualBlock
from cyclegan.nets.speed import speed_up
from cyclegan.nets.winograd import KERNEL, POINTS, _weights, transform_matrices, transformed_weight, winograd_conv2d

FLOAT32_UNIT_ROUNDOFF = 2.0**-24


@pytest.mark.parametrize("tile", sorted(POINTS))
def test_transforms_compute_the_correlation_exactly(tile):
    """In rational arithmetic A^T [(G g) . (B^T d)] is y_i = sum_k g_k d_(i+k): the derivation, without rounding."""
    a_t, g_matrix, b_t = transform_matrices(tile)
    rng = random.Random(tile)
    for _ in range(20):
        g = [Fraction(rng.randint(-9, 9), rng.randint(1, 5)) for _ in range(KERNEL)]
        d = [Fraction(rng.randint(-9, 9), rng.randint(1, 5)) for _ in range(tile + KERNEL - 1)]
        filtered = [sum(row[k] * g[k] for k in range(KERNEL)) for row in g_matrix]
        data = [sum(value * sample for value, sample in zip(row, d, strict=True)) for row in b_t]
        products = [f * x for f, x in zip(filtered, data, strict=True)]
        result = [sum(value * p for value, p in zip(row, products, strict=True)) for row in a_t]
        assert result == [sum(g[k] * d[i + k] for k in range(KERNEL)) for i in range(tile)]
    assert all(value.denominator == 1 for row in b_t for value in row)  # integer input transform


def _magnitude(maps: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tile: int) -> torch.Tensor:
    """The same F(tile, 3) algorithm in float64 with every matrix and input replaced by its absolute value: what
    each output's rounding errors are proportional to."""
    a_t, g, b_t = (torch.tensor([[abs(float(v)) for v in row] for row in m], dtype=torch.float64)
                   for m in transform_matrices(tile))
    size = tile + KERNEL - 1
    batch, channels, height, width = maps.shape
    rows, columns = -(-(height - 2) // tile), -(-(width - 2) // tile)
    padded = functional.pad(maps.abs().double(), (0, columns * tile + 2 - width, 0, rows * tile + 2 - height))
    tiles = functional.unfold(padded, size, stride=tile).view(batch, channels, size, size, rows * columns)
    data = torch.einsum("ai,ncijl,bj->ncabl", b_t, tiles, b_t)
    filters = torch.einsum("ak,ockl,bl->ocab", g, weight.abs().double(), g)
    products = torch.einsum("ocab,ncabl->noabl", filters, data)
    out = torch.einsum("ia,noabl,jb->nolij", a_t, products, a_t).reshape(batch, -1, rows, columns, tile, tile)
    out = out.permute(0, 1, 2, 4, 3, 5).reshape(batch, -1, rows * tile, columns * tile)[..., :height - 2, :width - 2]
    return out if bias is None else out + bias.abs().double().view(1, -1, 1, 1)


@pytest.mark.parametrize(("batch", "channels", "outputs", "height", "width", "tile", "with_bias"), [
    (1, 1, 1, 3, 3, 4, True),        # one pixel: a tile mostly outside the map
    (2, 5, 7, 13, 10, 4, True),      # odd sides, batch > 1
    (3, 64, 16, 18, 18, 4, False),   # whole tiles
    (1, 256, 8, 66, 66, 4, True),    # the ResNet's residual shape (fewer outputs), whole tiles
    (1, 256, 8, 11, 9, 6, True),
    (2, 3, 2, 8, 21, 6, False),
])
def test_matches_float64_convolution_within_the_rounding_bound(batch, channels, outputs, height, width, tile,
                                                               with_bias):
    """Against float64 conv2d. Each stage is a sum computed in float32 in some order (any order, FMA or not): its
    error is at most (terms - 1) * u times the sum of its |terms| to first order, and the stages compose into
    k * u * (the algorithm run on absolute values, `_magnitude`), k = 4 (n - 1) transform terms + C channel terms
    + 2 roundings (transformed weights, bias): a bound that holds on every x86-64 CPU, checked for each output.
    Being a worst case through transforms whose |entries| add up, it is loose (~1e-2 of the direct convolution's
    sum of |terms| at 256 channels, where the errors measured are ~1e-6 of it): checked below 2e-2 of it."""
    generator = torch.Generator().manual_seed(channels * height + width)
    maps = torch.randn(batch, channels, height, width, generator=generator)
    weight = torch.randn(outputs, channels, 3, 3, generator=generator) / (3 * channels**0.5)
    bias = torch.randn(outputs, generator=generator) if with_bias else None
    with torch.no_grad():
        result = winograd_conv2d(maps, weight, bias, tile)
    truth = functional.conv2d(maps.double(), weight.double(), None if bias is None else bias.double())
    assert result.shape == truth.shape and result.dtype == torch.float32 and result.is_contiguous()
    terms = 4 * (tile + KERNEL - 2) + channels + 2
    bound = 1.01 * terms * FLOAT32_UNIT_ROUNDOFF * _magnitude(maps, weight, bias, tile)
    assert ((result.double() - truth).abs() <= bound).all()
    direct = functional.conv2d(maps.abs().double(), weight.abs().double(),
                               None if bias is None else bias.abs().double())
    assert bound.max().item() < 2e-2 * direct.max().item()


def test_cached_weights_are_transformed_again_when_the_weight_changes():
    """The cache follows in-place updates (an optimiser step, load_state_dict) and new tensors, and forgets
    weights that are gone."""
    generator = torch.Generator().manual_seed(3)
    maps = torch.randn(1, 4, 9, 9, generator=generator)
    conv = torch.nn.Conv2d(4, 6, 3)
    with torch.no_grad():
        first = winograd_conv2d(maps, conv.weight, conv.bias)
        assert transformed_weight(conv.weight) is transformed_weight(conv.weight)  # unchanged: cached
        conv.weight.mul_(-2.0)
        torch.testing.assert_close(winograd_conv2d(maps, conv.weight, conv.bias) - conv.bias.view(1, -1, 1, 1),
                                   -2.0 * (first - conv.bias.view(1, -1, 1, 1)), rtol=1e-5, atol=1e-5)
        conv.load_state_dict({"weight": torch.zeros(6, 4, 3, 3), "bias": conv.bias.clone()})
        assert torch.equal(winograd_conv2d(maps, conv.weight, conv.bias),
                           conv.bias.view(1, -1, 1, 1).expand(1, 6, 7, 7))
        replaced = torch.randn(6, 4, 3, 3, generator=generator)
        torch.testing.assert_close(winograd_conv2d(maps, replaced), functional.conv2d(maps, replaced),
                                   rtol=1e-4, atol=1e-4)
    count = len(_weights)
    del replaced
    assert len(_weights) == count - 1


def test_bad_shapes_are_refused_with_the_shapes_named():
    with pytest.raises(ValueError, match=r"3x3 kernel.*\(2, 2, 5, 5\)"):
        winograd_conv2d(torch.zeros(1, 2, 8, 8), torch.zeros(2, 2, 5, 5))
    with pytest.raises(ValueError, match=r"sides >= 3.*\(1, 2, 2, 8\)"):
        winograd_conv2d(torch.zeros(1, 2, 2, 8), torch.zeros(2, 2, 3, 3))
    with pytest.raises(ValueError, match="tile 5"):
        transform_matrices(5)


@pytest.mark.parametrize("wide", [True, False])
def test_fast_kernel_is_winograd_only_when_asked_and_only_for_3x3_inference(monkeypatch, wide):
    """Winograd: opted into, 3x3, inference. Otherwise inference on AVX-512 runs oneDNN's direct kernels (faster
    there than NNPACK's AVX2 ones), on AVX2 NNPACK; training NNPACK everywhere, as before."""
    monkeypatch.setattr(convolutions, "wide_vectors", lambda: wide)
    maps, nnpack = torch.zeros(1, 4, 10, 10), "nnpack" if convolutions.nnpack_ready() else "direct"
    three, seven = torch.zeros(4, 4, 3, 3), torch.zeros(4, 4, 7, 7)
    assert convolutions.fast_kernel(maps, three, inference=True, winograd=True) == "winograd"
    assert convolutions.fast_kernel(maps, three, inference=True) == ("direct" if wide else nnpack)
    assert convolutions.fast_kernel(maps, seven, inference=True, winograd=True) == ("direct" if wide else nnpack)
    assert convolutions.fast_kernel(maps, three, inference=False, winograd=True) == nnpack
    assert convolutions.fast_kernel(maps.double(), three.double(), inference=True, winograd=True) == "direct"


def test_fast_convolutions_use_winograd_when_asked_and_without_gradients_only(monkeypatch):
    """Through the switch: a residual block in eval under no_grad runs its two convolutions by Winograd only with
    winograd=True; with gradients (the lean training path, whose forward runs without them) it never does."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[1].shape)
        return winograd_conv2d(*args, **kwargs)

    monkeypatch.setattr(convolutions, "winograd_conv2d", counted)
    block = speed_up(ResidualBlock(8, "instance", dropout=False), lean=True, fast_convolutions=True)
    maps = torch.randn(2, 8, 12, 12, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        block(maps)
        assert calls == []
        fast = speed_up(block, lean=True, fast_convolutions=True, winograd=True)(maps)
    assert len(calls) == 2
    with torch.no_grad():
        exact = speed_up(block, lean=True, fast_convolutions=False, winograd=True)(maps)  # off means off
    assert len(calls) == 2
    torch.testing.assert_close(fast, exact, rtol=0, atol=1e-4)
    speed_up(block, lean=True, fast_convolutions=True, winograd=True)
    block(maps.requires_grad_()).sum().backward()
    assert len(calls) == 2 and maps.grad is not None
