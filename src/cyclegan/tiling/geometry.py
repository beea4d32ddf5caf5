"""Which input rows a local run of layers needs for given output rows, derived from the layers themselves.

A module with no instance norm is local: each output row depends on a bounded range of input rows. Running it on a
crop of its input rows gives exactly the whole image's values in the output rows whose whole dependency range lies
inside the crop, provided (1) the crop's sides at the true image border are the image's border, so the network's
own padding (reflection, zeros) sees what it sees on the whole image, and (2) the crop starts on a row that keeps
every strided layer's sampling grid where it is on the whole image (`alignment`). Then the crop's output row j is
the whole output's row `scale * start + j` for every module below (padding layers included: their output row j
of a crop starting at L is the padded image's row L + j).

The functions here walk the modules; `needed_rows` is exact for every layer kind (the union of each output row's
dependencies, rounded by the stride of fractional-strided convolutions), so a crop of these rows is the smallest
that works: tests/test_tiling.py checks that every row in it matters and that no row outside does.
"""

from __future__ import annotations

import math
from fractions import Fraction

from torch import nn

from ..nets.generators import ResidualBlock, UnetBlock

PADS = (nn.ReflectionPad2d, nn.ReplicationPad2d, nn.ZeroPad2d, nn.ConstantPad2d)
POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout, nn.BatchNorm2d)


class UntileableError(ValueError):
    """A module whose rows cannot be tiled exactly (unknown kind, or a training-mode layer)."""


def is_global_norm(module: nn.Module) -> bool:
    """Instance norm that normalises with each map's own statistics: its output rows depend on the whole map.
    (With running statistics in eval mode it is a pointwise affine map, as batch norm in eval mode is.)"""
    return isinstance(module, nn.InstanceNorm2d) and (module.training or not module.track_running_stats)


def has_global_norm(module: nn.Module) -> bool:
    return any(is_global_norm(inner) for inner in module.modules())


def _pointwise(module: nn.Module) -> bool:
    if isinstance(module, (nn.BatchNorm2d, nn.Dropout)) and module.training:
        raise UntileableError(f"{type(module).__name__} is in training mode; tiling needs the network in eval "
                              "mode (net.eval())")
    return isinstance(module, POINTWISE) or (isinstance(module, nn.InstanceNorm2d) and not is_global_norm(module))


def _conv(module: nn.Module, axis: int) -> tuple[int, int, int, int]:
    if isinstance(module.padding, str):
        raise UntileableError(f"{module} has padding={module.padding!r}; tiling needs numeric padding")
    return module.kernel_size[axis], module.stride[axis], module.padding[axis], module.dilation[axis]


def _pad_before(module: nn.Module, axis: int) -> tuple[int, int]:
    left, right, top, bottom = module.padding
    return (top, bottom) if axis == 0 else (left, right)


def _children(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return list(module)
    if isinstance(module, ResidualBlock):
        return [module.conv_block]
    if isinstance(module, UnetBlock):
        return [module.model]
    return []


def _unknown(module: nn.Module) -> UntileableError:
    return UntileableError(f"cannot tile a network with a {type(module).__name__} layer (it is not one whose "
                           "receptive field tiling knows); use whole-image translation")


def needed_rows(module: nn.Module, start: int, stop: int, axis: int = 0) -> tuple[int, int]:
    """The input rows [lo, hi) that output rows [start, stop) of `module` depend on, ignoring the image border
    (where padding stands in for them); `axis` 1 gives columns."""
    if isinstance(module, nn.Sequential):
        for child in reversed(list(module)):
            start, stop = needed_rows(child, start, stop, axis)
        return start, stop
    if isinstance(module, (ResidualBlock, UnetBlock)):  # x + f(x), cat(x, f(x)): the skip needs the rows themselves
        lo, hi = needed_rows(_children(module)[0], start, stop, axis)
        outermost = isinstance(module, UnetBlock) and module.outermost
        return (lo, hi) if outermost else (min(lo, start), max(hi, stop))
    if isinstance(module, nn.ConvTranspose2d):  # output o gathers inputs i with o = i * s - p + d * k'
        kernel, stride, padding, dilation = _conv(module, axis)
        return -((-(start + padding - dilation * (kernel - 1))) // stride), (stop - 1 + padding) // stride + 1
    if isinstance(module, nn.Conv2d):  # output o reads inputs o * s - p + d * k', k' = 0 .. kernel - 1
        kernel, stride, padding, dilation = _conv(module, axis)
        return start * stride - padding, (stop - 1) * stride - padding + dilation * (kernel - 1) + 1
    if isinstance(module, PADS):
        before, _ = _pad_before(module, axis)
        return start - before, stop - before
    if _pointwise(module):
        return start, stop
    raise _unknown(module)


def scale(module: nn.Module, axis: int = 0) -> Fraction:
    """Output rows per input row: 1/2 for a stride-2 convolution, 2 for a fractional-strided one."""
    if isinstance(module, nn.ConvTranspose2d):
        return Fraction(module.stride[axis])
    if isinstance(module, nn.Conv2d):
        return Fraction(1, module.stride[axis])
    children = _children(module)
    if children:
        return math.prod((scale(child, axis) for child in children), start=Fraction(1))
    if isinstance(module, PADS) or _pointwise(module):
        return Fraction(1)
    raise _unknown(module)


def alignment(module: nn.Module, axis: int = 0) -> int:
    """The multiple a crop's first row must be so that every strided convolution inside samples the rows it
    samples on the whole image: the input start L reaches a layer as L * (scale of the layers before it)."""
    if isinstance(module, nn.Conv2d) and not isinstance(module, nn.ConvTranspose2d):
        return module.stride[axis]
    if isinstance(module, nn.Sequential):
        result, before = 1, Fraction(1)
        for child in module:
            result = math.lcm(result, (alignment(child, axis) / before).numerator)
            before *= scale(child, axis)
        return result
    children = _children(module)
    return alignment(children[0], axis) if children else 1


def out_size(module: nn.Module, size: int, axis: int = 0) -> int:
    """The output side for an input side `size`, by each layer's own size formula."""
    if isinstance(module, nn.ConvTranspose2d):
        kernel, stride, padding, dilation = _conv(module, axis)
        return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + module.output_padding[axis] + 1
    if isinstance(module, nn.Conv2d):
        kernel, stride, padding, dilation = _conv(module, axis)
        return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if isinstance(module, PADS):
        return size + sum(_pad_before(module, axis))
    if isinstance(module, nn.Sequential):
        for child in module:
            size = out_size(child, size, axis)
        return size
    children = _children(module)
    return out_size(children[0], size, axis) if children else size


def out_channels(module: nn.Module, channels: int) -> int:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return module.out_channels
    if isinstance(module, nn.Sequential):
        for child in module:
            channels = out_channels(child, channels)
        return channels
    if isinstance(module, UnetBlock):
        inner = out_channels(module.model, channels)
        return inner if module.outermost else channels + inner
    return channels


def peak_elements(module: nn.Module, channels: int, height: int, width: int) -> int:
    """How many feature-map elements are alive at once while `module` runs under no_grad (its input and output
    included): what whole-image translation's memory is made of."""
    size = channels * height * width
    after = (out_channels(module, channels) * out_size(module, height, 0) * out_size(module, width, 1))
    if isinstance(module, nn.Sequential):
        peak = size
        for child in module:
            peak = max(peak, peak_elements(child, channels, height, width))
            channels, height, width = out_channels(child, channels), out_size(child, height), out_size(child, width, 1)
        return peak
    children = _children(module)
    if children:  # the skip input stays alive beside the inner layers, then x, f(x) and the sum or concatenation
        inner = peak_elements(children[0], channels, height, width)
        outermost = isinstance(module, UnetBlock) and module.outermost
        return inner if outermost else max(inner + size, 2 * after + (size if isinstance(module, ResidualBlock) else 0))
    if isinstance(module, (nn.ReLU, nn.LeakyReLU)) and module.inplace or isinstance(module, (nn.Dropout,
                                                                                             nn.Identity)):
        return size
    return size + after
