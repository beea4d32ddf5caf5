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
from ..generators import build_generators
from ..nets.discriminators import build_discriminator
from ..nets.layers import init_weights
from ..training.pool import ImagePool
from .base import TranslationModel, adam, loss_values, set_requires_grad

LOSS_NAMES = ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "self_reg_a", "self_reg_b", "idt_a", "idt_b", "disc_a",
              "disc_b", "gp_a", "gp_b")


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
    discriminator_names = ("disc_a", "disc_b")

    def __init__(self, config: ModelConfig, train: TrainConfig) -> None:
        super().__init__(config, train.precision)
        generators = build_generators(config)
        self.gen_ab, self.gen_ba = generators["gen_ab"], generators["gen_ba"]
        self.disc_a, self.disc_b = build_discriminators(config)
        # One optimiser per player, as in the official code: G and F share one, D_X and D_Y the other.
        self.optimizers = {
            "gen": adam(itertools.chain(self.gen_ab.parameters(), self.gen_ba.parameters()), train),
            "disc": adam(itertools.chain(self.disc_a.parameters(), self.disc_b.parameters()), train)}
        # pool a remembers F's outputs (fake A) for disc_a; pool b remembers G's outputs for disc_b.
        self.pools = {"a": ImagePool(train.pool_size, seed=train.seed * 2 + 1),
                      "b": ImagePool(train.pool_size, seed=train.seed * 2 + 2)}
        self._speed_up(train.fast_convolutions)

    @staticmethod
    def generators_for(config: ModelConfig) -> dict[str, nn.Module]:
        return build_generators(config)

    def networks(self) -> dict[str, nn.Module]:
        return {"gen_ab": self.gen_ab, "gen_ba": self.gen_ba, "disc_a": self.disc_a, "disc_b": self.disc_b}

    def training_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One iteration: update G and F together, then D_X and D_Y together. Returns every loss term by name.

        The generators' objective is a sum over two chains that share parameters but no activations: x -> G(x) ->
        {D_Y, F(G(x))} with the identity term G(y), and y -> F(y) -> {D_X, G(F(y))} with F(x). Each chain is
        back-propagated as soon as it is built: the gradients add up in `.grad` to those of the sum, and only one
        chain's activations are alive at a time (half the memory). The plain reference step
        (tests/reference_step.py) builds both and back-propagates their sum once."""
        terms: dict[str, torch.Tensor] = {}
        discriminators = (self.disc_a, self.disc_b)
        # The discriminators are frozen so that the generators' backward pass does not fill their gradients.
        set_requires_grad(discriminators, False)
        self.optimizers["gen"].zero_grad(set_to_none=True)
        chains = (("a", real_a, real_b, self.gen_ab, self.gen_ba, self.disc_b),
                  ("b", real_b, real_a, self.gen_ba, self.gen_ab, self.disc_a))
        fakes = {}
        # Distributed, the generators that the second chain calls again reduce both chains' gradients at once.
        called_again = [self.gen_ba, self.gen_ab] if self.config.uses_backward_cycle else [self.gen_ba]
        with self.accumulating(called_again):
            terms, fakes["a"] = self._generator_chain(*chains[0])
            self.backward(sum(terms.values()))
        chain_terms, fakes["b"] = self._generator_chain(*chains[1])
        self.backward(sum(chain_terms.values()))
        terms.update(chain_terms)
        self.optimizer_step("gen")

        # Discriminators, on a history of generated images (Sec. 4).
        if self.config.uses_gan:
            fake_b, fake_a = fakes["a"], fakes["b"]
            set_requires_grad(discriminators, True)
            self.optimizers["disc"].zero_grad(set_to_none=True)
            disc_terms = self._discriminator_terms(self.disc_b, real_b, self.pools["b"].query(fake_b), "_b")
            disc_terms.update(self._discriminator_terms(self.disc_a, real_a, self.pools["a"].query(fake_a), "_a"))
            self.backward(sum(disc_terms.values()))
            self.optimizer_step("disc")
            terms.update(disc_terms)
        self.end_step()
        return loss_values(terms)

    def _generator_chain(self, domain: str, real: torch.Tensor, other: torch.Tensor, forward: nn.Module,
                         backward: nn.Module, disc: nn.Module) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The generator terms that start from `real` of `domain` (a: x, G, F, D_Y; b: y, F, G, D_X), and the
        generated image (detached), for the image pool: the adversarial term of `forward` (Eq. 1), the cycle
        back to `real` (Eq. 2), the identity term `forward(other) ~ other` (Sec. 5.2) and SimGAN's
        self-regularisation (Sec. 5.1.3), as the objective asks."""
        with self.autocast():
            if self.config.lambda_identity > 0:  # forward(other) beside forward(real): one call where that is exact
                fake, identity = self._forward_each(forward, real, other)
            else:
                fake, identity = forward(real), None
            terms = self._chain_terms(domain, real, other, fake, identity, backward, disc)
        return terms, fake.detach().to(real.dtype)  # the pools keep the input precision under autocast

    def _chain_terms(self, domain: str, real: torch.Tensor, other: torch.Tensor, fake: torch.Tensor,
                     identity: torch.Tensor | None, backward: nn.Module, disc: nn.Module) -> dict[str, torch.Tensor]:
        """The loss terms of one chain, given its generated image `fake` and identity output (or None)."""
        config = self.config
        target = "b" if domain == "a" else "a"
        arrow = "ab" if domain == "a" else "ba"
        lambda_real = config.lambda_a if domain == "a" else config.lambda_b
        lambda_other = config.lambda_b if domain == "a" else config.lambda_a
        terms: dict[str, torch.Tensor] = {}
        if config.uses_gan:  # Eq. 1, for G (chain a) or F (chain b)
            terms[f"gan_{arrow}"] = losses.generator_adversarial_loss(disc(fake), config.gan_mode)
        cycle = config.uses_forward_cycle if domain == "a" else config.uses_backward_cycle
        if cycle:  # Eq. 2: F(G(x)) ~ x (chain a), G(F(y)) ~ y (chain b)
            terms[f"cycle_{domain}"] = losses.cycle_loss(backward(fake), real, lambda_real)
        if config.uses_self_regularization:  # SimGAN baseline (Sec. 5.1.3): G(x) ~ x, F(y) ~ y
            terms[f"self_reg_{domain}"] = losses.self_regularization_loss(fake, real, config.lambda_self_reg)
        if identity is not None:  # Sec. 5.2: G(y) ~ y, F(x) ~ x
            terms[f"idt_{target}"] = losses.identity_loss(identity, other, lambda_other * config.lambda_identity)
        return terms

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
