"""Building blocks shared by the generators and discriminators: normalisation and weight initialisation."""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable


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

    Batch-norm scales start at N(1, gain) and shifts at zero, as in the official code.
    """
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
