"""Learning-rate schedules as pure functions of the epoch: the rate is derived, never stored, so resume is exact."""

from __future__ import annotations

import math

from ..config import TrainConfig


def lr_factor(epoch: int, config: TrainConfig) -> float:
    """Multiplier of the base learning rate during 0-based `epoch`.

    linear (paper Sec. 4): constant for exactly n_epochs, then falling linearly by 1/(n_epochs_decay + 1) per epoch
    (the official code's formula; its update at the start of each epoch starts the decay one epoch early and
    spends the last epoch at rate 0, which we do not copy); step: x0.1 every lr_decay_epochs; cosine: half a
    cosine from 1 to 0 over all epochs.
    """
    if config.lr_policy == "linear":
        return 1.0 - max(0, epoch + 1 - config.n_epochs) / float(config.n_epochs_decay + 1)
    if config.lr_policy == "step":
        return 0.1 ** (epoch // config.lr_decay_epochs)
    if config.lr_policy == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / config.total_epochs))
    raise ValueError(f"unknown lr_policy {config.lr_policy!r}")


def learning_rate(epoch: int, config: TrainConfig) -> float:
    return config.lr * lr_factor(epoch, config)
