"""Winograd's minimal filtering F(m x m, 3 x 3): a stride-1, unpadded 3x3 convolution in fewer multiplications, for
inference on CPUs where oneDNN's direct kernels already run near the FMA peak (AVX-512), so only fewer operations
make it faster. Plain torch ops: tiles by `as_strided`, small transforms by GEMMs, one GEMM over channels per
tile position (torch.bmm: MKL's, which on AMD CPUs runs at about half oneDNN's speed; oneDNN's matmul through
PyTorch's private `mkldnn._linear_pointwise`, one call per position, was faster on one quiet core but several times
slower beside other busy processes, so we keep the public op). Measured on a shared 2-core AMD EPYC (AVX-512),
it is slower than oneDNN's direct kernels (benchmarks/results/translate_profile.json): the 2.25 multiplications
per output instead of 9 are paid back by MKL's slower GEMM and by the transforms, each a pass over memory. So it is
opt-in (`layers.fast_kernel`), for CPUs where the GEMM is fast and the direct kernels are not.

One dimension first (Toom-Cook). The correlation y_i = sum_k g_k d_(i+k), i < m, k < r = 3, of a filter g with an
input tile d of n = m + r - 1 samples is the transpose (in d) of the linear convolution s = g * h of g with an
m-sample h: s = T_g h with T_g[j, i] = g_(j-i), and y = T_g^T d. The product polynomial s(x) = g(x) h(x) has degree
n - 1, so n values fix it: its values at n - 1 finite points p and its leading coefficient (the point "infinity").
With V_k the n x k matrix whose row for a finite p is (1, p, ..., p^(k-1)) and whose last row is (0, ..., 0, 1),
    s = V_n^-1 [(V_r g) . (V_m h)],   so   T_g = V_n^-1 diag(V_r g) V_m   and
    y = A^T [(G g) . (B^T d)]   with   A = V_m,  G = V_r,  B^T = (V_n^-1)^T.
Two dimensions apply it along both axes of an n x n tile: Y = A^T [(G g G^T) . (B^T d B)] A, and a convolution
over C input channels sums the products over channels before A^T . A: for each of the n^2 tile positions one GEMM
(K outputs x C inputs) @ (C x tiles). Per output pixel that is n^2 / m^2 multiplications instead of 9: 2.25 for
F(4x4, 3x3), 1.78 for F(6x6, 3x3). The scale of each row of B^T is free (it moves into the same row of G), so each
row is scaled to coprime integers: B^T d and A^T (.) A then multiply only by small integers or powers of 2 (exact) and
round only in their sums; G's fractions are applied to the weights once, in float64.

The points decide the accuracy: the transforms' entries grow like p^(n-1), and rounding errors grow with them, so
small points whose reciprocals are small too are best. Measured in float32 (64 channels, 32x32, error relative to
the sum of |terms|; a direct convolution: 7e-8): F(4x4, 3x3) with 0, +-1, +-2: 1.3e-6; 0, +-1, +-1/2: 1.3e-6;
0, +-1, 2, -1/2: 5e-7; 0, +-1, +-3: 6e-6. F(6x6, 3x3) with 0, +-1, +-2, +-1/2: 2.7e-6; 0, +-1, +-2, +-3/2: 5e-5;
0, +-1, +-2, +-3: 3e-4. We take 0, +-1, 2, -1/2 for F(4x4, 3x3) (B^T's entries are integers up to 5, A^T's powers
of 2) and 0, +-1, +-2, +-1/2 for F(6x6, 3x3). Both are far more accurate than an 8-bit image needs; F(6x6, 3x3) is
the slower on a 2-core CPU for the ResNet's 64x64 maps, whose 121 tiles make its 64 GEMMs too small to run at
speed, so F(4x4, 3x3) is the default (benchmarks/results/translate_profile.json). tests/test_winograd.py bounds
the errors for any CPU.

Transformed weights are cached per weight tensor, keyed on its storage, version counter and shape, so an in-place
update (an optimiser step, `load_state_dict`) or a new tensor is transformed again.
"""

from __future__ import annotations

import functools
import math
import weakref
from fractions import Fraction

import torch
from torch.nn import functional

KERNEL = 3
POINTS = {4: (0, 1, -1, 2, Fraction(-1, 2)), 6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))}  # see the docstring
DEFAULT_TILE = 4


def _vandermonde(points: tuple[Fraction, ...], columns: int) -> list[list[Fraction]]:
    """Rows (1, p, ..., p^(columns-1)) for the finite points, then (0, ..., 0, 1) for the point at infinity."""
    rows = [[Fraction(p) ** j for j in range(columns)] for p in points]
    return rows + [[Fraction(0)] * (columns - 1) + [Fraction(1)]]


def _inverse(matrix: list[list[Fraction]]) -> list[list[Fraction]]:
    """Gauss-Jordan inverse in exact rational arithmetic (the Vandermonde matrix of distinct points is regular)."""
    size = len(matrix)
    rows = [list(row) + [Fraction(int(i == j)) for j in range(size)] for i, row in enumerate(matrix)]
    for column in range(size):
        pivot = next(i for i in range(column, size) if rows[i][column] != 0)
        rows[column], rows[pivot] = rows[pivot], rows[column]
        rows[column] = [value / rows[column][column] for value in rows[column]]
        for i in range(size):
            if i != column and rows[i][column] != 0:
                factor = rows[i][column]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[column], strict=True)]
    return [row[size:] for row in rows]


@functools.cache
def transform_matrices(tile: int) -> tuple[list[list[Fraction]], list[list[Fraction]], list[list[Fraction]]]:
    """A^T (m x n), G (n x 3) and B^T (n x n) of F(m x m, 3 x 3) for m = `tile`, exact, each row of B^T scaled to
    coprime integers and the same row of G divided by that scale (the docstring derives them)."""
    if tile not in POINTS:
        raise ValueError(f"Winograd tile {tile} has no chosen points; use one of {sorted(POINTS)}")
    points, size = POINTS[tile], tile + KERNEL - 1
    a_t = [list(column) for column in zip(*_vandermonde(points, tile), strict=True)]
    g = _vandermonde(points, KERNEL)
    b_t = [list(column) for column in zip(*_inverse(_vandermonde(points, size)), strict=True)]
    for row in range(size):
        denominators = math.lcm(*(value.denominator for value in b_t[row]))
        numerators = math.gcd(*(int(value * denominators) for value in b_t[row]))
        scale = Fraction(denominators, numerators)
        b_t[row] = [value * scale for value in b_t[row]]
        g[row] = [value / scale for value in g[row]]
    return a_t, g, b_t


def _tensor(matrix: list[list[Fraction]], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor([[float(value) for value in row] for row in matrix], dtype=torch.float64).to(device, dtype)


_weights: dict[int, tuple[weakref.ref, tuple, torch.Tensor]] = {}


def transformed_weight(weight: torch.Tensor, tile: int = DEFAULT_TILE) -> torch.Tensor:
    """G g G^T of every (output, input) filter pair, as (n*n, K, C) in the weight's dtype, computed in float64;
    cached until the weight changes (in place or by a new tensor)."""
    key = (weight.data_ptr(), weight._version, tuple(weight.shape), weight.dtype, weight.device, tile)
    entry = _weights.get(id(weight))
    if entry is not None and entry[0]() is weight and entry[1] == key:
        return entry[2]
    _, g, _ = transform_matrices(tile)
    g = _tensor(g, torch.float64, weight.device)
    size = tile + KERNEL - 1
    with torch.no_grad():
        filters = torch.einsum("ak,ockl,bl->aboc", g, weight.detach().double(), g)
        result = filters.reshape(size * size, weight.shape[0], weight.shape[1]).to(weight.dtype).contiguous()
    ident = id(weight)
    _weights[ident] = (weakref.ref(weight, lambda _: _weights.pop(ident, None)), key, result)
    return result


def winograd_conv2d(maps: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    tile: int = DEFAULT_TILE) -> torch.Tensor:
    """functional.conv2d(maps, weight, bias) for a 3x3 kernel, stride 1, no padding, by F(tile x tile, 3 x 3).
    Sides that are no multiple of the tile are padded with zeros to whole tiles and cropped back. Without
    gradients (inference only)."""
    if weight.shape[-2:] != (KERNEL, KERNEL) or maps.dim() != 4 or maps.shape[-1] < KERNEL or maps.shape[-2] < KERNEL:
        raise ValueError(f"Winograd convolution needs a 3x3 kernel and 4-d maps of sides >= 3, got weight "
                         f"{tuple(weight.shape)} and maps {tuple(maps.shape)}")
    a_t, _, b_t = transform_matrices(tile)
    a_t, b_t = _tensor(a_t, maps.dtype, maps.device), _tensor(b_t, maps.dtype, maps.device)
    size = tile + KERNEL - 1
    batch, channels, height, width = maps.shape
    rows, columns = math.ceil((height - 2) / tile), math.ceil((width - 2) / tile)
    padded = functional.pad(maps, (0, columns * tile + 2 - width, 0, rows * tile + 2 - height)).contiguous()
    stride_n, stride_c, stride_h, stride_w = padded.stride()
    tiles = padded.as_strided((size, size, channels, batch, rows, columns),
                              (stride_h, stride_w, stride_c, stride_n, tile * stride_h, tile * stride_w))
    count = batch * rows * columns
    tiles = (b_t @ tiles.reshape(size, -1)).view(size, size, channels * count)  # B^T d along the rows ...
    transformed = torch.matmul(b_t, tiles).view(size * size, channels, count)   # ... and along the columns
    filters = transformed_weight(weight, tile)
    products = torch.bmm(transformed.transpose(1, 2), filters.transpose(1, 2))  # (n*n, tiles, K)
    outputs = weight.shape[0]
    products = (a_t @ products.view(size, -1)).view(tile, size, count * outputs)  # A^T m along the rows ...
    products = torch.matmul(a_t, products)                                         # ... and along the columns
    return _assemble(products, bias, (batch, outputs, rows, columns, tile), (height - 2, width - 2))


def _assemble(products: torch.Tensor, bias: torch.Tensor | None, shape: tuple[int, ...], crop: tuple[int, int]
              ) -> torch.Tensor:
    """(tile, tile, N, rows, columns, K) output tiles to (N, K, height, width) maps, plus the bias, cropped."""
    batch, outputs, rows, columns, tile = shape
    maps = torch.empty(batch, outputs, rows * tile, columns * tile, dtype=products.dtype, device=products.device)
    tiles = products.view(tile, tile, batch, rows, columns, outputs).permute(2, 5, 3, 0, 4, 1)
    if bias is None:
        maps.view(batch, outputs, rows, tile, columns, tile).copy_(tiles)
    else:
        torch.add(tiles, bias.view(1, -1, 1, 1, 1, 1), out=maps.view(batch, outputs, rows, tile, columns, tile))
    if maps.shape[-2:] == crop:
        return maps
    return maps[..., :crop[0], :crop[1]].contiguous()
