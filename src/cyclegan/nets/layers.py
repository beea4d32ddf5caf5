"""Building blocks shared by the generators and discriminators: normalisation, convolution biases and weight
initialisation. Plain PyTorch modules only; the faster layers that compute the same functions are swapped in from
outside (`nets.speed.speed_up`)."""

from __future__ import annotations

from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Normalisation over `channels` feature maps.

    Instance norm has no learned affine parameters and no running statistics, as in the paper's code (Ulyanov et
    al.); batch norm keeps both.
    """
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
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
