"""Data-parallel training over several processes, launched by `torchrun` (one process per GPU, or per CPU worker).

The loop asks `distributed_context` for a `DistributedContext`. Outside `torchrun` (WORLD_SIZE unset or 1) it is
inert: no process group, rank 0 of 1, every collective a no-op, so a single-process run is exactly what it was.
Under `torchrun` it starts the process group (NCCL on CUDA, Gloo on the CPU), puts each process on its own GPU
(cuda:LOCAL_RANK) and tears the group down at the end.

What "distributed" means here:

- Every process takes its share of each epoch's (epoch, index) items (`rank_items`), so one step trains on
  batch_size x world_size images per domain (the global batch), and data stays a pure function of
  (seed, epoch, index): exact resume keeps working.
- The networks are wrapped in DistributedDataParallel (`TranslationModel.distribute`), which averages gradients
  across processes during each backward pass.
- Each process keeps its own image pools and random streams, seeded per rank (`rank_seed`).
- Process 0 alone writes the run folder; the others meet it at the same collectives (`agree`, `gather`).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..config import ConfigError
from ..runtime import select_device

logger = logging.getLogger(__name__)

Item = TypeVar("Item")


def launched_world_size() -> int:
    """The number of processes `torchrun` started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's global rank under `torchrun` (0 outside it): the CLI prints and logs only on rank 0."""
    return int(os.environ.get("RANK", "0"))


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank `rank`'s own random stream: `seed` itself on rank 0 (so a single process is unchanged),
    a seed derived from (seed, rank) elsewhere, so ranks do not draw the same numbers."""
    if rank == 0:
        return seed
    return random.Random(f"cyclegan/{seed}/rank{rank}").getrandbits(63)  # str seeds are hashed with SHA-512


def rank_items(items: list[Item], rank: int, world_size: int) -> list[Item]:
    """Rank `rank`'s share of one epoch's items: every world_size-th one, starting at `rank`.

    As torch's DistributedSampler does, the list is first padded by repeating its first items to a multiple of
    world_size, so every rank runs the same number of steps (DDP needs all ranks in every backward pass). Rank r's
    j-th batch of b items then holds padded[(j*b + i) * world_size + r], i < b: the ranks' j-th batches together
    are padded[j*b*world_size : (j+1)*b*world_size], the j-th batch a single process would draw with batch size
    b * world_size.
    """
    if world_size == 1:
        return list(items)
    padding = -len(items) % world_size
    padded = list(items) + [items[i % len(items)] for i in range(padding)]
    return padded[rank::world_size]


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is in a run, and the few collectives the training loop needs.

    device: where this process trains. Every rank must call each collective in the same order.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the config, log, checkpoints, samples and report."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def agree(self, losses: dict[str, float], stop: bool) -> tuple[dict[str, float], bool]:
        """Average the step's losses over the ranks (the log then shows the loss of the global batch) and decide
        together whether to stop: True if any rank was asked to. One all-reduce per step, so a signal that
        reaches the ranks at slightly different times still stops them all after the same step."""
        if not self.enabled:
            return losses, stop
        values = torch.tensor([*losses.values(), float(stop)], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        averaged = (values[:-1] / self.world_size).tolist()
        return dict(zip(losses, averaged, strict=True)), bool(values[-1].item() > 0)

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's `value` (picklable), in rank order, on rank 0; None on the other ranks."""
        if not self.enabled:
            return [value]
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def device_ids(self) -> list[int] | None:
        """What DistributedDataParallel needs: this process's GPU, or None on the CPU."""
        return [self.device.index] if self.device.type == "cuda" else None


@contextmanager
def distributed_context(device_name: str) -> Iterator[DistributedContext]:
    """The process's place in the run. Outside torchrun: rank 0 of 1 on `select_device(device_name)`, nothing
    else. Under torchrun: the process group is started here (unless the caller started one already) and
    destroyed on the way out; CUDA processes train on cuda:LOCAL_RANK with NCCL, CPU ones with Gloo."""
    device = select_device(device_name)
    if launched_world_size() <= 1 and not dist.is_initialized():
        yield DistributedContext(device=device)
        return
    if device.type == "mps":
        raise ConfigError("distributed training runs on CUDA GPUs (NCCL) or on the CPU (Gloo), not on MPS; "
                          "use --device cuda or --device cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is not None and device.index != local_rank:
            logger.warning("device %s ignored: under torchrun each process uses cuda:LOCAL_RANK", device)
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # NCCL collectives and gather_object use the current device
    started_here = not dist.is_initialized()
    if started_here:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    context = DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, device)
    logger.debug("rank %d of %d on %s (%s)", context.rank, context.world_size, device, dist.get_backend())
    try:
        yield context
        context.barrier()  # nobody leaves while rank 0 may still be writing the run folder
    finally:
        if started_here:
            dist.destroy_process_group()
