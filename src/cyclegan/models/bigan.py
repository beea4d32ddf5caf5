"""BiGAN / ALI (Donahue et al. 2017, "Adversarial feature learning"; Dumoulin et al. 2017, "Adversarially learned
inference"), as the CycleGAN paper adapts it to image translation for its baselines (Sec. 5.1.3).

Networks, in the CycleGAN notation:

    G: X -> Y   gen_ab   the ResNet generator of the other baselines (NetworksConfig.gen_arch)
    F: Y -> X   gen_ba   the inverse mapping (BiGAN's encoder E, ALI's inference network)
    D           disc     one PatchGAN on the pair cat(x, y): it sees channels_a + channels_b channels

BiGAN and ALI learn a generator and its inverse jointly against one discriminator of (data, code) pairs. Here the
"code" of an image of X is its translation into Y. D tells the pairs (x, G(x)) from the pairs (F(y), y), for
unpaired samples x and y, and G and F together try to make the two indistinguishable (Donahue et al. 2017, Eq. 3):

    min_{G,F} max_D  V(D, G, F) = E_x[log D(x, G(x))] + E_y[log(1 - D(F(y), y))]

There is no cycle, identity or L1 term. D calls (x, G(x)) real and (F(y), y) fake, its objective halved as for
every discriminator here (Zhu et al. Sec. 4). G and F are trained with the labels swapped, as both papers do
(`losses.adversarial_loss_toward`): G wants its pair called fake, F wants its pair called real. With lsgan (the
default, see `BiGANOptions`) the terms are least squares toward those labels instead of the log-likelihood.

Each step updates G and F together against a frozen D, then D, the order of the CycleGAN model. D may learn from a
history of generated pairs: train.pool_size keeps one pool of (x, G(x)) pairs and one of (F(y), y) pairs (pix2pix's
pool of pairs; CycleGAN's 50 by default, since the paper trains its baselines with its own settings).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from .. import losses
from ..config import NetworksConfig, TrainConfig, with_default
from ..generators import build_generators
from ..training.pool import ImagePool
from .base import AdversarialOptions, TranslationModel, adam, loss_values, set_requires_grad
from .pix2pix import build_conditional_discriminator


@dataclass(frozen=True)
class BiGANOptions(AdversarialOptions):
    """How the BiGAN/ALI baseline trains: its adversarial loss only (no reconstruction term of any kind).

    gan_mode defaults to lsgan, not the papers' log-likelihood: the CycleGAN paper implements its baselines with its
    own architecture and training details (Sec. 5.1.3), and least squares is its adversarial loss (Sec. 4). Set
    vanilla for the log-likelihood objective of Donahue et al. and Dumoulin et al."""

    gan_mode: str = with_default(AdversarialOptions, "gan_mode", "lsgan")


class BiGAN(TranslationModel):
    """gen_ab (G), gen_ba (F) and the pair discriminator disc; one Adam optimiser for G and F, one for D."""

    discriminator_names = ("disc",)

    options: BiGANOptions

    def __init__(self, networks: NetworksConfig, options: BiGANOptions, train: TrainConfig) -> None:
        super().__init__(networks, options, train.precision)
        generators = self.generators_for(networks)
        self.gen_ab, self.gen_ba = generators["gen_ab"], generators["gen_ba"]
        self.disc = build_conditional_discriminator(networks)  # cat(a, b): channels_a + channels_b inputs
        self.optimizers = {"gen": adam(itertools.chain(self.gen_ab.parameters(), self.gen_ba.parameters()), train),
                           "disc": adam(self.disc.parameters(), train)}
        # pool ab remembers the pairs (x, G(x)), which D calls real; pool ba the pairs (F(y), y), which it calls fake.
        self.pools = {"ab": ImagePool(train.pool_size, seed=train.seed * 2 + 1),
                      "ba": ImagePool(train.pool_size, seed=train.seed * 2 + 2)}
        self._speed_up(train.fast_convolutions)

    @staticmethod
    def generators_for(networks: NetworksConfig) -> dict[str, nn.Module]:
        return build_generators("bigan", networks)

    def networks(self) -> dict[str, nn.Module]:
        return {"gen_ab": self.gen_ab, "gen_ba": self.gen_ba, "disc": self.disc}

    def training_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """Update G and F against the frozen D, then D. Returns every term by name:

            gan_ab   G's term: D(x, G(x)) toward fake (the labels swapped, `losses.adversarial_loss_toward`)
            gan_ba   F's term: D(F(y), y) toward real
            disc     D's side of V: (x, G(x)) real, (F(y), y) fake, halved for lsgan and vanilla; gp with wgangp
        """
        gan_mode = self.options.gan_mode
        set_requires_grad((self.disc,), False)  # G's and F's backward pass leaves D's gradients alone
        self.optimizers["gen"].zero_grad(set_to_none=True)
        with self.autocast():
            pair_ab = torch.cat((real_a, self.gen_ab(real_a)), 1)  # (x, G(x))
            pair_ba = torch.cat((self.gen_ba(real_b), real_b), 1)  # (F(y), y)
            scores_ab, scores_ba = self._forward_each(self.disc, pair_ab, pair_ba)
            terms = {"gan_ab": losses.adversarial_loss_toward(scores_ab, False, gan_mode),
                     "gan_ba": losses.adversarial_loss_toward(scores_ba, True, gan_mode)}
        self.backward(sum(terms.values()))
        self.optimizer_step("gen")

        set_requires_grad((self.disc,), True)
        self.optimizers["disc"].zero_grad(set_to_none=True)
        # The pairs as G and F made them before their update, in the input precision (the pools keep it).
        judged_ab = self.pools["ab"].query(pair_ab.detach().to(real_a.dtype))
        judged_ba = self.pools["ba"].query(pair_ba.detach().to(real_a.dtype))
        disc_terms = self._discriminator_terms(self.disc, judged_ab, judged_ba)
        self.backward(sum(disc_terms.values()))
        self.optimizer_step("disc")
        self.end_step()
        return loss_values({**terms, **disc_terms})

    def sample(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both translations of fixed images, in eval mode, for the sample grids."""
        with self.evaluating():
            return {"real_a": real_a, "fake_b": self.gen_ab(real_a), "real_b": real_b, "fake_a": self.gen_ba(real_b)}
