"""The plain CycleGAN step, the oracle that the optimised one (models/cyclegan.py) is checked against.

Written the straightforward way, as the official code's `backward_G` / `backward_D` are: the networks' plain modules
(`plain_networks`: no lean layers, oneDNN's convolutions), one network call per batch, the generators' whole
objective (Eq. 3 with the identity term of Sec. 5.2) back-propagated once, then the discriminators'. It uses the
model's networks, optimisers, pools and precision, so a twin of an optimised model steps from the same state.
Also imported by benchmarks/train_step.py (--reference).
"""

from __future__ import annotations

import torch

from cyclegan import losses
from cyclegan.models.base import loss_values, set_requires_grad
from cyclegan.models.cyclegan import CycleGAN
from cyclegan.nets.speed import speed_up


def plain_networks(model: CycleGAN) -> CycleGAN:
    """`model` with every network on its plain module path (what the reference step runs)."""
    for net in model.plain_networks().values():
        speed_up(net, lean=False, fast_convolutions=False)
    return model


def reference_step(model: CycleGAN, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
    """One iteration of `model` the plain way: G and F on their whole objective, then D_X and D_Y."""
    set_requires_grad((model.disc_a, model.disc_b), False)
    model.optimizers["gen"].zero_grad(set_to_none=True)
    with model.autocast():
        terms, fake_b, fake_a = _generator_terms(model, real_a, real_b)
    model.backward(sum(terms.values()))
    model.optimizer_step("gen")
    if model.options.uses_gan:
        set_requires_grad((model.disc_a, model.disc_b), True)
        model.optimizers["disc"].zero_grad(set_to_none=True)
        disc_terms = _discriminator_terms(model, "b", model.disc_b, real_b, fake_b)  # D_Y
        disc_terms.update(_discriminator_terms(model, "a", model.disc_a, real_a, fake_a))  # D_X
        model.backward(sum(disc_terms.values()))
        model.optimizer_step("disc")
        terms.update(disc_terms)
    model.end_step()
    return loss_values(terms)


def _generator_terms(model: CycleGAN, real_a: torch.Tensor, real_b: torch.Tensor
                     ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    config = model.options
    fake_b, fake_a = model.gen_ab(real_a), model.gen_ba(real_b)  # G(x), F(y)
    terms: dict[str, torch.Tensor] = {}
    if config.uses_gan:
        terms["gan_ab"] = losses.generator_adversarial_loss(model.disc_b(fake_b), config.gan_mode)
        terms["gan_ba"] = losses.generator_adversarial_loss(model.disc_a(fake_a), config.gan_mode)
    if config.uses_forward_cycle:
        terms["cycle_a"] = losses.cycle_loss(model.gen_ba(fake_b), real_a, config.lambda_a)
    if config.uses_backward_cycle:
        terms["cycle_b"] = losses.cycle_loss(model.gen_ab(fake_a), real_b, config.lambda_b)
    if config.uses_self_regularization:
        terms["self_reg_a"] = losses.self_regularization_loss(fake_b, real_a, config.lambda_self_reg)
        terms["self_reg_b"] = losses.self_regularization_loss(fake_a, real_b, config.lambda_self_reg)
    if config.lambda_identity > 0:
        terms["idt_a"] = losses.identity_loss(model.gen_ba(real_a), real_a, config.lambda_a * config.lambda_identity)
        terms["idt_b"] = losses.identity_loss(model.gen_ab(real_b), real_b, config.lambda_b * config.lambda_identity)
    # the pools keep the input precision under autocast
    return terms, fake_b.detach().to(real_a.dtype), fake_a.detach().to(real_b.dtype)


def _discriminator_terms(model: CycleGAN, domain: str, disc: torch.nn.Module, real: torch.Tensor,
                         fake: torch.Tensor) -> dict[str, torch.Tensor]:
    config = model.options
    fake = model.pools[domain].query(fake)
    with model.autocast():
        terms = {f"disc_{domain}": losses.discriminator_loss(disc(real), disc(fake), config.gan_mode)}
    if config.gan_mode == "wgangp":
        terms[f"gp_{domain}"] = losses.gradient_penalty(disc, real, fake, config.lambda_gp)
    return terms
