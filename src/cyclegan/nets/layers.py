"""Building blocks shared by the generators and discriminators: normalisation, weight initialisation, and the
optimised paths of instance norm and stride-1 convolution (with their switches, `set_lean` and
`set_fast_convolutions`)."""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.nn import functional

from .winograd import winograd_conv2d


class _InstanceNorm(torch.autograd.Function):
    """Affine-free instance norm whose output is a tensor of its own, not a view. nn's instance norm returns a
    reshaped view of a batch-norm output, and the in-place ReLU after it then makes autograd copy the whole map
    back into the base, forward and backward. It keeps the input for the backward pass, as nn's does."""

    @staticmethod
    def forward(ctx: FunctionCtx, maps: torch.Tensor, eps: float) -> torch.Tensor:
        var, mean = torch.var_mean(maps, dim=(2, 3), correction=0, keepdim=True)
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(maps, mean, invstd)
        ctx.eps = eps
        return torch.addcmul(-mean * invstd, maps, invstd)  # (maps - mean) * invstd in one pass

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        maps, mean, invstd = ctx.saved_tensors
        batch, channels, height, width = maps.shape
        flat = (1, batch * channels, height, width)
        grad_maps, _, _ = torch.ops.aten.native_batch_norm_backward(
            grad.reshape(flat), maps.reshape(flat), None, None, None, mean.reshape(-1), invstd.reshape(-1), True,
            ctx.eps, [True, False, False])
        return grad_maps.view(maps.shape), None


class InstanceNorm2d(nn.InstanceNorm2d):
    """nn.InstanceNorm2d (same arguments, same empty state dict) whose training-time output is not a view; see
    `_InstanceNorm`. Without gradients, and with affine parameters or running statistics, it is nn's own."""

    lean = True  # False: nn's own path always (`set_lean`)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        plain = not self.lean or self.affine or self.track_running_stats or maps.dim() != 4
        if plain or not torch.is_grad_enabled():
            return super().forward(maps)
        return _InstanceNorm.apply(maps, self.eps)


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


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same arguments and state dict) that runs through `conv2d(..., fast=True)` when `fast` is set
    (`set_fast_convolutions`) and it is a plain stride-1 convolution without padding."""

    fast = False
    winograd = False  # with fast: Winograd for 3x3 inference (`fast_kernel`)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        plain = self.stride != (1, 1) or self.padding != (0, 0) or self.dilation != (1, 1) or self.groups != 1
        if self.fast and not plain:
            return conv2d(maps, self.weight, self.bias, fast=True, winograd=self.winograd)
        return super().forward(maps)


def set_fast_convolutions(net: nn.Module, enabled: bool, winograd: bool = False) -> nn.Module:
    """Switch fast convolutions (`conv2d`: NNPACK or Winograd, as `fast_kernel` chooses) on or off in the layers
    that offer them (the ResNet generator's); `winograd` opts into Winograd for 3x3 inference."""
    for module in net.modules():
        if hasattr(module, "fast"):
            module.fast = enabled
            module.winograd = enabled and winograd
    return net


def set_lean(net: nn.Module, enabled: bool) -> nn.Module:
    """Switch the memory-lean autograd paths (this file's InstanceNorm2d, generators' residual blocks) on or off;
    off gives the plain module computation, which the reference training step uses."""
    for module in net.modules():
        if hasattr(module, "lean"):
            module.lean = enabled and getattr(module, "lean_possible", True)
    return net


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Normalisation over `channels` feature maps.

    Instance norm has no learned affine parameters and no running statistics, as in the paper's code (Ulyanov et
    al.); batch norm keeps both.
    """
    if kind == "instance":
        return InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; use instance, batch or none")


def conv_bias(norm: str) -> bool:
    """Whether a convolution followed by `norm` has a bias.

    Batch norm subtracts the mean and adds its own shift, so a bias would be wasted; the official code also leaves
    it out when there is no norm at all, and we keep that so parameter counts and checkpoints match.
    """
    return norm == "instance"


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise convolution and linear weights (paper appendix: Gaussian N(0, 0.02)); biases start at zero.

    Batch-norm scales start at N(1, gain) and shifts at zero, as in the official code. A network on the meta
    device (built only to receive loaded weights) is left alone: there is nothing to fill, and random fills of meta
    tensors go through PyTorch's reference implementations, whose import alone takes seconds.
    """
    if any(parameter.is_meta for parameter in net.parameters()):
        return net
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                nn.init.normal_(module.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(module.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(module.weight, gain=gain)
            else:
                raise ValueError(f"unknown init_type {init_type!r}; use normal, xavier, kaiming or orthogonal")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
    return net


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
