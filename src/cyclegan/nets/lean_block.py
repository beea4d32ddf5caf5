"""The ResNet generator's residual block (R256) as one autograd function that keeps less for the backward pass.

The block is reflect-pad, 3x3 convolution, instance norm, ReLU, reflect-pad, 3x3 convolution, instance norm, plus
the input. Built from modules, autograd keeps five feature maps per block for the backward pass: both padded inputs,
both convolution outputs and the ReLU output (and an in-place ReLU on the norm's reshaped view adds a copy). Here we
keep three: the block input x and the two normalised maps x_hat1, x_hat2. Everything else is recomputed in the
backward pass from those, cheaply: padding and ReLU are copies. Nothing expensive is recomputed: no convolution.

Instance norm without affine parameters (the paper's) has, per image and channel, y = (c - mean) * invstd = x_hat and
    dL/dc = invstd * (g - mean(g) - x_hat * mean(g * x_hat)),   g = dL/dy,
which needs only x_hat and invstd, not c. We evaluate it with PyTorch's batch-norm backward kernel on the (1, N*C,
H, W) view, given x_hat as the input with mean 0 and invstd 1, and the true invstd as the affine weight.

The result is the same function with the same gradients, up to float rounding (tests compare it with the module
path in float64). It is used only where it is exact: instance norm, no dropout, gradients enabled.
"""

from __future__ import annotations

import torch
from torch.autograd.function import FunctionCtx, once_differentiable
from torch.nn import functional

from .layers import conv2d

PAD = (1, 1, 1, 1)


def _instance_norm(maps: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """x_hat and invstd (one per image and channel) of affine-free instance norm, with biased variance as nn's."""
    batch, channels, height, width = maps.shape
    x_hat, _, invstd = torch.native_batch_norm(maps.reshape(1, batch * channels, height, width), None, None, None,
                                               None, True, 0.0, eps)
    return x_hat.view(batch, channels, height, width), invstd


def _instance_norm_backward(grad: torch.Tensor, x_hat: torch.Tensor, invstd: torch.Tensor, eps: float
                            ) -> torch.Tensor:
    batch, channels, height, width = x_hat.shape
    flat = (1, batch * channels, height, width)
    zeros, ones = torch.zeros_like(invstd), torch.ones_like(invstd)
    grad_input, _, _ = torch.ops.aten.native_batch_norm_backward(
        grad.reshape(flat), x_hat.reshape(flat), invstd, None, None, zeros, ones, True, eps, [True, False, False])
    return grad_input.view(batch, channels, height, width)


def _conv_backward(grad: torch.Tensor, inputs: torch.Tensor, weight: torch.Tensor, need_input: bool
                   ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Gradients of a 3x3 convolution (stride 1, no padding, with bias) for its input, weight and bias."""
    return torch.ops.aten.convolution_backward(grad, inputs, weight, [weight.shape[0]], [1, 1], [0, 0], [1, 1],
                                               False, [0, 0], 1, [need_input, True, True])


class LeanResidualBlock(torch.autograd.Function):
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
        grad_conv2 = _instance_norm_backward(grad, x_hat2, invstd2, ctx.eps)
        hidden = functional.pad(torch.relu(x_hat1), PAD, mode="reflect")
        grad_hidden, grad_weight2, grad_bias2 = _conv_backward(grad_conv2, hidden, weight2, need_input=True)
        del hidden, grad_conv2
        grad_relu = torch.ops.aten.threshold_backward(
            torch.ops.aten.reflection_pad2d_backward(grad_hidden, x_hat1, PAD), x_hat1, 0)
        del grad_hidden
        grad_conv1 = _instance_norm_backward(grad_relu, x_hat1, invstd1, ctx.eps)
        del grad_relu
        grad_padded, grad_weight1, grad_bias1 = _conv_backward(grad_conv1, functional.pad(x, PAD, mode="reflect"),
                                                               weight1, need_input=ctx.needs_input_grad[0])
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad + torch.ops.aten.reflection_pad2d_backward(grad_padded, x, PAD)
        return grad_x, grad_weight1, grad_bias1, grad_weight2, grad_bias2, None, None
