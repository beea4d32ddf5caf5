import pytest
import torch

from cyclegan.config import TrainConfig
from cyclegan.training.pool import ImagePool
from cyclegan.training.schedule import learning_rate, lr_factor


def test_pool_fills_then_returns_old_images_about_half_the_time():
    pool = ImagePool(size=5, seed=1)
    for i in range(5):
        out = pool.query(torch.full((1, 1, 2, 2), float(i)))
        assert out.flatten()[0].item() == i  # while filling, the new image comes back
    assert len(pool) == 5
    old = 0
    trials = 2000
    for i in range(trials):
        value = 100.0 + i
        out = pool.query(torch.full((1, 1, 2, 2), value))
        old += out[0, 0, 0, 0].item() != value
    assert 0.45 < old / trials < 0.55
    assert len(pool) == 5


def test_pool_of_size_zero_passes_through():
    pool = ImagePool(size=0)
    batch = torch.randn(3, 3, 4, 4)
    assert pool.query(batch) is batch


def test_pool_state_round_trip_gives_the_same_choices():
    pool = ImagePool(size=3, seed=7)
    for i in range(6):
        pool.query(torch.full((2, 1, 1, 1), float(i)))
    copy = ImagePool(size=3, seed=999)
    copy.load_state_dict(pool.state_dict())
    for i in range(20):
        batch = torch.full((2, 1, 1, 1), 50.0 + i)
        assert torch.equal(pool.query(batch), copy.query(batch))


def test_linear_schedule_is_constant_then_decays_to_near_zero():
    config = TrainConfig(n_epochs=100, n_epochs_decay=100)
    assert [lr_factor(e, config) for e in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert lr_factor(100, config) == pytest.approx(1 - 1 / 101)
    assert lr_factor(199, config) == pytest.approx(1 / 101)
    factors = [lr_factor(e, config) for e in range(100, 200)]
    steps = {round(a - b, 9) for a, b in zip(factors, factors[1:], strict=False)}
    assert steps == {round(1 / 101, 9)}  # linear
    assert learning_rate(0, config) == pytest.approx(2e-4)


def test_step_and_cosine_schedules():
    step = TrainConfig(lr_policy="step", lr_decay_epochs=10, n_epochs=30, n_epochs_decay=0)
    assert [lr_factor(e, step) for e in (0, 9, 10, 25)] == pytest.approx([1, 1, 0.1, 0.01])
    cosine = TrainConfig(lr_policy="cosine", n_epochs=5, n_epochs_decay=5)
    assert lr_factor(0, cosine) == 1.0
    assert lr_factor(5, cosine) == pytest.approx(0.5)
    assert 0 < lr_factor(9, cosine) < 0.05
