"""The one boundary of the speed work: `speed_up` gives a built, plain network faster layers that compute the same
function, and takes them away again. The networks themselves (generators.py, discriminators.py) know nothing of it.

Each faster layer is a subclass of the plain module it stands in for, adding only a forward path, and is swapped in
by changing that module's class: the module keeps its parameters, buffers, name and hooks, so state-dict keys
(official weights, old checkpoints), optimisers holding the parameters and DDP see the same network.

- lean (for training in float32): `LeanResidualBlock` for each residual block and `LeanInstanceNorm2d` for each
  instance norm, where they are exact (lean_block.py: affine-free instance norm, no dropout). Their backward passes
  are differentiable once, so a network that is differentiated twice (WGAN-GP's critic) must stay plain.
- fast_convolutions: `FastConv2d` (convolutions.py: NNPACK, or with `winograd` our Winograd for 3x3 inference) for
  the ResNet generator's residual-block convolutions and its output convolution, the ones measured faster.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from .convolutions import FastConv2d
from .generators import ResidualBlock, ResnetGenerator
from .lean_block import LeanInstanceNorm2d, LeanResidualBlock, lean_block_fits, lean_norm_fits

SPEED_LAYERS = (LeanResidualBlock, LeanInstanceNorm2d, FastConv2d)


def speed_up(net: nn.Module, *, lean: bool, fast_convolutions: bool, winograd: bool = False) -> nn.Module:
    """Swap the lean training layers (`lean`) and the fast convolutions (`fast_convolutions`, with `winograd`
    for 3x3 inference) into `net` where they compute the same function, or back to the plain modules where the
    flag is False. In place; returns `net`."""
    for module in net.modules():
        if type(module) in (ResidualBlock, LeanResidualBlock):
            _swap(module, LeanResidualBlock if lean and lean_block_fits(module) else ResidualBlock)
        elif type(module) in (nn.InstanceNorm2d, LeanInstanceNorm2d):
            _swap(module, LeanInstanceNorm2d if lean and lean_norm_fits(module) else nn.InstanceNorm2d)
    for conv in _fast_convolution_sites(net):
        _swap(conv, FastConv2d if fast_convolutions else nn.Conv2d)
        if fast_convolutions:
            conv.winograd = winograd
        else:
            conv.__dict__.pop("winograd", None)
    return net


def speed_layers(net: nn.Module) -> list[nn.Module]:
    """The faster layers `speed_up` has swapped into `net`."""
    return [module for module in net.modules() if isinstance(module, SPEED_LAYERS)]


def _fast_convolution_sites(net: nn.Module) -> Iterator[nn.Module]:
    """The convolutions that take FastConv2d: each residual block's two, and a ResNet generator's last one (c7s1-3).
    Its first (c7s1-64, three input channels) and strided ones keep oneDNN's kernels."""
    for module in net.modules():
        if isinstance(module, ResidualBlock):
            yield from (layer for layer in module.conv_block if type(layer) in (nn.Conv2d, FastConv2d))
        elif isinstance(module, ResnetGenerator):
            last = [layer for layer in module.model if isinstance(layer, nn.Conv2d)][-1]
            if type(last) in (nn.Conv2d, FastConv2d):
                yield last


def _swap(module: nn.Module, cls: type[nn.Module]) -> None:
    """Make `module` an instance of `cls`, one of the plain class and its faster subclass (no state of its own)."""
    module.__class__ = cls
