import math

import pytest
import torch

from cyclegan import losses


def test_lsgan_losses_exact_values():
    real = torch.tensor([1.0, 0.5])
    fake = torch.tensor([0.0, 0.25])
    # generator: mean((D(G(x)) - 1)^2) = (1 + 0.5625) / 2
    assert losses.generator_adversarial_loss(fake, "lsgan").item() == pytest.approx(0.78125)
    # discriminator: 0.5 * (mean((real - 1)^2) + mean(fake^2)) = 0.5 * (0.125 + 0.03125)
    assert losses.discriminator_loss(real, fake, "lsgan").item() == pytest.approx(0.078125)


def test_vanilla_losses_are_the_log_likelihood_of_eq_1():
    real, fake = torch.tensor([2.0]), torch.tensor([-1.0])
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    assert losses.generator_adversarial_loss(fake, "vanilla").item() == pytest.approx(-math.log(sigmoid(-1.0)))
    expected = 0.5 * (-math.log(sigmoid(2.0)) - math.log(1 - sigmoid(-1.0)))
    assert losses.discriminator_loss(real, fake, "vanilla").item() == pytest.approx(expected, rel=1e-6)


def test_wgan_losses():
    real, fake = torch.tensor([3.0, 1.0]), torch.tensor([0.5, -0.5])
    assert losses.generator_adversarial_loss(fake, "wgangp").item() == pytest.approx(0.0)
    assert losses.discriminator_loss(real, fake, "wgangp").item() == pytest.approx(-2.0)


def test_adversarial_loss_toward_a_label_exact_values():
    scores = torch.tensor([0.0, 0.5, -1.0])
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    # lsgan: mean((s - 1)^2) = (1 + 0.25 + 4) / 3 toward real, mean(s^2) = (0 + 0.25 + 1) / 3 toward fake
    assert losses.adversarial_loss_toward(scores, True, "lsgan").item() == pytest.approx(5.25 / 3)
    assert losses.adversarial_loss_toward(scores, False, "lsgan").item() == pytest.approx(1.25 / 3)
    # vanilla: -log D toward real, -log(1 - D) toward fake, D = sigmoid(s)
    toward_real = sum(-math.log(sigmoid(v)) for v in (0.0, 0.5, -1.0)) / 3
    toward_fake = sum(-math.log(1 - sigmoid(v)) for v in (0.0, 0.5, -1.0)) / 3
    assert losses.adversarial_loss_toward(scores, True, "vanilla").item() == pytest.approx(toward_real, rel=1e-6)
    assert losses.adversarial_loss_toward(scores, False, "vanilla").item() == pytest.approx(toward_fake, rel=1e-6)
    # wgangp: -mean(s) toward real, +mean(s) toward fake; mean(s) = -0.5 / 3
    assert losses.adversarial_loss_toward(scores, True, "wgangp").item() == pytest.approx(0.5 / 3)
    assert losses.adversarial_loss_toward(scores, False, "wgangp").item() == pytest.approx(-0.5 / 3)
    for mode in losses.GAN_MODES:  # toward real is the generator's loss
        assert torch.equal(losses.adversarial_loss_toward(scores, True, mode),
                           losses.generator_adversarial_loss(scores, mode))
    with pytest.raises(ValueError, match="unknown gan_mode 'hinge'"):
        losses.adversarial_loss_toward(scores, False, "hinge")


def test_unknown_gan_mode_is_refused():
    with pytest.raises(ValueError, match="unknown gan_mode"):
        losses.generator_adversarial_loss(torch.zeros(1), "hinge")


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = sum(w * x) has gradient w everywhere, so the penalty is weight * (|w| - 1)^2 exactly.
    weight_vector = torch.full((1, 1, 2, 2), 1.0)  # |w| = 2
    critic = lambda x: (x * weight_vector).flatten(1).sum(1)  # noqa: E731
    penalty = losses.gradient_penalty(critic, torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2), weight=10.0)
    assert penalty.item() == pytest.approx(10.0)


def test_gradient_penalty_reaches_the_critic_parameters():
    critic = torch.nn.Conv2d(1, 1, 2)
    penalty = losses.gradient_penalty(critic, torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4))
    penalty.backward()
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


def test_cycle_and_identity_are_weighted_l1():
    a, b = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    assert losses.cycle_loss(a, b, 10.0).item() == pytest.approx(5.0)
    assert losses.identity_loss(a, b, 5.0).item() == pytest.approx(2.5)


def test_feature_l1_is_the_weighted_mean_distance_of_the_features_not_of_the_pixels():
    # phi(t) = (sum over channels, product of the channels): a tiny non-linear stand-in for VGG's relu4_2.
    def phi(t):
        return torch.cat((t.sum(1, keepdim=True), t.prod(1, keepdim=True)), 1)

    translated = torch.tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]], requires_grad=True)  # 1 x 2 channels x 1 x 2
    source = torch.tensor([[[[0.0, 1.0]], [[1.0, 1.0]]]])
    # phi(translated): sums (4, 1), products (3, -2); phi(source): sums (1, 2), products (0, 1).
    # |difference| = 3, 1, 3, 3: mean 2.5, times the weight 2. (The pixels' mean L1 would be 1.5.)
    loss = losses.feature_l1_loss(translated, source, phi, 2.0)
    assert loss.item() == pytest.approx(5.0)
    loss.backward()
    # d/dx of 2 * mean|phi(x) - phi(s)| = 2/4 * sum of (sign of each feature difference) * d(feature)/dx, with
    # d(sum) = (1, 1) and d(product) = (c1, c0) at a pixel (c0, c1). The differences are +3, +3 at pixel 0 = (1, 3):
    # (1 + 3, 1 + 1); -1, -3 at pixel 1 = (2, -1): (-1 + 1, -1 - 2).
    expected = 0.5 * torch.tensor([[[[4.0, 0.0]], [[2.0, -3.0]]]])
    assert torch.equal(translated.grad, expected)
