"""pix2pix (Isola, Zhu, Zhou, Efros, CVPR 2017): the paired baseline the CycleGAN paper calls its upper bound.

Networks, in the CycleGAN notation (the official code's names in brackets):

    G: A -> B   gen_ab   [netG]   U-Net-256 with dropout (Sec. 3.2.1: dropout is the noise z)
    D           disc_b   [netD]   conditional PatchGAN: judges the pair cat(a, b), so it sees a + b channels

Objective (Eq. 4): G* = arg min_G max_D L_cGAN(G, D) + lambda * L_L1(G), with lambda = 100 (Sec. 4). As in the
official code, each step first updates D on the real pair (a, b) and the generated pair (a, G(a)), its objective
halved (Sec. 3.3), then G against the updated D. pix2pix has no image pool (pool_size 0 is its default); a nonzero
pool_size keeps a history of generated pairs, as CycleGAN keeps one of images.

Inference: the paper runs G at test time as in training (dropout on, batch statistics, Sec. 3.3); `sample` and the
Translator use eval mode instead (running statistics, no dropout), so a translation is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import losses
from ..config import NetworksConfig, TrainConfig, check_positive, option, with_default
from ..generators import build_generators
from ..nets.discriminators import build_discriminator
from ..nets.layers import init_weights
from ..training.pool import ImagePool
from .base import AdversarialOptions, TranslationModel, adam, loss_values, set_requires_grad


@dataclass(frozen=True)
class Pix2PixOptions(AdversarialOptions):
    """How pix2pix trains (the official pix2pix_model.py's defaults): the log-likelihood GAN and the L1 weight. It
    has no identity or self-regularisation term, so A and B may differ in channels."""

    gan_mode: str = with_default(AdversarialOptions, "gan_mode", "vanilla")
    lambda_l1: float = option(100.0, "Weight of pix2pix's L1 loss |G(a) - b| (Isola et al. 2017, Sec. 4: 100).")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("lambda_l1", self.lambda_l1, allow_zero=True)


def build_conditional_discriminator(networks: NetworksConfig) -> nn.Module:
    """disc_b: a PatchGAN (or PixelGAN) on the channel concatenation of the input a and its output b."""
    n = networks
    disc = build_discriminator(n.disc_arch, n.channels_a + n.channels_b, n.ndf, n.n_layers_d, n.norm)
    return init_weights(disc, n.init_type, n.init_gain)


class Pix2Pix(TranslationModel):
    """gen_ab and the conditional disc_b, one Adam optimiser each; `training_step` is one iteration on pairs."""

    discriminator_names = ("disc_b",)

    options: Pix2PixOptions

    def __init__(self, networks: NetworksConfig, options: Pix2PixOptions, train: TrainConfig) -> None:
        super().__init__(networks, options, train.precision)
        self.gen_ab = self.generators_for(networks)["gen_ab"]
        self.disc_b = build_conditional_discriminator(networks)
        self.optimizers = {"gen": adam(self.gen_ab.parameters(), train),
                           "disc": adam(self.disc_b.parameters(), train)}
        self.pools = {"b": ImagePool(train.pool_size, seed=train.seed * 2 + 2)}
        self._speed_up(train.fast_convolutions)

    @staticmethod
    def generators_for(networks: NetworksConfig) -> dict[str, nn.Module]:
        return build_generators("pix2pix", networks)

    def networks(self) -> dict[str, nn.Module]:
        return {"gen_ab": self.gen_ab, "disc_b": self.disc_b}

    def training_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """Update D on (a, b) against (a, G(a)), then G. Returns gan, l1, disc (and gp with wgangp)."""
        options = self.options
        with self.autocast():
            fake_b = self.gen_ab(real_a)  # G(x)
            fake_pair = torch.cat((real_a, fake_b), 1)  # D is conditioned on the input (Eq. 1)

        set_requires_grad((self.disc_b,), True)
        self.optimizers["disc"].zero_grad(set_to_none=True)
        disc_terms = self._discriminator_terms(self.disc_b, torch.cat((real_a, real_b), 1),
                                               self.pools["b"].query(fake_pair.detach().to(real_a.dtype)))
        self.backward(sum(disc_terms.values()))
        self.optimizer_step("disc")

        set_requires_grad((self.disc_b,), False)  # G's backward pass leaves D's gradients alone
        self.optimizers["gen"].zero_grad(set_to_none=True)
        with self.autocast():
            terms = {"gan": losses.generator_adversarial_loss(self.disc_b(fake_pair), options.gan_mode),  # Eq. 1
                     "l1": losses.paired_l1_loss(fake_b, real_b, options.lambda_l1)}  # Eq. 3
        self.backward(sum(terms.values()))  # Eq. 4
        self.optimizer_step("gen")
        self.end_step()
        return loss_values({**terms, **disc_terms})

    def sample(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Input, translation and target of fixed pairs, in eval mode, for the sample grids."""
        with self.evaluating():
            return {"real_a": real_a, "fake_b": self.gen_ab(real_a), "real_b": real_b}
