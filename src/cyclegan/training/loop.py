"""The training loop: `train`, in three phases, each in its own module.

1. Set up or restore (`setup.set_up_or_restore`): the run folder, the data, the model, and on resume the state of
   the latest checkpoint (`state.TrainingState`, which alone knows a checkpoint's layout).
2. Run an epoch (`epoch.Trainer.run_epoch`): the model's steps on the epoch's batches, log records, progress.
3. End the epoch (`epoch.Trainer.end_epoch`): a checkpoint, the sample grid and the report.

The loop knows nothing of a model's losses: it feeds batches to `model.training_step` and records what comes back.
The model's registry entry (`model_registry`: CycleGAN, pix2pix, ...) says whether it learns from unpaired folders or
aligned pairs.
Every sample of every epoch is a pure function of (seed, epoch, index), and every other random choice is in a
generator whose state is checkpointed, so a run stopped at any iteration and resumed ends exactly where an
uninterrupted run would (on the CPU, in deterministic mode).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError
from ..io.run_folder import LogWriter, RunFolder
from ..report.html import write_run_report
from .distributed import DistributedContext, distributed_context
from .epoch import StopRequest, Trainer, TrainingError
from .setup import RESUMABLE_OVERRIDES, claimed, read_resume, resolve_data_root, set_up_or_restore
from .state import TrainingState

__all__ = ["RESUMABLE_OVERRIDES", "StopRequest", "TrainResult", "TrainingError", "resolve_data_root", "train"]

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    config: Config  # as resolved for the run (e.g. the built-in data set's folder)
    epochs_done: int
    steps_done: int
    stopped_early: bool
    last_losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # training time of the whole run, summed over this call and the calls it resumes


def train(config: Config, resume: bool = False, overrides: dict[str, Any] | None = None,
          show_progress: bool = True, max_steps: int | None = None, stop: StopRequest | None = None,
          overwrite: bool = False) -> TrainResult:
    """Train the model `config` names (CycleGAN or pix2pix) as it says, in `config.train.run_dir`.

    resume: continue the run in that folder from its latest checkpoint; the saved config is used, with
    `overrides` (flat option names) applied where a resume allows it. Without it the folder must not hold a run
    yet, unless `overwrite` (which removes that run's files first). max_steps: stop cleanly, with a resumable
    checkpoint, after this many iterations in this call. Returns what was done.

    One process at a time trains in a run folder (`RunLock`). Losses that are not finite stop the run (or, with
    train.skip_nonfinite_steps, skip the update); a checkpoint is never written with weights that are not finite.
    If anything fails between two steps (an unreadable image, say), the state after the last step is saved first.

    Under `torchrun` every process calls this; they train one model data-parallel (see `distributed.py`): an
    iteration (a step) is one update on the global batch, batch_size images per domain from each process. Rank 0
    writes the run folder. `stop` lets a caller (or a signal) end the run cleanly after the current step.
    """
    if max_steps is not None and max_steps < 1:
        raise ConfigError(f"max_steps={max_steps} must be at least 1")
    run = RunFolder(Path(config.train.run_dir))
    restored: TrainingState | None = None
    if resume:
        config, restored = read_resume(run, overrides)
    with distributed_context(config.train.device) as context, claimed(context, run, resume, overwrite):
        return _train(context, config, run, restored, show_progress, max_steps, stop or StopRequest())


def _train(context: DistributedContext, config: Config, run: RunFolder, restored: TrainingState | None,
           show_progress: bool, max_steps: int | None, stop: StopRequest) -> TrainResult:
    # --- Phase 1: set up, or restore -----------------------------------------------------------------------------
    session = set_up_or_restore(context, config, run, restored, show_progress)

    # --- Phases 2 and 3: epochs, each ended by a checkpoint, samples and the report ------------------------------
    log = LogWriter(run.log_file) if context.is_main else None
    trainer = Trainer(context, session, run, stop, show_progress, max_steps, log)
    try:
        with _stop_on_signals(stop):
            trainer.run()
    finally:
        if log is not None:
            log.close()
    seconds = trainer.elapsed()

    # --- the run's report, also after a stop ---------------------------------------------------------------------
    counters = session.counters
    if context.is_main:
        write_run_report(run.root)
    if trainer.stopping and context.is_main:
        logger.warning("stopped (%s) at epoch %d, iteration %d; continue with --resume",
                       stop.reason or "stop requested by another process", counters.epoch + 1, counters.iteration)
    return TrainResult(run.root, session.config, counters.epoch, counters.step, trainer.stopping, trainer.last_losses,
                       seconds)


@contextmanager
def _stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """The first Ctrl-C or SIGTERM asks for a clean stop; a second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: Any) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.request(signal.Signals(signum).name)
        logger.warning("%s received: saving a checkpoint after this step (Ctrl-C again to abort)",
                       signal.Signals(signum).name)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
