"""Fast stride-1 convolutions on the CPU: which kernel runs (NNPACK's, our Winograd, oneDNN's direct ones) and
`FastConv2d`, the nn.Conv2d that `nets.speed.speed_up` swaps in to run them."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional

from .winograd import winograd_conv2d


@functools.cache
def nnpack_ready() -> bool:
    """Whether this PyTorch has NNPACK; the first call also initialises it (its kernels fail until then)."""
    return bool(torch._nnpack_available())


@functools.cache
def wide_vectors() -> bool:
    """Whether PyTorch runs AVX-512 kernels here. oneDNN's direct convolutions then use twice NNPACK's vector
    width (AVX2) and beat it (benchmarks/results/translate_profile.json); only fewer operations help: Winograd."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def fast_kernel(maps: torch.Tensor, weight: torch.Tensor, inference: bool, winograd: bool = False) -> str:
    """The kernel `conv2d(..., fast=True)` runs: "nnpack", "winograd" or "direct" (oneDNN's, or the device's).

    Only CPU float32 has fast kernels. With `winograd`, inference runs 3x3 convolutions by F(4x4, 3x3) Winograd
    (nets/winograd.py): opt-in, as on the 2-core AVX-512 AMD CPU we measured it is no faster than oneDNN's direct
    kernels (its transforms are memory-bound passes, its GEMMs MKL's, at half oneDNN's speed on AMD CPUs:
    benchmarks/results/translate_profile.json). Otherwise AVX2 CPUs use NNPACK, and AVX-512 CPUs oneDNN's direct
    kernels for inference, which beat NNPACK's AVX2 ones there; training keeps NNPACK everywhere, as
    train.fast_convolutions always had it (Winograd has no backward pass here)."""
    if maps.device.type != "cpu" or maps.dtype != torch.float32 or weight.dtype != torch.float32 \
            or maps.dim() != 4:
        return "direct"
    if inference and winograd and tuple(weight.shape[-2:]) == (3, 3):
        return "winograd"
    if inference and wide_vectors():
        return "direct"
    return "nnpack" if nnpack_ready() else "direct"


def conv2d(maps: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, fast: bool,
           inference: bool | None = None, winograd: bool = False) -> torch.Tensor:
    """A stride-1, unpadded convolution; with `fast`, on the CPU in float32, by the kernel `fast_kernel` chooses.
    `inference` (default: gradients are off) allows kernels without a backward pass; autograd functions, whose
    forward runs without gradients, say False. `winograd`: see `fast_kernel`.

    NNPACK's Winograd (3x3) or FFT kernels are about twice as fast as oneDNN's direct ones on a 2-core AVX2 CPU for
    the ResNet generator's 3x3 and final 7x7 convolutions (benchmarks/translate_speed.py), equal up to a coarser
    float rounding: outputs ~1e-5 off direct convolution's (far below an 8-bit image's step of 8e-3; translation
    uses it by default), gradients through a training step ~5e-3 off (so training uses it only when asked:
    train.fast_convolutions; tests/test_speed_scripts.py derives the bounds). The backward pass is PyTorch's usual
    one. Our Winograd rounds like NNPACK's (tests/test_winograd.py bounds it)."""
    if fast:
        inference = not torch.is_grad_enabled() if inference is None else inference
        kernel = fast_kernel(maps, weight, inference, winograd)
        if kernel == "winograd":
            return winograd_conv2d(maps, weight, bias)
        if kernel == "nnpack":
            return torch._nnpack_spatial_convolution(maps.contiguous(), weight, bias, [0, 0], [1, 1])
    return functional.conv2d(maps, weight, bias)


class FastConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state dict) that runs through `conv2d(..., fast=True)` when it is a plain
    stride-1 convolution without padding. Never built: `speed_up` swaps it in for an nn.Conv2d, and back.
    `winograd`: Winograd for 3x3 inference (`fast_kernel`)."""

    winograd = False

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        plain = self.stride != (1, 1) or self.padding != (0, 0) or self.dilation != (1, 1) or self.groups != 1
        if not plain:
            return conv2d(maps, self.weight, self.bias, fast=True, winograd=self.winograd)
        return super().forward(maps)
