"""CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017): the networks and one optimisation step.

Notation. The paper translates between domains X and Y; we call them A and B, as the official code's folders do:

    G: X -> Y   gen_ab      D_Y  disc_b   (real B images vs. G's output)
    F: Y -> X   gen_ba      D_X  disc_a   (real A images vs. F's output)

Full objective (Eq. 3): L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda * L_cyc(G, F), plus the identity term of Sec. 5.2.
`ModelConfig.objective` trains a part of it instead (the ablations of Sec. 5.1.4) or the SimGAN baseline.
(The official code calls gen_ab netG_A, gen_ba netG_B, disc_b netD_A and disc_a netD_B.)
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .. import losses
from ..config import ModelConfig, TrainConfig
from ..nets.discriminators import build_discriminator
from ..nets.generators import build_generator
from ..nets.layers import init_weights
from ..training.pool import ImagePool
from .base import TranslationModel, adam, loss_values, set_requires_grad

LOSS_NAMES = ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "self_reg_a", "self_reg_b", "idt_a", "idt_b", "disc_a",
              "disc_b", "gp_a", "gp_b")


def build_generators(config: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """gen_ab (G: A -> B) and gen_ba (F: B -> A), initialised; all that translation needs."""
    gen_ab = build_generator(config.gen_arch, config.channels_a, config.channels_b, config.ngf, config.norm,
                             config.dropout)
    gen_ba = build_generator(config.gen_arch, config.channels_b, config.channels_a, config.ngf, config.norm,
                             config.dropout)
    return (init_weights(gen_ab, config.init_type, config.init_gain),
            init_weights(gen_ba, config.init_type, config.init_gain))


def build_discriminators(config: ModelConfig) -> tuple[nn.Module, nn.Module]:
    """disc_a (D_X, judges domain A) and disc_b (D_Y, judges domain B), initialised."""
    disc_a = build_discriminator(config.disc_arch, config.channels_a, config.ndf, config.n_layers_d, config.norm)
    disc_b = build_discriminator(config.disc_arch, config.channels_b, config.ndf, config.n_layers_d, config.norm)
    return (init_weights(disc_a, config.init_type, config.init_gain),
            init_weights(disc_b, config.init_type, config.init_gain))


class CycleGAN(TranslationModel):
    """The four networks, their two Adam optimisers and the two image pools; `training_step` is one iteration.

    `config.objective` chooses the terms: the full objective, one of the paper's ablations (Sec. 5.1.4), or the
    SimGAN baseline (Sec. 5.1.3), adversarial loss plus |x - G(x)|_1 for both G and F, without the cycle.
    """

    paired = False

    def __init__(self, config: ModelConfig, train: TrainConfig, fuse_batches: bool = True) -> None:
        super().__init__(config, fuse_batches)
        self.gen_ab, self.gen_ba = build_generators(config)
        self.disc_a, self.disc_b = build_discriminators(config)
        # One optimiser per player, as in the official code: G and F share one, D_X and D_Y the other.
        self.optimizers = {
            "gen": adam(itertools.chain(self.gen_ab.parameters(), self.gen_ba.parameters()), train),
            "disc": adam(itertools.chain(self.disc_a.parameters(), self.disc_b.parameters()), train)}
        # pool a remembers F's outputs (fake A) for disc_a; pool b remembers G's outputs for disc_b.
        self.pools = {"a": ImagePool(train.pool_size, seed=train.seed * 2 + 1),
                      "b": ImagePool(train.pool_size, seed=train.seed * 2 + 2)}

    @staticmethod
    def generators_for(config: ModelConfig) -> dict[str, nn.Module]:
        gen_ab, gen_ba = build_generators(config)
        return {"gen_ab": gen_ab, "gen_ba": gen_ba}

    def networks(self) -> dict[str, nn.Module]:
        return {"gen_ab": self.gen_ab, "gen_ba": self.gen_ba, "disc_a": self.disc_a, "disc_b": self.disc_b}

    def training_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One iteration: update G and F together, then D_X and D_Y together. Returns every loss term by name."""
        config = self.config
        lambda_idt = config.lambda_identity
        terms: dict[str, torch.Tensor] = {}

        if lambda_idt > 0:  # Sec. 5.2: G(y) ~ y and F(x) ~ x, computed beside G(x) and F(y)
            fake_b, idt_b = self._forward_each(self.gen_ab, real_a, real_b)
            fake_a, idt_a = self._forward_each(self.gen_ba, real_b, real_a)
        else:
            fake_b, fake_a = self.gen_ab(real_a), self.gen_ba(real_b)  # G(x), F(y)

        # Generators. The discriminators are frozen so that G's backward pass does not fill their gradients.
        discriminators = (self.disc_a, self.disc_b)
        set_requires_grad(discriminators, False)
        self.optimizers["gen"].zero_grad(set_to_none=True)
        if config.uses_gan:  # Eq. 1 for G and for F
            terms["gan_ab"] = losses.generator_adversarial_loss(self.disc_b(fake_b), config.gan_mode)
            terms["gan_ba"] = losses.generator_adversarial_loss(self.disc_a(fake_a), config.gan_mode)
        if config.uses_forward_cycle:  # Eq. 2, forward: F(G(x)) ~ x
            terms["cycle_a"] = losses.cycle_loss(self.gen_ba(fake_b), real_a, config.lambda_a)
        if config.uses_backward_cycle:  # Eq. 2, backward: G(F(y)) ~ y
            terms["cycle_b"] = losses.cycle_loss(self.gen_ab(fake_a), real_b, config.lambda_b)
        if config.uses_self_regularization:  # SimGAN baseline (Sec. 5.1.3): G(x) ~ x and F(y) ~ y
            terms["self_reg_a"] = losses.self_regularization_loss(fake_b, real_a, config.lambda_self_reg)
            terms["self_reg_b"] = losses.self_regularization_loss(fake_a, real_b, config.lambda_self_reg)
        if lambda_idt > 0:
            terms["idt_b"] = losses.identity_loss(idt_b, real_b, config.lambda_b * lambda_idt)
            terms["idt_a"] = losses.identity_loss(idt_a, real_a, config.lambda_a * lambda_idt)
        sum(terms.values()).backward()
        self.optimizers["gen"].step()

        # Discriminators, on a history of generated images (Sec. 4).
        if config.uses_gan:
            set_requires_grad(discriminators, True)
            self.optimizers["disc"].zero_grad(set_to_none=True)
            disc_terms = self._discriminator_terms(self.disc_b, real_b, self.pools["b"].query(fake_b), "_b")
            disc_terms.update(self._discriminator_terms(self.disc_a, real_a, self.pools["a"].query(fake_a), "_a"))
            sum(disc_terms.values()).backward()
            self.optimizers["disc"].step()
            terms.update(disc_terms)
        return loss_values(terms)

    def sample(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Translations, reconstructions and identities of fixed images, in eval mode, for the sample grids."""
        with self.evaluating():
            fake_b, fake_a = self.gen_ab(real_a), self.gen_ba(real_b)
            images = {"real_a": real_a, "fake_b": fake_b, "rec_a": self.gen_ba(fake_b),
                      "real_b": real_b, "fake_a": fake_a, "rec_b": self.gen_ab(fake_a)}
            if self.config.channels_a == self.config.channels_b:
                images["idt_a"] = self.gen_ba(real_a)
                images["idt_b"] = self.gen_ab(real_b)
            return images
