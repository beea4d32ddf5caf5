"""Discriminators: the 70x70 PatchGAN of the paper (appendix 7.2) and the 1x1 PixelGAN of the official code."""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv_bias, norm_layer


class PatchDiscriminator(nn.Module):
    """C64-C128-C256-C512, then a 1-channel convolution: one real/fake score per overlapping image patch.

    No norm on the first layer, LeakyReLU 0.2. With n_layers=3 each output sees a 70x70 patch (Isola et al. 2017).
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = ndf
        for n in range(1, n_layers + 1):
            out = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1  # the last Ck layer keeps the resolution
            layers += [nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=bias), norm_layer(norm, out),
                       nn.LeakyReLU(0.2, True)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: judges each pixel's colour on its own."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, norm: str = "instance") -> None:
        super().__init__()
        bias = conv_bias(norm)
        self.net = nn.Sequential(  # named as in the official code, so its checkpoints load as they are
            nn.Conv2d(in_channels, ndf, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias), norm_layer(norm, ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_discriminator(arch: str, in_channels: int, ndf: int, n_layers: int, norm: str) -> nn.Module:
    """The discriminator named as in the official code: basic (70x70 PatchGAN), n_layers, pixel."""
    if arch == "basic":
        return PatchDiscriminator(in_channels, ndf, 3, norm)
    if arch == "n_layers":
        return PatchDiscriminator(in_channels, ndf, n_layers, norm)
    if arch == "pixel":
        return PixelDiscriminator(in_channels, ndf, norm)
    raise ValueError(f"unknown discriminator {arch!r}; use basic, n_layers or pixel")
