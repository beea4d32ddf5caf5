"""Feature loss + GAN, a baseline of the CycleGAN paper (Sec. 5.1.3, Tables 2-3): SimGAN (Shrivastava et al. 2017)
with its L1 distance between x and G(x) measured on deep features instead of pixels.

Both generators are trained against their discriminators as in CycleGAN, plus

    lambda_feature * mean |phi(x) - phi(G(x))|   and   lambda_feature * mean |phi(y) - phi(F(y))|

with phi the ImageNet-trained VGG-16 up to relu4_2 (nets/vgg.py), a fixed measure: no cycle, no identity term. This
is CycleGAN's simgan objective (models/cyclegan.py) with one term measured differently, so the model is that class
with its self-regularisation replaced; the networks, optimisers, pools, checkpoints and resume are CycleGAN's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import losses
from ..config import NetworksConfig, TrainConfig, check_positive, option
from ..generators import build_generators
from ..io.vgg_weights import load_vgg16_features, resolve_vgg16_weights
from ..nets.vgg import VGG16Features
from .base import AdversarialOptions
from .cyclegan import CycleGAN, CycleGANOptions


@dataclass(frozen=True)
class FeatureGANOptions(AdversarialOptions):
    """How Feature loss + GAN trains: the adversarial loss (least squares, as CycleGAN), the feature term's weight
    and where the VGG-16 weights are. A and B may differ in channels: phi sees a grayscale image as RGB."""

    lambda_feature: float = option(10.0, "Weight of the feature loss mean |phi(x) - phi(G(x))| on VGG-16 relu4_2 "
                                   "features (paper Sec. 5.1.3). The paper gives none; 10, the simgan objective's "
                                   "weight of the pixel L1, because this term takes its place.")
    vgg_weights: str | None = option(None, "torchvision's VGG-16 weights file vgg16-397923af.pth (default: "
                                     "$CYCLEGAN_VGG16_WEIGHTS, else downloaded once into the cache, hash-checked).")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("lambda_feature", self.lambda_feature, allow_zero=True)

    def simgan(self) -> CycleGANOptions:
        """The CycleGAN options that train this objective: simgan, no identity term, the feature weight as the
        self-regularisation's."""
        return CycleGANOptions(gan_mode=self.gan_mode, lambda_gp=self.lambda_gp, objective="simgan",
                               lambda_identity=0.0, lambda_self_reg=self.lambda_feature)


class FixedFeatures:
    """phi, held outside the model's tree of modules: not in `networks()` (so not checkpointed, not DDP-wrapped),
    never switched to train mode and never optimised. It follows the images to their device on first use."""

    def __init__(self, net: VGG16Features) -> None:
        self.net = net

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if next(self.net.parameters()).device != images.device:
            self.net.to(images.device)
        return self.net(images)


class FeatureGAN(CycleGAN):
    """CycleGAN with `FeatureGANOptions.simgan()`, whose self-regularisation terms (self_reg_a, self_reg_b) are
    `losses.feature_l1_loss` through phi. `self.options` is that CycleGAN view; `feature_options` the model's own.
    The weights file is resolved (downloaded if need be) and read when the model is built, before training starts."""

    def __init__(self, networks: NetworksConfig, options: FeatureGANOptions, train: TrainConfig) -> None:
        super().__init__(networks, options.simgan(), train)
        self.feature_options = options
        self.phi = FixedFeatures(load_vgg16_features(resolve_vgg16_weights(options.vgg_weights)))

    @staticmethod
    def generators_for(networks: NetworksConfig) -> dict[str, nn.Module]:
        return build_generators("feature_gan", networks)

    def _self_regularization(self, fake: torch.Tensor, real: torch.Tensor, weight: float) -> torch.Tensor:
        return losses.feature_l1_loss(fake, real, self.phi, weight)  # Sec. 5.1.3: on relu4_2 features

    def sample(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Translations of fixed images, in eval mode, for the sample grids (no cycle, so no reconstructions)."""
        with self.evaluating():
            return {"real_a": real_a, "fake_b": self.gen_ab(real_a), "real_b": real_b, "fake_a": self.gen_ba(real_b)}
