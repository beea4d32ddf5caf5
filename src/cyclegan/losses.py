"""The CycleGAN objective as pure functions of tensors (Zhu et al. 2017, Sec. 3 and 4), and the terms of the
baselines it is compared with: pix2pix's L1 (Isola et al. 2017), SimGAN's self-regularisation (Shrivastava et al.
2017) and the same measured on deep features (the paper's "Feature loss + GAN").

Discriminator outputs are raw scores (no sigmoid); each loss decides how to read them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as functional

GAN_MODES = ("lsgan", "vanilla", "wgangp")  # the adversarial losses below implement


def generator_adversarial_loss(fake_scores: torch.Tensor, gan_mode: str) -> torch.Tensor:
    """What a generator minimises so that the discriminator calls its images real."""
    if gan_mode == "lsgan":  # Sec. 4: E[(D(G(x)) - 1)^2] (Mao et al. 2017)
        return functional.mse_loss(fake_scores, torch.ones_like(fake_scores))
    if gan_mode == "vanilla":  # Eq. 1, in the non-saturating form: -log D(G(x))
        return functional.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))
    if gan_mode == "wgangp":  # Gulrajani et al. 2017: -E[D(G(x))]
        return -fake_scores.mean()
    raise ValueError(f"unknown gan_mode {gan_mode!r}; use {', '.join(GAN_MODES)}")


def adversarial_loss_toward(scores: torch.Tensor, real: bool, gan_mode: str) -> torch.Tensor:
    """What a player minimises so that the discriminator gives `scores` the label `real` (True) or fake (False).

    With real=True it is `generator_adversarial_loss`. With real=False it is the same loss with the labels swapped:
    lsgan E[D(.)^2], vanilla -log(1 - D(.)), wgangp +E[D(.)]. BiGAN/ALI train their two mappings so against a
    discriminator of pairs (Donahue et al. 2017, Sec. 3.4: the inverted-label objective; Dumoulin et al. 2017,
    Algorithm 1): the one whose pairs D calls real wants them called fake, and the other way round.
    """
    if gan_mode not in GAN_MODES:
        raise ValueError(f"unknown gan_mode {gan_mode!r}; use {', '.join(GAN_MODES)}")
    if gan_mode == "wgangp":  # -E[D] toward real, +E[D] toward fake
        return -scores.mean() if real else scores.mean()
    target = torch.full_like(scores, 1.0 if real else 0.0)
    if gan_mode == "lsgan":  # Sec. 4 (Mao et al. 2017): E[(D - label)^2]
        return functional.mse_loss(scores, target)
    return functional.binary_cross_entropy_with_logits(scores, target)  # -log D, or -log(1 - D) toward fake


def discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor, gan_mode: str) -> torch.Tensor:
    """What a discriminator minimises: call real images real and generated ones fake.

    For lsgan and vanilla the sum is divided by 2 (Sec. 4: "we divide the objective by 2 while optimizing D"),
    slowing D relative to G. The Wasserstein critic loss is left undivided, as Gulrajani et al. define it.
    """
    if gan_mode == "lsgan":  # Sec. 4: E[(D(y) - 1)^2] + E[D(G(x))^2]
        real = functional.mse_loss(real_scores, torch.ones_like(real_scores))
        fake = functional.mse_loss(fake_scores, torch.zeros_like(fake_scores))
        return 0.5 * (real + fake)
    if gan_mode == "vanilla":  # Eq. 1: -log D(y) - log(1 - D(G(x)))
        real = functional.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
        fake = functional.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
        return 0.5 * (real + fake)
    if gan_mode == "wgangp":
        return fake_scores.mean() - real_scores.mean()
    raise ValueError(f"unknown gan_mode {gan_mode!r}; use {', '.join(GAN_MODES)}")


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     weight: float = 10.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017, Eq. 3): weight * E[(||grad D(x_hat)||_2 - 1)^2].

    x_hat lies on a random straight line between a real and a generated image (one mixing factor per image).
    """
    alpha = torch.rand((real.shape[0], 1, 1, 1), device=real.device, dtype=real.dtype, generator=generator)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    (gradients,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms = gradients.flatten(1).norm(2, dim=1)
    return weight * ((norms - 1) ** 2).mean()


def cycle_loss(reconstructed: torch.Tensor, real: torch.Tensor, weight: float) -> torch.Tensor:
    """Eq. 2: weight * ||F(G(x)) - x||_1 (or ||G(F(y)) - y||_1), the cycle-consistency loss (paper: weight 10)."""
    return weight * functional.l1_loss(reconstructed, real)


def identity_loss(same: torch.Tensor, real: torch.Tensor, weight: float) -> torch.Tensor:
    """Sec. 5.2 (Taigman et al.): weight * ||G(y) - y||_1, a generator fed its own target domain should not change
    it; the paper uses weight = 0.5 * lambda."""
    return weight * functional.l1_loss(same, real)


def paired_l1_loss(fake: torch.Tensor, target: torch.Tensor, weight: float) -> torch.Tensor:
    """pix2pix, Isola et al. 2017, Eq. 3: weight * ||y - G(x)||_1 against the paired target (Sec. 4: weight 100)."""
    return weight * functional.l1_loss(fake, target)


def self_regularization_loss(translated: torch.Tensor, source: torch.Tensor, weight: float) -> torch.Tensor:
    """SimGAN, Shrivastava et al. 2017, Sec. 2.1 (with psi the identity): weight * ||G(x) - x||_1, keeping the
    translation near its input (the CycleGAN paper's SimGAN baseline, Sec. 5.1.3)."""
    return weight * functional.l1_loss(translated, source)


def feature_l1_loss(translated: torch.Tensor, source: torch.Tensor,
                    features: Callable[[torch.Tensor], torch.Tensor], weight: float) -> torch.Tensor:
    """CycleGAN paper Sec. 5.1.3, "Feature loss + GAN": SimGAN's self-regularisation measured on deep features
    instead of pixels, weight * mean |phi(G(x)) - phi(x)|, with phi a fixed network (VGG-16 relu4_2 there). The
    gradient reaches G through phi; the caller freezes phi's own weights."""
    return weight * functional.l1_loss(features(translated), features(source))
