"""Phases 2 and 3 of the training loop: run an epoch (`Trainer.run_epoch`); end it with a checkpoint, the sample
grid and the report (`Trainer.end_epoch`). `Trainer.run` alternates them until the run is done or asked to stop.

The loop knows nothing of a model's losses: it feeds batches to `model.training_step` and records what comes back.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data.folders import epoch_order
from ..io.checkpoints import save_checkpoint
from ..io.run_folder import LogWriter, RunFolder
from ..model_registry import model_entry
from ..models import TranslationModel
from ..progress import format_duration, progress_bar
from ..report.grids import sample_grid, save_png
from ..report.html import write_run_report
from .distributed import DistributedContext, rank_items
from .schedule import learning_rate
from .setup import Session
from .state import RankState, TrainingState

logger = logging.getLogger(__name__)

# After this many steps in a row whose losses are not finite, skip_nonfinite_steps gives up: the run has diverged.
MAX_SKIPPED_STEPS = 100


@dataclass
class StopRequest:
    """Set by SIGINT/SIGTERM (or by the caller); the loop saves a checkpoint after the current step and returns."""

    requested: bool = False
    reason: str = ""

    def request(self, reason: str) -> None:
        self.requested, self.reason = True, reason


class TrainingError(RuntimeError):
    """Training stopped on a failure; the message says what failed, what was saved, and how to go on."""


class Trainer:
    """Runs the epochs of one `train` call: steps, log records, checkpoints, samples and the report."""

    def __init__(self, context: DistributedContext, session: Session, run: RunFolder, stop: StopRequest,
                 show_progress: bool, max_steps: int | None, log: LogWriter | None) -> None:
        self.context, self.config, self.run_folder, self.model = context, session.config, run, session.model
        self.dataset, self.fixed, self.counters = session.dataset, session.fixed, session.counters
        self.stop, self.max_steps, self.log = stop, max_steps, log
        self.show_progress = show_progress and context.is_main
        items_per_rank = -(-len(self.dataset) // context.world_size)
        self.batches_per_epoch = -(-items_per_rank // self.config.train.batch_size)
        self.stopping = stop.requested
        self.last_losses: dict[str, float] = {}
        self.saved_step = self.counters.step  # the state of this step is in the latest checkpoint (or nothing yet)
        self.nonfinite_in_a_row = 0
        self.in_step = False  # inside model.training_step: a failure there may leave the step half applied
        self.elapsed_before, self.steps_this_call, self.started = self.counters.elapsed, 0, time.monotonic()
        self.lr, self.bar = 0.0, None  # this epoch's learning rate and progress bar (`_epoch_batches`)

    def elapsed(self) -> float:  # training time of the whole run, across resumes
        return self.elapsed_before + time.monotonic() - self.started

    def run(self) -> None:
        """The epochs. A failure between steps saves the state after the last step (single process), then raises
        TrainingError; one inside a step leaves the last checkpoint as it was (the step may be half applied)."""
        try:
            while self.counters.epoch < self.config.train.total_epochs and not self.stopping:
                self.run_epoch()
                self.end_epoch()
        except (TrainingError, KeyboardInterrupt):
            raise
        except Exception as error:
            raise self._failed(error) from error

    # --- Phase 2: run an epoch (or the rest of one) ------------------------------------------------------------

    def run_epoch(self) -> None:
        """Steps on this epoch's batches, from the counters' iteration on, until the epoch ends or a stop."""
        for batch in self._epoch_batches():
            self.in_step = True
            losses = self.model.training_step(batch["a"].to(self.context.device, non_blocking=True),
                                              batch["b"].to(self.context.device, non_blocking=True))
            self.in_step = False
            self._after_step(losses)
            if self.stopping:
                break

    def _epoch_batches(self) -> Iterator[dict[str, Any]]:
        config, counters = self.config, self.counters
        lr = learning_rate(counters.epoch, config.train)
        self.model.set_learning_rate(lr)
        self.lr = lr
        items = epoch_order(len(self.dataset), config.train.seed, counters.epoch, not config.data.serial_batches)
        items = rank_items(items, self.context.rank, self.context.world_size)
        loader = DataLoader(self.dataset, batch_size=config.train.batch_size,
                            sampler=items[counters.iteration * config.train.batch_size:],
                            num_workers=config.data.num_workers, worker_init_fn=_ignore_stop_signals,
                            pin_memory=self.context.device.type == "cuda",
                            generator=torch.Generator())  # leaves the global RNG untouched
        with stop_signals_held():  # the workers start here
            batches = iter(loader)
        bar = progress_bar(batches, total=self.batches_per_epoch, initial=counters.iteration, unit="it",
                           description=f"epoch {counters.epoch + 1}/{config.train.total_epochs}",
                           enabled=self.show_progress)
        self.bar = bar
        try:
            yield from bar
        finally:
            bar.close()
            # End the data workers now, also after an error: the error's traceback keeps this frame (and so the
            # loader's iterator) alive, and the workers with it, which would hold the process at exit.
            shutdown = getattr(batches, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def _after_step(self, losses: dict[str, float]) -> None:
        counters = self.counters
        counters.iteration, counters.step = counters.iteration + 1, counters.step + 1
        self.steps_this_call += 1
        if self.max_steps is not None and self.steps_this_call >= self.max_steps:
            self.stop.request(f"max_steps={self.max_steps}")
        # Ranks stop after the same step, whichever of them a signal reached first.
        losses, self.stopping = self.context.agree(losses, self.stop.requested)
        self._check_finite(losses)
        self.last_losses = losses
        if self.log is not None:
            self.log.write({"epoch": counters.epoch + 1, "iteration": counters.iteration, "step": counters.step,
                            "time": round(self.elapsed(), 3), "lr": self.lr, "losses": losses})
        remaining = self.config.train.total_epochs * self.batches_per_epoch - counters.step
        run_eta = remaining * (time.monotonic() - self.started) / self.steps_this_call
        self.bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()}, "run ETA": format_duration(run_eta)},
                             refresh=False)

    def _check_finite(self, losses: dict[str, float]) -> None:
        """Stop on losses that are not finite (the run has diverged), or with skip_nonfinite_steps count them."""
        if all(math.isfinite(value) for value in losses.values()):
            self.nonfinite_in_a_row = 0
            return
        bad = ", ".join(f"{name}={value}" for name, value in losses.items() if not math.isfinite(value))
        self.nonfinite_in_a_row += 1
        if self.config.train.skip_nonfinite_steps and self.nonfinite_in_a_row < MAX_SKIPPED_STEPS:
            for pool in self.model.pools.values():
                pool.drop_nonfinite()
            logger.warning("step %d: %s; its non-finite updates were skipped", self.counters.step, bad)
            return
        in_a_row = f" in {self.nonfinite_in_a_row} steps in a row" if self.nonfinite_in_a_row > 1 else ""
        raise TrainingError(f"training diverged at step {self.counters.step} (epoch {self.counters.epoch + 1}): "
                            f"{bad}{in_a_row}. {self._kept()} Lower --lr, or check the data, then --resume or start "
                            "again; --skip-nonfinite-steps skips such steps instead of stopping")

    # --- Phase 3: end the epoch (checkpoint, samples, report), or save where a stop came ----------------------

    def end_epoch(self) -> None:
        counters, run = self.counters, self.run_folder
        if self.stopping and counters.iteration < self.batches_per_epoch:
            self.save([run.latest_checkpoint])  # mid-epoch: a resume continues with the next batch of this epoch
            return
        counters.epoch, counters.iteration = counters.epoch + 1, 0
        total = self.config.train.total_epochs
        keep = counters.epoch % self.config.train.save_every == 0 or counters.epoch == total
        self.save([run.latest_checkpoint, run.epoch_checkpoint(counters.epoch)] if keep else [run.latest_checkpoint])
        if self.context.is_main:
            if self.fixed[0].shape[0]:
                write_samples(self.model, self.config.model, self.fixed, run.sample_file(counters.epoch))
            write_run_report(run.root)
        logger.info("epoch %d/%d done: %s", counters.epoch, total,
                    ", ".join(f"{k} {v:.3f}" for k, v in self.last_losses.items()))
        _, self.stopping = self.context.agree({}, self.stop.requested)  # a signal during the epoch's end stops here

    def save(self, paths: list[Path]) -> None:
        """A collective: all ranks call it at the same point. Rank 0 writes its own pools and random state where a
        single process would, and every other rank's beside them. Weights that are not finite are never saved."""
        state = TrainingState.capture(self.model, dataclasses.replace(self.counters, elapsed=self.elapsed()))
        ranks: list[RankState] | None = self.context.gather(state.ranks[0])
        if ranks is None:  # not rank 0
            return
        if not state.weights_finite():
            raise TrainingError(f"training diverged: the weights after step {self.counters.step} are not finite, so "
                                f"no checkpoint was written. {self._kept()} Lower --lr, then --resume or start again")
        tree = state.with_ranks(ranks).to_checkpoint()
        for path in paths:
            save_checkpoint(path, self.config, tree)
        self.saved_step = self.counters.step

    # --- failures ------------------------------------------------------------------------------------------------

    def _kept(self) -> str:
        latest = self.run_folder.latest_checkpoint
        if latest.exists():
            return f"The last checkpoint, {latest}, holds finite weights and was left as it was."
        return "No checkpoint had been written yet."

    def _failed(self, error: Exception) -> TrainingError:
        """Save what can be saved after `error`, and say what happened and how to go on."""
        counters, latest = self.counters, self.run_folder.latest_checkpoint
        where = f"at epoch {counters.epoch + 1}, iteration {counters.iteration} (step {counters.step})"
        if not self.in_step and not self.context.enabled and counters.step > self.saved_step:
            try:
                self.save([latest])
                saved = f"The state after step {counters.step} was saved to {latest}; fix the cause, then continue " \
                        "with --resume."
            except Exception as save_error:  # noqa: BLE001 - report both, keep the first
                saved = f"Saving a checkpoint failed too ({error_summary(save_error)}). {self._kept()}"
        else:
            saved = self._kept() + (" Fix the cause, then continue with --resume." if latest.exists() else "")
        return TrainingError(f"training stopped {where}: {error_summary(error)}. {saved}")


def write_samples(model: TranslationModel, name: str, fixed: tuple[torch.Tensor, torch.Tensor], path: Path) -> None:
    """The sample grid of `fixed` (real A, real B) translated by `model` (registered as `name`): one row per image
    pair."""
    images = model.sample(*fixed)
    # The model's own columns, less the images this run's step does not make (identity, with lambda_identity=0).
    columns = [(title, key) for title, key in model_entry(name).sample_columns if key in images]
    rows = [[images[key][i].cpu() for _, key in columns] for i in range(len(fixed[0]))]
    save_png(sample_grid(rows, [title for title, _ in columns], cell_size=128), path)


def error_summary(error: BaseException) -> str:
    """The error's own message; for one raised in a data worker, the original's last line, not the traceback."""
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
        text = text.split(": ", 1)[1] if ": " in text else text
    return text


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_CAN_HOLD = hasattr(signal, "pthread_sigmask")  # POSIX; elsewhere workers start with the default handlers


@contextmanager
def stop_signals_held() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM while data workers start: a worker inherits the held mask, so a stop signal sent
    to the process group before its `_ignore_stop_signals` ran waits instead of killing it ("DataLoader worker
    exited unexpectedly" at an epoch's start). The main process receives its own when the block ends."""
    if not _CAN_HOLD:
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _ignore_stop_signals(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group, and so does the SIGTERM of systemd, Slurm, torchrun or `kill -- -PGID`:
    # data workers leave the clean stop to the main process, which ends them once it has saved. A signal that came
    # while the worker started (held: `stop_signals_held`) is dropped once it is ignored and released.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if _CAN_HOLD:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
