"""The state of a training run, and the one place that spells a checkpoint's layout.

A checkpoint is the state after a step, as `io.checkpoints` stores it (a tree of tensors and JSON values). Its tree:

    nets         each network's weights, by name (gen_ab, disc_b, ...): all that translation reads
    training     optimizers (each optimiser's state dict), pools (rank 0's image pools), grad_scaler (fp16 only)
    rng          rank 0's random generators (`runtime.capture_rng_state`)
    progress     epoch (done), iteration (within the next epoch), step (overall), elapsed (training seconds);
                 world_size, for a distributed run
    rank_states  a distributed run only: for each other rank ("1", "2", ...) {training: {pools}, rng}

Every rank trains the same weights with the same optimiser state, but draws from its own pools and random streams,
so those are kept per rank. Checkpoints written before this module (tests/fixtures/legacy) have the same tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..io.checkpoints import CheckpointError
from ..models import TranslationModel
from ..runtime import capture_rng_state, restore_rng_state


@dataclass
class Counters:
    """Where the run is: epochs done, iterations done in the epoch under way, steps overall, training seconds."""

    epoch: int = 0
    iteration: int = 0
    step: int = 0
    elapsed: float = 0.0

    def to_checkpoint(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "iteration": self.iteration, "step": self.step, "elapsed": self.elapsed}

    @classmethod
    def from_checkpoint(cls, progress: dict[str, Any]) -> Counters:
        return cls(progress["epoch"], progress["iteration"], progress["step"], progress.get("elapsed", 0.0))


@dataclass
class RankState:
    """What one process has of its own: its image pools' contents and its random generators' states."""

    pools: dict[str, Any]
    rng: dict[str, Any]

    def to_checkpoint(self) -> dict[str, Any]:
        return {"training": {"pools": self.pools}, "rng": self.rng}

    @classmethod
    def from_checkpoint(cls, record: dict[str, Any]) -> RankState:
        return cls(record["training"]["pools"], record["rng"])


@dataclass
class TrainingState:
    """Everything an exact resume needs: weights, optimiser moments, the fp16 gradient scaler, counters, and each
    rank's pools and random states (`ranks[0]` is rank 0's, the only one of a single process)."""

    nets: dict[str, dict[str, torch.Tensor]]
    optimizers: dict[str, Any]
    grad_scaler: dict[str, Any] | None
    counters: Counters
    ranks: dict[int, RankState] = field(default_factory=dict)
    world_size: int = 1

    @classmethod
    def capture(cls, model: TranslationModel, counters: Counters) -> TrainingState:
        """The state of `model` and of this process now (its pools and random states as rank 0's)."""
        nets = model.network_state()
        training = model.training_state()
        own = RankState(training["pools"], capture_rng_state())
        return cls(nets, training["optimizers"], training.get("grad_scaler"), counters, {0: own})

    def with_ranks(self, ranks: list[RankState]) -> TrainingState:
        """This state with every rank's own part, in rank order (from `DistributedContext.gather`)."""
        return TrainingState(self.nets, self.optimizers, self.grad_scaler, self.counters, dict(enumerate(ranks)),
                             len(ranks))

    def weights_finite(self) -> bool:
        return all(bool(torch.isfinite(tensor).all()) for weights in self.nets.values() for tensor in weights.values()
                   if tensor.is_floating_point())

    def restore(self, model: TranslationModel, rank: int = 0) -> None:
        """Put the weights, optimiser and scaler state, and rank `rank`'s pools and random states back."""
        model.load_network_state(self.nets)
        model.load_training_state(self._training(rank))
        restore_rng_state(self.ranks[rank].rng)

    def _training(self, rank: int) -> dict[str, Any]:
        """The "training" part for rank `rank`, as `TranslationModel.training_state` gives and takes it."""
        training: dict[str, Any] = {"optimizers": self.optimizers, "pools": self.ranks[rank].pools}
        if self.grad_scaler is not None:
            training["grad_scaler"] = self.grad_scaler
        return training

    def to_checkpoint(self) -> dict[str, Any]:
        """The tree `io.checkpoints.save_checkpoint` stores (the layout in the module docstring)."""
        tree = {"nets": self.nets, "training": self._training(0), "rng": self.ranks[0].rng,
                "progress": self.counters.to_checkpoint()}
        if self.world_size > 1:
            tree["progress"]["world_size"] = self.world_size
            tree["rank_states"] = {str(rank): self.ranks[rank].to_checkpoint() for rank in range(1, self.world_size)}
        return tree

    @classmethod
    def from_checkpoint(cls, tree: dict[str, Any], source: str | Path) -> TrainingState:
        """The state `tree` (from `io.checkpoints.load_checkpoint` of `source`) holds; CheckpointError, naming
        `source`, if a part is missing."""
        try:
            training, progress = tree["training"], tree["progress"]
            world_size = progress.get("world_size", 1)
            ranks = {0: RankState(training["pools"], tree["rng"])}
            ranks.update({int(rank): RankState.from_checkpoint(record)
                          for rank, record in tree.get("rank_states", {}).items()})
            state = cls(tree["nets"], training["optimizers"], training.get("grad_scaler"),
                        Counters.from_checkpoint(progress), ranks, world_size)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            raise _incomplete(source, f"{type(error).__name__}: {error}") from None
        if set(ranks) != set(range(world_size)):
            raise _incomplete(source, f"the states of ranks {sorted(ranks)} of {world_size}")
        return state


def _incomplete(source: str | Path, detail: str) -> CheckpointError:
    return CheckpointError(f"{source} holds no complete training state ({detail}), so the run cannot be resumed "
                           "from it; use the file as cyclegan wrote it, or another checkpoint")
