"""Generators: the paper's ResNet (appendix 7.2) and pix2pix's U-Net (Isola et al. 2017).

Layers come in the same order and under the same module names as in the official code, so parameter counts match
it exactly and its state dicts load as they are (`io/official.py`).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv_bias, norm_layer


class ResidualBlock(nn.Module):
    """R256 in the paper: two 3x3 convolutions with reflection padding, added to the input."""

    def __init__(self, channels: int, norm: str, dropout: bool) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels),
            nn.ReLU(True),
        ]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels)]
        self.conv_block = nn.Sequential(*layers)  # official key names: checkpoints load as they are

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """c7s1-64, d128, d256, N x R256, u128, u64, c7s1-3 (paper appendix 7.2; Johnson et al. 2016).

    N = 6 for 128x128 images and 9 for 256x256 and larger. Input sides must be multiples of 4 (`size_multiple`)
    and at least 8 (`min_size`).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", dropout: bool = False) -> None:
        super().__init__()
        bias = conv_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias), norm_layer(norm, ngf), nn.ReLU(True),
        ]
        for factor in (1, 2):  # d128, d256
            layers += [nn.Conv2d(ngf * factor, ngf * factor * 2, 3, stride=2, padding=1, bias=bias),
                       norm_layer(norm, ngf * factor * 2), nn.ReLU(True)]
        layers += [ResidualBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for factor in (4, 2):  # u128, u64: fractional-strided convolutions
            layers += [nn.ConvTranspose2d(ngf * factor, ngf * factor // 2, 3, stride=2, padding=1,
                                          output_padding=1, bias=bias),
                       norm_layer(norm, ngf * factor // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.size_multiple = 4
        # A side of 4 leaves 1 pixel after the two stride-2 convolutions, which the blocks' ReflectionPad2d(1)
        # cannot reflect (and instance norm cannot normalise); 8 leaves 2 (as nets/sizes.py derives for configs).
        self.min_size = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetBlock(nn.Module):
    """One level of the U-Net: downsample, the inner levels, upsample, and a skip connection around them."""

    def __init__(self, outer: int, inner: int, in_channels: int | None = None, submodule: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, norm: str = "batch", dropout: bool = False
                 ) -> None:
        super().__init__()
        self.outermost = outermost
        bias = conv_bias(norm)
        in_channels = outer if in_channels is None else in_channels
        down_conv = nn.Conv2d(in_channels, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            down: list[nn.Module] = [down_conv]
            up: list[nn.Module] = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1),
                                   nn.Tanh()]
        elif innermost:
            down = [nn.LeakyReLU(0.2), down_conv]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias),
                  norm_layer(norm, outer)]
        else:
            down = [nn.LeakyReLU(0.2), down_conv, norm_layer(norm, inner)]
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=bias),
                  norm_layer(norm, outer)]
            if dropout:
                up.append(nn.Dropout(0.5))
        middle = [] if submodule is None else [submodule]
        self.model = nn.Sequential(*down, *middle, *up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with `n_downs` halvings (7 for 128x128 images, 8 for 256x256); skip connections between mirrored levels.

    Input sides must be multiples of 2**n_downs (`size_multiple`); one multiple is also the smallest (`min_size`):
    the innermost level then works on 1x1 maps.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, n_downs: int = 8, ngf: int = 64,
                 norm: str = "batch", dropout: bool = False) -> None:
        super().__init__()
        block = UnetBlock(ngf * 8, ngf * 8, norm=norm, innermost=True)
        for _ in range(n_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, dropout=dropout)
        for factor in (4, 2, 1):
            block = UnetBlock(ngf * factor, ngf * factor * 2, submodule=block, norm=norm)
        self.model = UnetBlock(out_channels, ngf, in_channels=in_channels, submodule=block, outermost=True,
                               norm=norm)
        self.size_multiple = 2**n_downs
        self.min_size = self.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def build_generator(arch: str, in_channels: int, out_channels: int, ngf: int, norm: str, dropout: bool
                    ) -> nn.Module:
    """The generator named as in the official code: resnet_9blocks, resnet_6blocks, unet_128, unet_256."""
    if arch == "resnet_9blocks":
        return ResnetGenerator(in_channels, out_channels, ngf, 9, norm, dropout)
    if arch == "resnet_6blocks":
        return ResnetGenerator(in_channels, out_channels, ngf, 6, norm, dropout)
    if arch == "unet_128":
        return UnetGenerator(in_channels, out_channels, 7, ngf, norm, dropout)
    if arch == "unet_256":
        return UnetGenerator(in_channels, out_channels, 8, ngf, norm, dropout)
    raise ValueError(f"unknown generator {arch!r}; use resnet_9blocks, resnet_6blocks, unet_128 or unet_256")
