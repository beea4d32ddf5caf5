"""Memory-lean training layers: the ResNet generator's residual block (R256) as one autograd function that keeps
less for the backward pass, and an instance norm whose output is no view. `nets.speed.speed_up` swaps them in.

The block is reflect-pad, 3x3 convolution, instance norm, ReLU, reflect-pad, 3x3 convolution, instance norm, plus
the input. Built from modules, autograd keeps five feature maps per block for the backward pass: both padded inputs,
both convolution outputs and the ReLU output (and an in-place ReLU on the norm's reshaped view adds a copy). Here we
keep three: the block input x and the two normalised maps x_hat1, x_hat2. Everything else is recomputed in the
backward pass from those, cheaply: padding and ReLU are copies. Nothing expensive is recomputed: no convolution.

Instance norm without affine parameters (the paper's) has, per image and channel, y = (c - mean) * invstd = x_hat and
    dL/dc = invstd * (g - mean(g) - x_hat * mean(g * x_hat)),   g = dL/dy,
which needs only x_hat and invstd, not c. We evaluate it with PyTorch's batch-norm backward kernel on the (1, N*C,
H, W) view, given x_hat as the input with mean 0 and invstd 1, and the true invstd as the affine weight.

The standalone instance norm keeps its input c (the in-place ReLU after it overwrites its output) and evaluates the
same formula by the same kernel given c, its mean and invstd: `instance_norm_backward` serves both.

The result is the same function with the same gradients, up to float rounding (tests compare it with the module
path in float64). It is used only where it is exact: affine-free instance norm, no dropout, gradients enabled.
Both backward passes are differentiable once (a gradient penalty, which differentiates a network twice, needs the
plain modules).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.nn import functional

from .convolutions import FastConv2d, conv2d
from .generators import ResidualBlock

PAD = (1, 1, 1, 1)


def _instance_norm(maps: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x_hat and invstd (one per image and channel) of affine-free instance norm, with biased variance as nn's."""
    batch, channels, height, width = maps.shape
    x_hat, _, invstd = torch.native_batch_norm(maps.reshape(1, batch * channels, height, width), None, None, None,
                                               None, True, 0.0, eps)
    return x_hat.view(batch, channels, height, width), invstd


def instance_norm_backward(grad: torch.Tensor, maps: torch.Tensor, mean: torch.Tensor, invstd: torch.Tensor,
                           eps: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """dL/dc of affine-free instance norm, by PyTorch's batch-norm backward kernel on the (1, N*C, H, W) view of
    `maps` with per-(image, channel) `mean` and `invstd`, scaled by `weight` if given. Called with maps = c and its
    statistics, or (the lean block) with maps = x_hat, mean 0, invstd 1 and weight = the true invstd: the docstring
    above shows both give the same gradient."""
    batch, channels, height, width = maps.shape
    flat = (1, batch * channels, height, width)
    grad_input, _, _ = torch.ops.aten.native_batch_norm_backward(
        grad.reshape(flat), maps.reshape(flat), weight, None, None, mean.reshape(-1), invstd.reshape(-1), True, eps,
        [True, False, False])
    return grad_input.view(batch, channels, height, width)


def _normalised_backward(grad: torch.Tensor, x_hat: torch.Tensor, invstd: torch.Tensor, eps: float) -> torch.Tensor:
    """`instance_norm_backward` from the normalised map x_hat (mean 0, invstd 1) and the true invstd."""
    return instance_norm_backward(grad, x_hat, torch.zeros_like(invstd), torch.ones_like(invstd), eps, invstd)


def _conv_backward(grad: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor, need_input: bool
                   ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Gradients of a 3x3 convolution (stride 1, no padding, with bias) for its input, weight and bias."""
    return torch.ops.aten.convolution_backward(grad, inputs, weight, [weight.shape[0]], [1, 1], [0, 0], [1, 1],
                                               False, [0, 0], 1, [need_input, True, True])


class LeanResidualFunction(torch.autograd.Function):
    """x + IN(conv2(pad(relu(IN(conv1(pad(x))))))), keeping x, x_hat1 and x_hat2 for the backward pass; `fast`:
    the forward convolutions through NNPACK (`layers.conv2d`)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, weight1: torch.Tensor, bias1: torch.Tensor,
                weight2: torch.Tensor, bias2: torch.Tensor, eps: float, fast: bool) -> torch.Tensor:
        padded = functional.pad(x, PAD, mode="reflect")
        x_hat1, invstd1 = _instance_norm(conv2d(padded, weight1, bias1, fast, inference=False), eps)
        del padded
        hidden = functional.pad(torch.relu(x_hat1), PAD, mode="reflect")
        x_hat2, invstd2 = _instance_norm(conv2d(hidden, weight2, bias2, fast, inference=False), eps)
        ctx.save_for_backward(x, weight1, weight2, x_hat1, invstd1, x_hat2, invstd2)
        ctx.eps = eps
        return x + x_hat2

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight1, weight2, x_hat1, invstd1, x_hat2, invstd2 = ctx.saved_tensors
        grad_conv2 = _normalised_backward(grad, x_hat2, invstd2, ctx.eps)
        hidden = functional.pad(torch.relu(x_hat1), PAD, mode="reflect")
        grad_hidden, grad_weight2, grad_bias2 = _conv_backward(grad_conv2, hidden, weight2, need_input=True)
        del hidden, grad_conv2
        grad_relu = torch.ops.aten.threshold_backward(
            torch.ops.aten.reflection_pad2d_backward(grad_hidden, x_hat1, PAD), x_hat1, 0)
        del grad_hidden
        grad_conv1 = _normalised_backward(grad_relu, x_hat1, invstd1, ctx.eps)
        del grad_relu
        grad_padded, grad_weight1, grad_bias1 = _conv_backward(grad_conv1, functional.pad(x, PAD, mode="reflect"),
                                                               weight1, need_input=ctx.needs_input_grad[0])
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad + torch.ops.aten.reflection_pad2d_backward(grad_padded, x, PAD)
        return grad_x, grad_weight1, grad_bias1, grad_weight2, grad_bias2, None, None


class LeanInstanceNormFunction(torch.autograd.Function):
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
        return instance_norm_backward(grad, maps, mean, invstd, ctx.eps), None


class LeanInstanceNorm2d(nn.InstanceNorm2d):
    """An affine-free nn.InstanceNorm2d without running statistics (same arguments, same empty state dict) that
    trains through `LeanInstanceNormFunction`; without gradients it is nn's own. Swapped in by `speed_up`."""

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        if maps.dim() != 4 or not torch.is_grad_enabled():
            return super().forward(maps)
        return LeanInstanceNormFunction.apply(maps, self.eps)


class LeanResidualBlock(ResidualBlock):
    """A ResidualBlock (same modules, same state dict) that trains through `LeanResidualFunction`, its forward
    convolutions through NNPACK where they are FastConv2d; without gradients it is the plain block. Swapped in by
    `speed_up` only where `lean_block_fits`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            return super().forward(x)
        first, second = (module for module in self.conv_block if isinstance(module, nn.Conv2d))
        eps = next(module.eps for module in self.conv_block if isinstance(module, nn.InstanceNorm2d))
        return LeanResidualFunction.apply(x, first.weight, first.bias, second.weight, second.bias, eps,
                                          isinstance(first, FastConv2d))


def lean_norm_fits(norm: nn.Module) -> bool:
    """Whether `norm` is an instance norm that `LeanInstanceNorm2d` computes exactly: no affine parameters, no
    running statistics."""
    return isinstance(norm, nn.InstanceNorm2d) and not norm.affine and not norm.track_running_stats


LEAN_LAYOUT = (nn.ReflectionPad2d, nn.Conv2d, nn.InstanceNorm2d, nn.ReLU, nn.ReflectionPad2d, nn.Conv2d,
               nn.InstanceNorm2d)


def lean_block_fits(block: ResidualBlock) -> bool:
    """Whether `LeanResidualFunction` computes `block` exactly: reflect-pad 1, 3x3 convolution with a bias,
    affine-free instance norm, ReLU, the same again, no dropout (the layout it was derived for)."""
    layers = list(block.conv_block)
    if len(layers) != len(LEAN_LAYOUT) or not all(isinstance(m, t) for m, t in zip(layers, LEAN_LAYOUT, strict=True)):
        return False
    pads = [m for m in layers if isinstance(m, nn.ReflectionPad2d)]
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    norms = [m for m in layers if isinstance(m, nn.InstanceNorm2d)]
    return (all(pad.padding == PAD for pad in pads) and all(norms[0].eps == norm.eps and lean_norm_fits(norm)
                                                             for norm in norms)
            and all(conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (0, 0)
                    and conv.dilation == (1, 1) and conv.groups == 1 and conv.bias is not None for conv in convs))
