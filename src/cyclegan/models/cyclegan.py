"""CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017): the networks and one optimisation step.

Notation. The paper translates between domains X and Y; we call them A and B, as the official code's folders do:

    G: X -> Y   gen_ab      D_Y  disc_b   (real B images vs. G's output)
    F: Y -> X   gen_ba      D_X  disc_a   (real A images vs. F's output)

Full objective (Eq. 3): L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda * L_cyc(G, F), plus the identity term of Sec. 5.2.
(The official code calls gen_ab netG_A, gen_ba netG_B, disc_b netD_A and disc_a netD_B.)
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
from torch import nn

from .. import losses
from ..config import ModelConfig, TrainConfig
from ..nets.discriminators import build_discriminator
from ..nets.generators import build_generator
from ..nets.layers import init_weights
from ..training.pool import ImagePool

LOSS_NAMES = ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b", "disc_a", "disc_b", "gp_a", "gp_b")


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


def _set_requires_grad(nets: tuple[nn.Module, ...], flag: bool) -> None:
    for net in nets:
        for parameter in net.parameters():
            parameter.requires_grad_(flag)


class CycleGAN(nn.Module):
    """The four networks, their two Adam optimisers and the two image pools; `training_step` is one iteration."""

    def __init__(self, config: ModelConfig, train: TrainConfig, fuse_batches: bool = True) -> None:
        super().__init__()
        self.config = config
        self.fuse_batches = fuse_batches
        self.gen_ab, self.gen_ba = build_generators(config)
        self.disc_a, self.disc_b = build_discriminators(config)
        betas = (train.beta1, train.beta2)  # paper Sec. 4: Adam, beta1 = 0.5
        # One optimiser per player, as in the official code: G and F share one, D_X and D_Y the other.
        self.optimizer_gen = torch.optim.Adam(
            itertools.chain(self.gen_ab.parameters(), self.gen_ba.parameters()), lr=train.lr, betas=betas)
        self.optimizer_disc = torch.optim.Adam(
            itertools.chain(self.disc_a.parameters(), self.disc_b.parameters()), lr=train.lr, betas=betas)
        # pool_a remembers F's outputs (fake A) for disc_a; pool_b remembers G's outputs for disc_b.
        self.pool_a = ImagePool(train.pool_size, seed=train.seed * 2 + 1)
        self.pool_b = ImagePool(train.pool_size, seed=train.seed * 2 + 2)

    @property
    def device(self) -> torch.device:
        return next(self.gen_ab.parameters()).device

    def set_learning_rate(self, lr: float) -> None:
        for optimizer in (self.optimizer_gen, self.optimizer_disc):
            for group in optimizer.param_groups:
                group["lr"] = lr

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
        _set_requires_grad(discriminators, False)
        self.optimizer_gen.zero_grad(set_to_none=True)
        if config.uses_gan:  # Eq. 1 for G and for F
            terms["gan_ab"] = losses.generator_adversarial_loss(self.disc_b(fake_b), config.gan_mode)
            terms["gan_ba"] = losses.generator_adversarial_loss(self.disc_a(fake_a), config.gan_mode)
        if config.uses_forward_cycle:  # Eq. 2, forward: F(G(x)) ~ x
            terms["cycle_a"] = losses.cycle_loss(self.gen_ba(fake_b), real_a, config.lambda_a)
        if config.uses_backward_cycle:  # Eq. 2, backward: G(F(y)) ~ y
            terms["cycle_b"] = losses.cycle_loss(self.gen_ab(fake_a), real_b, config.lambda_b)
        if lambda_idt > 0:
            terms["idt_b"] = losses.identity_loss(idt_b, real_b, config.lambda_b * lambda_idt)
            terms["idt_a"] = losses.identity_loss(idt_a, real_a, config.lambda_a * lambda_idt)
        sum(terms.values()).backward()
        self.optimizer_gen.step()

        # Discriminators, on a history of generated images (Sec. 4).
        if config.uses_gan:
            _set_requires_grad(discriminators, True)
            self.optimizer_disc.zero_grad(set_to_none=True)
            disc_terms = self._discriminator_terms(self.disc_b, real_b, self.pool_b.query(fake_b), "b")
            disc_terms.update(self._discriminator_terms(self.disc_a, real_a, self.pool_a.query(fake_a), "a"))
            sum(disc_terms.values()).backward()
            self.optimizer_disc.step()
            terms.update(disc_terms)

        names = list(terms)
        values = torch.stack([value.detach().float() for value in terms.values()]).tolist()  # one device sync
        return dict(zip(names, values, strict=True))

    def _discriminator_terms(self, disc: nn.Module, real: torch.Tensor, fake: torch.Tensor, domain: str
                             ) -> dict[str, torch.Tensor]:
        fake = fake.detach()
        real_scores, fake_scores = self._forward_each(disc, real, fake)
        terms = {f"disc_{domain}": losses.discriminator_loss(real_scores, fake_scores, self.config.gan_mode)}
        if self.config.gan_mode == "wgangp":  # the penalty the official code defines but never applies
            terms[f"gp_{domain}"] = losses.gradient_penalty(disc, real, fake, self.config.lambda_gp)
        return terms

    def _forward_each(self, net: nn.Module, *batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`net` on each batch. Without batch norm every image is normalised on its own, so one call on the
        concatenation gives the same result with less overhead; batch norm would mix the batches, so it gets one
        call each. `fuse_batches=False` always calls separately (the plain reference step)."""
        if not self.fuse_batches or self.config.norm == "batch":
            return tuple(net(batch) for batch in batches)
        return net(torch.cat(batches)).split([batch.shape[0] for batch in batches])

    @torch.no_grad()
    def sample(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Translations, reconstructions and identities of fixed images, in eval mode, for the sample grids."""
        was_training = self.training
        self.eval()
        try:
            fake_b, fake_a = self.gen_ab(real_a), self.gen_ba(real_b)
            images = {"real_a": real_a, "fake_b": fake_b, "rec_a": self.gen_ba(fake_b),
                      "real_b": real_b, "fake_a": fake_a, "rec_b": self.gen_ab(fake_a)}
            if self.config.channels_a == self.config.channels_b:
                images["idt_a"] = self.gen_ba(real_a)
                images["idt_b"] = self.gen_ab(real_b)
            return images
        finally:
            self.train(was_training)

    def training_state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs: optimiser moments and both image pools."""
        return {"optimizers": {"gen": self.optimizer_gen.state_dict(), "disc": self.optimizer_disc.state_dict()},
                "pools": {"a": self.pool_a.state_dict(), "b": self.pool_b.state_dict()}}

    def load_training_state(self, state: dict[str, Any]) -> None:
        self.optimizer_gen.load_state_dict(state["optimizers"]["gen"])
        self.optimizer_disc.load_state_dict(state["optimizers"]["disc"])
        self.pool_a.load_state_dict(state["pools"]["a"], self.device)
        self.pool_b.load_state_dict(state["pools"]["b"], self.device)

    def network_state(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"gen_ab": self.gen_ab.state_dict(), "gen_ba": self.gen_ba.state_dict(),
                "disc_a": self.disc_a.state_dict(), "disc_b": self.disc_b.state_dict()}

    def load_network_state(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        self.gen_ab.load_state_dict(state["gen_ab"])
        self.gen_ba.load_state_dict(state["gen_ba"])
        self.disc_a.load_state_dict(state["disc_a"])
        self.disc_b.load_state_dict(state["disc_b"])
