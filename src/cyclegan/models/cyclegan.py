"""CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017): the networks and one optimisation step.

Notation. The paper translates between domains X and Y; we call them A and B, as the official code's folders do:

    G: X -> Y   gen_ab      D_Y  disc_b   (real B images vs. G's output)
    F: Y -> X   gen_ba      D_X  disc_a   (real A images vs. F's output)

Full objective (Eq. 3): L_GAN(G, D_Y) + L_GAN(F, D_X) + lambda * L_cyc(G, F), plus the identity term of Sec. 5.2.
`CycleGANOptions.objective` trains a part of it instead (the ablations of Sec. 5.1.4) or the SimGAN baseline.
(The official code calls gen_ab netG_A, gen_ba netG_B, disc_b netD_A and disc_a netD_B.)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from .. import losses
from ..config import ConfigError, NetworksConfig, TrainConfig, check_positive, option
from ..generators import build_generators
from ..nets.discriminators import build_discriminator
from ..nets.layers import init_weights
from ..training.pool import ImagePool
from .base import AdversarialOptions, TranslationModel, adam, loss_values, set_requires_grad

# The paper's ablations (Sec. 5.1.4, Tables 4-5): which terms of the full objective (Eq. 3) are trained; and its
# SimGAN baseline (Sec. 5.1.3; Shrivastava et al. 2017): adversarial loss plus lambda * |x - G(x)|_1, no cycle.
OBJECTIVES = ("full", "gan_only", "cycle_only", "gan_forward", "gan_backward", "simgan")


@dataclass(frozen=True)
class CycleGANOptions(AdversarialOptions):
    """How a CycleGAN trains: the weights of the objective's terms (Eq. 3, Sec. 5.2) and which terms it has."""

    lambda_a: float = option(10.0, "Weight of the forward cycle loss |F(G(a)) - a| (paper: 10).")
    lambda_b: float = option(10.0, "Weight of the backward cycle loss |G(F(b)) - b| (paper: 10).")
    lambda_identity: float = option(0.5, "Identity loss weight, as a fraction of lambda_a/b (paper Sec. 5.2: 0.5; "
                                    "0 disables it).")
    objective: str = option("full", "Terms of the CycleGAN objective: full, a paper ablation (gan_only, "
                            "cycle_only, gan_forward, gan_backward), or simgan: GAN + lambda_self_reg * "
                            "|x - G(x)| instead of the cycle (paper Sec. 5.1.3).", OBJECTIVES)
    lambda_self_reg: float = option(10.0, "Weight of the simgan objective's self-regularisation |a - G(a)| and "
                                    "|b - F(b)| (Shrivastava et al. 2017). 10, the cycle loss's weight, because the "
                                    "term takes the cycle's place and is the same mean L1 over pixels.")

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("lambda_a", "lambda_b", "lambda_identity", "lambda_self_reg"):
            check_positive(name, getattr(self, name), allow_zero=True)

    def check_networks(self, networks: NetworksConfig) -> None:
        channels = f"channels_a={networks.channels_a}, channels_b={networks.channels_b}"
        if self.lambda_identity > 0 and networks.channels_a != networks.channels_b:
            raise ConfigError(f"the identity loss needs domains with equal channels ({channels}); set "
                              "lambda_identity=0")
        if self.objective == "simgan" and networks.channels_a != networks.channels_b:
            raise ConfigError(f"the simgan objective compares |x - G(x)|, which needs domains with equal channels "
                              f"({channels})")

    @property
    def uses_gan(self) -> bool:
        return self.objective != "cycle_only"

    @property
    def uses_forward_cycle(self) -> bool:
        return self.objective in ("full", "cycle_only", "gan_forward")

    @property
    def uses_backward_cycle(self) -> bool:
        return self.objective in ("full", "cycle_only", "gan_backward")

    @property
    def uses_self_regularization(self) -> bool:
        return self.objective == "simgan"

LOSS_NAMES = ("gan_ab", "gan_ba", "cycle_a", "cycle_b", "self_reg_a", "self_reg_b", "idt_a", "idt_b", "disc_a",
              "disc_b", "gp_a", "gp_b")


@dataclass(frozen=True)
class TermNames:
    """The names of one direction's loss terms (for A -> B: gan_ab, cycle_a, self_reg_a, idt_b, disc_b, gp_b)."""

    gan: str
    cycle: str
    self_reg: str
    identity: str
    disc: str
    gp: str

    @classmethod
    def between(cls, source: str, target: str) -> TermNames:
        return cls(f"gan_{source}{target}", f"cycle_{source}", f"self_reg_{source}", f"idt_{target}",
                   f"disc_{target}", f"gp_{target}")


@dataclass(frozen=True)
class Direction:
    """One direction of the cycle, in the paper's letters for A -> B: G translates x (`real`) into Y, D_Y judges
    G's outputs against a real y (`other`), F translates them back. B -> A is the same record with F, G, D_X and
    y, x: the objective is symmetric (Eq. 3), so the same lines compute both directions' terms."""

    G: nn.Module
    F: nn.Module
    D_Y: nn.Module
    real: torch.Tensor
    other: torch.Tensor
    lambda_cycle: float  # lambda of Eq. 3 for x -> G(x) -> F(G(x)): lambda_a for A -> B
    lambda_identity: float  # of G(y) ~ y (Sec. 5.2): lambda of Y's cycle times lambda_identity, as the official code
    cycle: bool  # whether the objective trains this cycle (the ablations of Sec. 5.1.4)
    pool: ImagePool  # G's past outputs, which D_Y is trained on (Sec. 4)
    names: TermNames

    @property
    def generators_called(self) -> tuple[nn.Module, ...]:
        """The generators this direction's terms call: G, and F for the cycle."""
        return (self.G, self.F) if self.cycle else (self.G,)


def build_discriminators(networks: NetworksConfig) -> tuple[nn.Module, nn.Module]:
    """disc_a (D_X, judges domain A) and disc_b (D_Y, judges domain B), initialised."""
    n = networks
    disc_a = build_discriminator(n.disc_arch, n.channels_a, n.ndf, n.n_layers_d, n.norm)
    disc_b = build_discriminator(n.disc_arch, n.channels_b, n.ndf, n.n_layers_d, n.norm)
    return init_weights(disc_a, n.init_type, n.init_gain), init_weights(disc_b, n.init_type, n.init_gain)


class CycleGAN(TranslationModel):
    """The four networks, their two Adam optimisers and the two image pools; `training_step` is one iteration.

    `options.objective` chooses the terms: the full objective, one of the paper's ablations (Sec. 5.1.4), or the
    SimGAN baseline (Sec. 5.1.3), adversarial loss plus |x - G(x)|_1 for both G and F, without the cycle.
    """

    discriminator_names = ("disc_a", "disc_b")

    options: CycleGANOptions

    def __init__(self, networks: NetworksConfig, options: CycleGANOptions, train: TrainConfig) -> None:
        super().__init__(networks, options, train.precision)
        generators = self.generators_for(networks)
        self.gen_ab, self.gen_ba = generators["gen_ab"], generators["gen_ba"]
        self.disc_a, self.disc_b = build_discriminators(networks)
        # One optimiser per player, as in the official code: G and F share one, D_X and D_Y the other.
        self.optimizers = {
            "gen": adam(itertools.chain(self.gen_ab.parameters(), self.gen_ba.parameters()), train),
            "disc": adam(itertools.chain(self.disc_a.parameters(), self.disc_b.parameters()), train)}
        # pool a remembers F's outputs (fake A) for disc_a; pool b remembers G's outputs for disc_b.
        self.pools = {"a": ImagePool(train.pool_size, seed=train.seed * 2 + 1),
                      "b": ImagePool(train.pool_size, seed=train.seed * 2 + 2)}
        self._speed_up(train.fast_convolutions)

    @staticmethod
    def generators_for(networks: NetworksConfig) -> dict[str, nn.Module]:
        return build_generators("cyclegan", networks)

    def networks(self) -> dict[str, nn.Module]:
        return {"gen_ab": self.gen_ab, "gen_ba": self.gen_ba, "disc_a": self.disc_a, "disc_b": self.disc_b}

    def training_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One iteration: update G and F together, then D_X and D_Y together. Returns every loss term by name:

            L(G, F, D_X, D_Y) = L_GAN(G, D_Y, X, Y) + L_GAN(F, D_X, Y, X) + lambda L_cyc(G, F)       (Eq. 3)
            gan_ab, gan_ba   L_GAN for G and for F, least squares by default            (Eq. 1, Sec. 4)
            cycle_a, cycle_b lambda_a |F(G(x)) - x|_1, lambda_b |G(F(y)) - y|_1         (Eq. 2)
            idt_b, idt_a     lambda_b lambda_idt |G(y) - y|_1, lambda_a lambda_idt |F(x) - x|_1 (Sec. 5.2)
            disc_b, disc_a   D_Y's and D_X's side of Eq. 1, divided by 2 (Sec. 4); gp_b, gp_a with WGAN-GP

        The generators' objective is a sum over two chains that share parameters but no activations: x -> G(x) ->
        {D_Y, F(G(x))} with the identity term G(y), and y -> F(y) -> {D_X, G(F(y))} with F(x). Each chain is
        back-propagated as soon as it is built: the gradients add up in `.grad` to those of the sum, and only one
        chain's activations are alive at a time (half the memory). The plain reference step
        (tests/reference_step.py) builds both and back-propagates their sum once."""
        x_to_y, y_to_x = self._directions(real_a, real_b)
        # The discriminators are frozen so that the generators' backward pass does not fill their gradients.
        set_requires_grad((self.disc_a, self.disc_b), False)
        self.optimizers["gen"].zero_grad(set_to_none=True)
        # Distributed, the generators that the y chain calls again reduce both chains' gradients at once.
        with self.accumulating(y_to_x.generators_called):
            x_terms, fake_b = self._generator_terms(x_to_y)
            self.backward(sum(x_terms.values()))
        y_terms, fake_a = self._generator_terms(y_to_x)
        self.backward(sum(y_terms.values()))
        self.optimizer_step("gen")
        terms = {**x_terms, **y_terms}

        if self.options.uses_gan:  # D_Y and D_X, on a history of generated images (Sec. 4)
            set_requires_grad((self.disc_a, self.disc_b), True)
            self.optimizers["disc"].zero_grad(set_to_none=True)
            disc_terms = {**self._judge_terms(x_to_y, fake_b), **self._judge_terms(y_to_x, fake_a)}
            self.backward(sum(disc_terms.values()))
            self.optimizer_step("disc")
            terms.update(disc_terms)
        self.end_step()
        return loss_values(terms)

    def _directions(self, real_a: torch.Tensor, real_b: torch.Tensor) -> tuple[Direction, Direction]:
        """A -> B (G, F, D_Y, x = real_a) and B -> A (F, G, D_X, y = real_b), with the networks as they are now
        (DDP-wrapped in a distributed run) and the pools of the images each direction generates."""
        options = self.options
        a_to_b = Direction(G=self.gen_ab, F=self.gen_ba, D_Y=self.disc_b, real=real_a, other=real_b,
                           lambda_cycle=options.lambda_a, lambda_identity=options.lambda_b * options.lambda_identity,
                           cycle=options.uses_forward_cycle, pool=self.pools["b"], names=TermNames.between("a", "b"))
        b_to_a = Direction(G=self.gen_ba, F=self.gen_ab, D_Y=self.disc_a, real=real_b, other=real_a,
                           lambda_cycle=options.lambda_b, lambda_identity=options.lambda_a * options.lambda_identity,
                           cycle=options.uses_backward_cycle, pool=self.pools["a"], names=TermNames.between("b", "a"))
        return a_to_b, b_to_a

    def _generator_terms(self, d: Direction) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The generator terms of one direction, written for A -> B (x, G, F, D_Y; B -> A swaps the letters),
        and G(x), detached, for D_Y's image pool."""
        options = self.options
        terms: dict[str, torch.Tensor] = {}
        with self.autocast():
            if options.lambda_identity > 0:  # G(y) beside G(x): one call where that is exact
                fake, same = self._forward_each(d.G, d.real, d.other)
            else:
                fake, same = d.G(d.real), None
            if options.uses_gan:  # Eq. 1 (least squares, Sec. 4): D_Y(G(x)) ~ real
                terms[d.names.gan] = losses.generator_adversarial_loss(d.D_Y(fake), options.gan_mode)
            if d.cycle:  # Eq. 2: F(G(x)) ~ x
                terms[d.names.cycle] = losses.cycle_loss(d.F(fake), d.real, d.lambda_cycle)
            if options.uses_self_regularization:  # SimGAN baseline (Sec. 5.1.3): G(x) ~ x
                terms[d.names.self_reg] = self._self_regularization(fake, d.real, options.lambda_self_reg)
            if same is not None:  # Sec. 5.2: G(y) ~ y
                terms[d.names.identity] = losses.identity_loss(same, d.other, d.lambda_identity)
        return terms, fake.detach().to(d.real.dtype)  # the pools keep the input precision under autocast

    def _self_regularization(self, fake: torch.Tensor, real: torch.Tensor, weight: float) -> torch.Tensor:
        """The simgan objective's weight * |x - G(x)|_1 over pixels; models/feature_gan.py measures it on features."""
        return losses.self_regularization_loss(fake, real, weight)

    def _judge_terms(self, d: Direction, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """D_Y's terms: real y against G's outputs drawn from its pool (Sec. 4)."""
        return self._discriminator_terms(d.D_Y, d.other, d.pool.query(fake), d.names.disc, d.names.gp)

    def sample(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """Translations, reconstructions and identities of fixed images, in eval mode, for the sample grids."""
        with self.evaluating():
            fake_b, fake_a = self.gen_ab(real_a), self.gen_ba(real_b)
            images = {"real_a": real_a, "fake_b": fake_b, "rec_a": self.gen_ba(fake_b),
                      "real_b": real_b, "fake_a": fake_a, "rec_b": self.gen_ab(fake_a)}
            if self.architecture.channels_a == self.architecture.channels_b:
                images["idt_a"] = self.gen_ba(real_a)
                images["idt_b"] = self.gen_ab(real_b)
            return images
