"""VGG-16 (Simonyan & Zisserman 2015, configuration D) up to relu4_2: the fixed feature network phi of the CycleGAN
paper's "Feature loss + GAN" baseline (Sec. 5.1.3).

The layers sit at the indices of torchvision's `vgg16().features`, so the `features.*` entries of its ImageNet state
dict (vgg16-397923af.pth) load under their own names: relu4_2 is `features[20]`, the ReLU after conv4_2
(`features.19`), and `features[:21]` is what we keep. The weights file is found and read by io/vgg_weights.py; this
module knows only tensors.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

# 3x3 convolutions by their output channels and 2x2 max-pools ("M"), block by block, through conv4_2.
RELU4_2_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512)
# The statistics of ImageNet's training images that torchvision's VGG weights were trained to expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """Our images (in [-1, 1]) as the ImageNet-trained VGG expects them: in [0, 1], then (v - mean) / std per RGB
    channel. A one-channel (grayscale) batch is repeated into the three channels first."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


class VGG16Features(nn.Module):
    """phi: images in [-1, 1] (1 or 3 channels) -> their VGG-16 relu4_2 features (512 channels, 1/8 the size)."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for spec in RELU4_2_LAYERS:
            if spec == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, spec, 3, padding=1), nn.ReLU()]
                channels = spec
        self.features = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(imagenet_normalize(images))


def features_state(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The entries of a torchvision VGG-16 state dict that `VGG16Features` holds (the `features.*` ones through
    conv4_2; the deeper layers and the classifier are dropped), in float32. Raises ValueError naming `source` when
    one is missing or has another shape (another network's weights, e.g. VGG-16 with batch norm)."""
    with torch.device("meta"):  # the shapes alone, without allocating or initialising anything
        wanted = {name: tuple(tensor.shape) for name, tensor in VGG16Features().state_dict().items()}
    advice = "give torchvision's VGG-16 ImageNet weights (vgg16-397923af.pth)"
    missing = [name for name in wanted if name not in state]
    if missing:
        raise ValueError(f"{source} is not a VGG-16 state dict: it lacks {', '.join(missing[:3])}"
                         f"{' ...' if len(missing) > 3 else ''}; {advice}")
    for name, shape in wanted.items():
        if tuple(state[name].shape) != shape:
            raise ValueError(f"{source} is not a VGG-16 state dict: {name} has shape {tuple(state[name].shape)}, "
                             f"not {shape}; {advice}")
    return {name: state[name].float() for name in wanted}
