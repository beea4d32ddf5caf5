"""CoGAN (Liu & Tuzel, "Coupled Generative Adversarial Networks", NIPS 2016): a baseline of the CycleGAN paper
(Sec. 5.1.3, Tables 2 and 3).

Two GANs, one per domain, that draw from ONE latent code z and share weights (nets/cogan.py: every generator
layer but the last, every discriminator layer but the first), so that G_A(z) and G_B(z) are a corresponding pair.
Networks, by checkpoint name:

    gen_ab, gen_ba   A -> B and B -> A translators: latent searches (`nets.cogan.LatentSearch`) around the ONE
                     coupled generator (G_A, G_B), whose weights each of them holds under the same names
    disc_a, disc_b   D_A and D_B, sharing their trunk

Training is a plain GAN per domain on the same z batch (the CoGAN paper's Eq. 4, with its log-likelihood GAN,
`gan_mode` vanilla): D_A judges real a against G_A(z) and D_B real b against G_B(z) (halved, as the other models'
discriminators), then G_A and G_B, shared trunk included, fool both, in the non-saturating form. There is no image
pool (the registry's default pool_size 0: CoGAN's discriminators see the current z's images). Translation is
`LatentSearch`: the latent whose G_X image is x, rendered by G_Y.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import losses
from ..config import ConfigError, NetworksConfig, TrainConfig, with_default
from ..generators import build_generators
from ..nets.cogan import LATENT_SIZE, CoupledGenerator, build_discriminators
from ..training.pool import ImagePool
from .base import AdversarialOptions, TranslationModel, adam, loss_values, set_requires_grad, unwrap


@dataclass(frozen=True)
class CoGANOptions(AdversarialOptions):
    """How a CoGAN trains: the GAN loss (default vanilla, the log-likelihood GAN of the CoGAN paper, Eq. 4). Its
    generators draw from a latent code (gen_arch dcgan_32, dcgan_64, dcgan_128)."""

    latent_generators = True  # a ClassVar of ModelOptions: the config asks for a dcgan_* gen_arch
    gan_mode: str = with_default(AdversarialOptions, "gan_mode", "vanilla")

    def check_networks(self, networks: NetworksConfig) -> None:
        if (networks.disc_arch, networks.n_layers_d) != ("basic", 3):
            raise ConfigError(f"cogan has its own DCGAN discriminators (nets/cogan.py), so disc_arch="
                              f"{networks.disc_arch} and n_layers_d={networks.n_layers_d} do not apply; leave them "
                              "out")
        if networks.dropout:
            raise ConfigError("cogan's DCGAN generators have no dropout; leave dropout out")


class CoGAN(TranslationModel):
    """The coupled generator and discriminators, an Adam optimiser for each side; `training_step` is one
    iteration on a batch of each domain (unpaired) and one batch of latents."""

    discriminator_names = ("disc_a", "disc_b")

    options: CoGANOptions

    def __init__(self, networks: NetworksConfig, options: CoGANOptions, train: TrainConfig) -> None:
        super().__init__(networks, options, train.precision)
        generators = self.generators_for(networks)
        self.gen_ab, self.gen_ba = generators["gen_ab"], generators["gen_ba"]
        self.disc_a, self.disc_b = build_discriminators(networks)
        # Each parameter once: the shared trunks belong to both domains' networks.
        self.optimizers = {"gen": adam(self.generator.parameters(), train),
                           "disc": adam(nn.ModuleList([self.disc_a, self.disc_b]).parameters(), train)}
        self.pools = {"a": ImagePool(train.pool_size, seed=train.seed * 2 + 1),
                      "b": ImagePool(train.pool_size, seed=train.seed * 2 + 2)}
        self.sample_seed = train.seed
        self._speed_up(train.fast_convolutions)

    @staticmethod
    def generators_for(networks: NetworksConfig) -> dict[str, nn.Module]:
        return build_generators("cogan", networks)

    @property
    def generator(self) -> CoupledGenerator:
        """The coupled generator (G_A, G_B) inside both translators."""
        return unwrap(self.gen_ab).generator

    def networks(self) -> dict[str, nn.Module]:
        return {"gen_ab": self.gen_ab, "gen_ba": self.gen_ba, "disc_a": self.disc_a, "disc_b": self.disc_b}

    def distribute(self, rank: int, device_ids: list[int] | None = None) -> None:
        raise ConfigError("cogan trains in one process: its networks share layers, which one DistributedDataParallel "
                          "wrapper per network cannot hold; run it without torchrun")

    def training_step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """Update D_A and D_B, then G_A and G_B, on one batch of latents z ~ N(0, I) (torch's global generator, so
        a resume draws the same ones). Returns every loss term by name:

            disc_a, disc_b   D's side of the GAN loss, real a (b) against G_A(z) (G_B(z)), halved    (Eq. 4)
            gan_a, gan_b     what G_A and G_B minimise so that D_A and D_B call their images real    (Eq. 4)
            gp_a, gp_b       the WGAN-GP penalties, with gan_mode=wgangp
        """
        options = self.options
        z = torch.randn(real_a.shape[0], LATENT_SIZE, device=real_a.device)
        with self.autocast():
            fake_a, fake_b = self.generator(z)  # one pass through the shared trunk for both domains

        set_requires_grad((self.disc_a, self.disc_b), True)
        self.optimizers["disc"].zero_grad(set_to_none=True)
        disc_terms = {
            **self._discriminator_terms(self.disc_a, real_a, self.pools["a"].query(fake_a.detach().to(real_a.dtype)),
                                        "disc_a", "gp_a"),
            **self._discriminator_terms(self.disc_b, real_b, self.pools["b"].query(fake_b.detach().to(real_b.dtype)),
                                        "disc_b", "gp_b")}
        self.backward(sum(disc_terms.values()))
        self.optimizer_step("disc")

        set_requires_grad((self.disc_a, self.disc_b), False)  # G's backward pass leaves D's gradients alone
        self.optimizers["gen"].zero_grad(set_to_none=True)
        with self.autocast():
            terms = {"gan_a": losses.generator_adversarial_loss(self.disc_a(fake_a), options.gan_mode),
                     "gan_b": losses.generator_adversarial_loss(self.disc_b(fake_b), options.gan_mode)}
        self.backward(sum(terms.values()))
        self.optimizer_step("gen")
        self.end_step()
        return loss_values({**terms, **disc_terms})

    def sample(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """For the sample grids, in eval mode: pairs (G_A(z), G_B(z)) for fixed latents (drawn from a generator
        seeded with the run's seed, so the global random state is not touched), and the translations of the
        fixed real images by latent search."""
        seeded = torch.Generator().manual_seed(self.sample_seed)
        z = torch.randn(real_a.shape[0], LATENT_SIZE, generator=seeded).to(real_a.device)
        with self.evaluating():
            pair_a, pair_b = self.generator(z)
            return {"real_a": real_a, "fake_b": self.gen_ab(real_a), "real_b": real_b, "fake_a": self.gen_ba(real_b),
                    "pair_a": pair_a, "pair_b": pair_b}
