"""The training loop: epochs, learning-rate schedule, logging, samples, checkpoints and exact resume.

The loop knows nothing of a model's losses: it feeds batches to `model.training_step` and records what comes back.
The model (`ModelConfig.model`: CycleGAN or pix2pix) says whether it learns from unpaired folders or aligned pairs.
Every sample of every epoch is a pure function of (seed, epoch, index), and every other random choice is in a
generator whose state is checkpointed, so a run stopped at any iteration and resumed ends exactly where an
uninterrupted run would (on the CPU, in deterministic mode).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..config import Config, ConfigError, DataConfig, apply_overrides, flat_options
from ..data.folders import (
    AlignedDataset,
    DatasetError,
    UnalignedDataset,
    epoch_order,
    load_test_images,
    load_test_pairs,
    resolve_aligned_folders,
    resolve_folders,
)
from ..data.synthetic import ensure_builtin
from ..io.atomic import remove_stale_temporaries
from ..io.checkpoints import find_checkpoint, load_checkpoint, save_checkpoint
from ..io.images import unreadable_images
from ..io.run_folder import LogWriter, RunFolder, RunLock
from ..models import TranslationModel, build_model, check_checkpoint_networks, model_class
from ..progress import format_duration, progress_bar
from ..report.grids import sample_grid, save_png
from ..report.html import write_run_report
from ..runtime import capture_rng_state, configure_cudnn, restore_rng_state, seed_everything
from .distributed import DistributedContext, distributed_context, rank_items, rank_seed
from .schedule import learning_rate

logger = logging.getLogger(__name__)

# Options that may change when a run is resumed; everything else must stay as the run was started.
RESUMABLE_OVERRIDES = frozenset({"device", "num_workers", "n_epochs", "n_epochs_decay", "save_every", "run_dir",
                                 "num_samples", "fast_convolutions", "cudnn_benchmark", "skip_nonfinite_steps"})
# After this many steps in a row whose losses are not finite, skip_nonfinite_steps gives up: the run has diverged.
MAX_SKIPPED_STEPS = 100


@dataclass
class StopRequest:
    """Set by SIGINT/SIGTERM (or by the caller); the loop saves a checkpoint after the current step and returns."""

    requested: bool = False
    reason: str = ""

    def request(self, reason: str) -> None:
        self.requested, self.reason = True, reason


@dataclass
class TrainResult:
    run_dir: Path
    config: Config  # as resolved for the run (e.g. the built-in data set's folder)
    epochs_done: int
    steps_done: int
    stopped_early: bool
    last_losses: dict[str, float] = field(default_factory=dict)


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


def _ignore_stop_signals(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group, and so does the SIGTERM of systemd, Slurm, torchrun or `kill -- -PGID`:
    # data workers leave the clean stop to the main process, which ends them once it has saved.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def resolve_data_root(config: Config, run: RunFolder) -> Config:
    """Replace dataroot='builtin' with the folder the built-in data set is written to (inside the run folder);
    a paired model gets its aligned variant."""
    if config.data.dataroot != "builtin" or config.data.dir_a is not None:
        return config
    root = ensure_builtin(run.builtin_data, config.data.builtin_size, config.data.builtin_count,
                          paired=model_class(config.model).paired)
    return config.replace(data=dataclasses.replace(config.data, dataroot=str(root)))


def _training_dataset(config: Config) -> UnalignedDataset | AlignedDataset:
    """Aligned pairs for a paired model (pix2pix), two unpaired folders otherwise (CycleGAN)."""
    channels = (config.model.channels_a, config.model.channels_b)
    if model_class(config.model).paired:
        return AlignedDataset(*resolve_aligned_folders(config.data), config.data, config.train.seed, *channels)
    return UnalignedDataset(*resolve_folders(config.data), config.data, config.train.seed, *channels)


def _test_or_train(resolve: Callable[[DataConfig, str], tuple], data: DataConfig) -> tuple:
    try:
        return resolve(data, "test")
    except DatasetError:
        return resolve(data, "train")


def _fixed_samples(config: Config, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The same few images every epoch: from the test folders when there are any, else from the training ones."""
    count, size = config.train.num_samples, config.data.crop_size
    if model_class(config.model).paired:
        pairs = AlignedDataset(*_test_or_train(resolve_aligned_folders, config.data), config.data,
                               config.train.seed, config.model.channels_a, config.model.channels_b)
        images_a, images_b = load_test_pairs(pairs, size, count)
    else:
        folder_a, folder_b = _test_or_train(resolve_folders, config.data)
        images_a = load_test_images(folder_a, config.model.channels_a, size, count)
        images_b = load_test_images(folder_b, config.model.channels_b, size, count)
    count = min(len(images_a), len(images_b))
    if count == 0:  # num_samples=0: no sample grids
        return torch.zeros(0, device=device), torch.zeros(0, device=device)
    return torch.stack(images_a[:count]).to(device), torch.stack(images_b[:count]).to(device)


def _write_samples(model: TranslationModel, fixed: tuple[torch.Tensor, torch.Tensor], path: Path) -> None:
    images = model.sample(*fixed)
    columns = [("real A", "real_a"), ("G(A)", "fake_b"), ("F(G(A))", "rec_a"), ("F(A) identity", "idt_a"),
               ("real B", "real_b"), ("F(B)", "fake_a"), ("G(F(B))", "rec_b"), ("G(B) identity", "idt_b")]
    columns = [(title, key) for title, key in columns if key in images]  # pix2pix: real A, G(A), real B
    rows = [[images[key][i].cpu() for _, key in columns] for i in range(len(fixed[0]))]
    save_png(sample_grid(rows, [title for title, _ in columns], cell_size=128), path)


def _checkpoint_state(model: TranslationModel, epoch: int, iteration: int, step: int, elapsed: float) -> dict[str, Any]:
    return {"nets": model.network_state(), "training": model.training_state(), "rng": capture_rng_state(),
            "progress": {"epoch": epoch, "iteration": iteration, "step": step, "elapsed": elapsed}}


def _resume_config(saved: Config, overrides: dict[str, Any] | None, run: RunFolder) -> Config:
    """The saved config with `overrides` (flat or sectioned, from flags and a config file) applied. Options whose
    value stays the same may be given (a config file usually repeats them all); changing one that is not in
    RESUMABLE_OVERRIDES is refused, naming each."""
    flat = flat_options(overrides or {})
    if flat.get("dataroot") == "builtin" and Path(saved.data.dataroot).is_relative_to(run.builtin_data):
        flat.pop("dataroot")  # the run resolved 'builtin' to the data set it wrote into its folder
    resumed = apply_overrides(saved, {**flat, "run_dir": str(run.root)})
    changed = [f"{name}: {old!r} -> {new!r}" for name, old, new in _differences(saved, resumed)
               if name not in RESUMABLE_OVERRIDES]
    if changed:
        raise ConfigError(f"cannot change {'; '.join(changed)} when resuming {run.root} (the run was trained with "
                          f"the values in its config.yaml); only {', '.join(sorted(RESUMABLE_OVERRIDES))} may "
                          "change. Leave the others out, or start a new run in another --run-dir")
    return resumed


def _differences(before: Config, after: Config) -> list[tuple[str, Any, Any]]:
    old, new = before.to_dict(), after.to_dict()
    return [(name, value, new[section][name]) for section, values in old.items() for name, value in values.items()
            if new[section][name] != value]


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
    checkpoint_state: dict[str, Any] | None = None
    if resume:  # every rank reads the checkpoint: a multi-node run needs its run folder on a shared file system
        checkpoint = find_checkpoint(run.root)
        saved, checkpoint_state = load_checkpoint(checkpoint)
        check_checkpoint_networks(saved, checkpoint_state["nets"], checkpoint)
        config = _resume_config(saved, overrides, run)
    with distributed_context(config.train.device) as context, _claimed(context, run, resume, overwrite):
        return _train(context, config, run, checkpoint_state, show_progress, max_steps, stop or StopRequest())


@contextmanager
def _claimed(context: DistributedContext, run: RunFolder, resume: bool, overwrite: bool) -> Iterator[None]:
    """Rank 0 takes the run folder's lock and checks that a fresh run may start there; every rank learns whether
    it did, so that none waits at a barrier for a process that gave up."""
    lock, refusal = RunLock(run.lock_file), None
    if context.is_main:
        try:
            lock.acquire()
            if not resume:
                _make_room(run, overwrite)
            # The lock is ours, so no save of a checkpoint can be under way; elsewhere (a translation may be
            # writing into the folder) only files older than a minute go.
            remove_stale_temporaries(run.checkpoints, older_than=0)
            remove_stale_temporaries(run.root)
        except ConfigError as error:
            lock.release()
            refusal = error
        except OSError as error:
            lock.release()
            refusal = ConfigError(f"cannot use {run.root} as a run folder ({error}); choose another --run-dir")
    _, refused = context.agree({}, refusal is not None)
    if refused:
        raise refusal or ConfigError(f"process 0 could not start the run in {run.root}; see its message")
    try:
        yield
    finally:
        lock.release()


def _make_room(run: RunFolder, overwrite: bool) -> None:
    written = run.run_files()
    if not written:
        return
    names = ", ".join(path.name + ("/" if path.is_dir() else "") for path in written)
    if not overwrite:
        raise ConfigError(f"{run.root} already holds a run ({names}); continue it with --resume, start it afresh "
                          "with --overwrite (which deletes those files), or choose another --run-dir")
    logger.warning("--overwrite: removing the earlier run's %s from %s", names, run.root)
    run.clear()


class TrainingError(RuntimeError):
    """Training stopped on a failure; the message says what failed, what was saved, and how to go on."""


def _all_finite(nets: dict[str, dict[str, torch.Tensor]]) -> bool:
    return all(bool(torch.isfinite(tensor).all()) for weights in nets.values() for tensor in weights.values()
               if tensor.is_floating_point())


def _error_summary(error: BaseException) -> str:
    """The error's own message; for one raised in a data worker, the original's last line, not the traceback."""
    text = str(error).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1]
        text = text.split(": ", 1)[1] if ": " in text else text
    return text


def _train(context: DistributedContext, config: Config, run: RunFolder, checkpoint_state: dict[str, Any] | None,
           show_progress: bool, max_steps: int | None, stop: StopRequest) -> TrainResult:
    # --- set up: data, model, and the state to resume from ---------------------------------------------------
    if checkpoint_state is not None:
        saved_world_size = checkpoint_state["progress"].get("world_size", 1)
        if saved_world_size != context.world_size:  # the data split, pools and random streams are per rank
            raise ConfigError(f"{run.root} was trained by {saved_world_size} process(es); resume it with as many "
                              f"(this is {context.world_size})")
    device = context.device
    if context.is_main:
        run.create()
        config = resolve_data_root(config, run)  # may write the built-in data set
    context.barrier()
    if not context.is_main:
        config = resolve_data_root(config, run)  # finds the data set rank 0 wrote
    seed_everything(config.train.seed, config.train.deterministic)
    configure_cudnn(device, config.train.cudnn_benchmark and not config.train.deterministic)
    dataset = _training_dataset(config)
    _check_images(context, dataset, show_progress)
    model = build_model(config.model, config.train).to(device)
    model.skip_nonfinite_updates = config.train.skip_nonfinite_steps
    if context.enabled:
        model.distribute(context.rank, context.device_ids())
        if not context.is_main:  # own dropout masks (ranks see different images); rank 0 keeps the usual stream
            seed_everything(rank_seed(config.train.seed, context.rank), config.train.deterministic)
    progress = _Progress()
    if checkpoint_state is not None:
        own = checkpoint_state if context.is_main else checkpoint_state["rank_states"][str(context.rank)]
        model.load_network_state(checkpoint_state["nets"])
        model.load_training_state({**checkpoint_state["training"], "pools": own["training"]["pools"]})
        restore_rng_state(own["rng"])
        progress = _Progress.restored(checkpoint_state["progress"])
        if context.is_main:
            run.truncate_log(progress.step)
        logger.info("resuming %s at epoch %d, iteration %d", run.root, progress.epoch + 1, progress.iteration)
    if context.is_main:
        run.write_config(config)
    logger.info("training on %s%s: %d A / %d B images, %d epochs", device,
                f" (x{context.world_size} processes)" if context.enabled else "", len(dataset.files_a),
                len(dataset.files_b), config.train.total_epochs)
    trainer = _Trainer(context, config, run, model, dataset, progress, stop, show_progress, max_steps)
    log = LogWriter(run.log_file) if context.is_main else None
    try:
        with _stop_on_signals(stop):
            trainer.run(log)
    finally:
        if log is not None:
            log.close()
    if context.is_main:
        write_run_report(run.root)
    if trainer.stopping and context.is_main:
        logger.warning("stopped (%s) at epoch %d, iteration %d; continue with --resume",
                       stop.reason or "stop requested by another process", progress.epoch + 1, progress.iteration)
    return TrainResult(run.root, config, progress.epoch, progress.step, trainer.stopping, trainer.last_losses)


def _check_images(context: DistributedContext, dataset: UnalignedDataset | AlignedDataset,
                  show_progress: bool) -> None:
    """Every training image's header is read before the first step (rank 0 reads, every rank learns the
    outcome), so that a bad file stops the run now, listed with all the others, not hours into it."""
    problems: list[str] = []
    if context.is_main:
        files = sorted(set(dataset.files_a) | set(dataset.files_b))
        problems = unreadable_images(files, show_progress=show_progress)
    _, failed = context.agree({}, bool(problems))
    if failed:
        shown = "\n  ".join(problems[:50]) + (f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else "")
        raise DatasetError(f"{len(problems)} training image(s) cannot be read; remove or replace them, then start "
                           f"again:\n  {shown}" if problems else "process 0 found unreadable training images")


@dataclass
class _Progress:
    """Where the run is: epoch (done so far), iteration within it, steps overall, training seconds before now."""

    epoch: int = 0
    iteration: int = 0
    step: int = 0
    elapsed_before: float = 0.0

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> _Progress:
        return cls(saved["epoch"], saved["iteration"], saved["step"], saved.get("elapsed", 0.0))


class _Trainer:
    """Runs the epochs of one `train` call: steps, log records, checkpoints, samples and the report."""

    def __init__(self, context: DistributedContext, config: Config, run: RunFolder, model: TranslationModel,
                 dataset: UnalignedDataset | AlignedDataset, progress: _Progress, stop: StopRequest,
                 show_progress: bool, max_steps: int | None) -> None:
        self.context, self.config, self.run_folder, self.model = context, config, run, model
        self.dataset, self.progress, self.stop, self.max_steps = dataset, progress, stop, max_steps
        self.show_progress = show_progress and context.is_main
        self.fixed = _fixed_samples(config, context.device) if context.is_main else (torch.zeros(0), torch.zeros(0))
        items_per_rank = -(-len(dataset) // context.world_size)
        self.batches_per_epoch = -(-items_per_rank // config.train.batch_size)
        self.stopping = stop.requested
        self.last_losses: dict[str, float] = {}
        self.saved_step = progress.step  # the state of this step is in the latest checkpoint (or nothing yet)
        self.nonfinite_in_a_row = 0
        self.steps_this_call, self.started = 0, time.monotonic()
        self.lr, self.bar = 0.0, None  # this epoch's learning rate and progress bar (`_epoch_batches`)

    def elapsed(self) -> float:  # training time of the whole run, across resumes
        return self.progress.elapsed_before + time.monotonic() - self.started

    def run(self, log: LogWriter | None) -> None:
        """The epochs. A failure between steps saves the state after the last step (single process), then raises
        TrainingError; one inside a step leaves the last checkpoint as it was (the step may be half applied)."""
        in_step = False
        try:
            while self.progress.epoch < self.config.train.total_epochs and not self.stopping:
                for batch in self._epoch_batches():
                    in_step = True
                    losses = self.model.training_step(batch["a"].to(self.context.device, non_blocking=True),
                                                      batch["b"].to(self.context.device, non_blocking=True))
                    in_step = False
                    self._after_step(losses, log)
                    if self.stopping:
                        break
                self._end_of_epoch_or_stop()
        except (TrainingError, KeyboardInterrupt):
            raise
        except Exception as error:
            raise self._failed(error, in_step) from error

    def _epoch_batches(self) -> Iterator[dict[str, Any]]:
        config, progress = self.config, self.progress
        lr = learning_rate(progress.epoch, config.train)
        self.model.set_learning_rate(lr)
        self.lr = lr
        items = epoch_order(len(self.dataset), config.train.seed, progress.epoch, not config.data.serial_batches)
        items = rank_items(items, self.context.rank, self.context.world_size)
        loader = DataLoader(self.dataset, batch_size=config.train.batch_size,
                            sampler=items[progress.iteration * config.train.batch_size:],
                            num_workers=config.data.num_workers, worker_init_fn=_ignore_stop_signals,
                            pin_memory=self.context.device.type == "cuda",
                            generator=torch.Generator())  # leaves the global RNG untouched
        batches = iter(loader)
        bar = progress_bar(batches, total=self.batches_per_epoch, initial=progress.iteration, unit="it",
                           description=f"epoch {progress.epoch + 1}/{config.train.total_epochs}",
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

    def _after_step(self, losses: dict[str, float], log: LogWriter | None) -> None:
        progress = self.progress
        progress.iteration, progress.step = progress.iteration + 1, progress.step + 1
        self.steps_this_call += 1
        if self.max_steps is not None and self.steps_this_call >= self.max_steps:
            self.stop.request(f"max_steps={self.max_steps}")
        # Ranks stop after the same step, whichever of them a signal reached first.
        losses, self.stopping = self.context.agree(losses, self.stop.requested)
        self._check_finite(losses)
        self.last_losses = losses
        if log is not None:
            log.write({"epoch": progress.epoch + 1, "iteration": progress.iteration, "step": progress.step,
                       "time": round(self.elapsed(), 3), "lr": self.lr, "losses": losses})
        remaining = self.config.train.total_epochs * self.batches_per_epoch - progress.step
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
            logger.warning("step %d: %s; its non-finite updates were skipped", self.progress.step, bad)
            return
        in_a_row = f" in {self.nonfinite_in_a_row} steps in a row" if self.nonfinite_in_a_row > 1 else ""
        raise TrainingError(f"training diverged at step {self.progress.step} (epoch {self.progress.epoch + 1}): "
                            f"{bad}{in_a_row}. {self._kept()} Lower --lr, or check the data, then --resume or start "
                            "again; --skip-nonfinite-steps skips such steps instead of stopping")

    def _kept(self) -> str:
        latest = self.run_folder.latest_checkpoint
        if latest.exists():
            return f"The last checkpoint, {latest}, holds finite weights and was left as it was."
        return "No checkpoint had been written yet."

    def _end_of_epoch_or_stop(self) -> None:
        progress, run = self.progress, self.run_folder
        if self.stopping and progress.iteration < self.batches_per_epoch:
            self._save([run.latest_checkpoint])  # mid-epoch: a resume continues with the next batch of this epoch
            return
        progress.epoch, progress.iteration = progress.epoch + 1, 0
        total = self.config.train.total_epochs
        keep = progress.epoch % self.config.train.save_every == 0 or progress.epoch == total
        self._save([run.latest_checkpoint, run.epoch_checkpoint(progress.epoch)] if keep else [run.latest_checkpoint])
        if self.context.is_main:
            if self.fixed[0].shape[0]:
                _write_samples(self.model, self.fixed, run.sample_file(progress.epoch))
            write_run_report(run.root)
        logger.info("epoch %d/%d done: %s", progress.epoch, total,
                    ", ".join(f"{k} {v:.3f}" for k, v in self.last_losses.items()))
        _, self.stopping = self.context.agree({}, self.stop.requested)  # a signal during the epoch's end stops here

    def _save(self, paths: list[Path]) -> None:
        """A collective: all ranks call it at the same point. Rank 0 writes its own pools and random state where a
        single process would, and every other rank's beside them. Weights that are not finite are never saved."""
        progress, context = self.progress, self.context
        state = _checkpoint_state(self.model, progress.epoch, progress.iteration, progress.step, self.elapsed())
        ranks = context.gather({"training": {"pools": state["training"]["pools"]}, "rng": state["rng"]})
        if not context.is_main:
            return
        if not _all_finite(state["nets"]):
            raise TrainingError(f"training diverged: the weights after step {progress.step} are not finite, so no "
                                f"checkpoint was written. {self._kept()} Lower --lr, then --resume or start again")
        if context.enabled:
            state["progress"]["world_size"] = context.world_size
            state["rank_states"] = {str(rank): ranks[rank] for rank in range(1, context.world_size)}
        for path in paths:
            save_checkpoint(path, self.config, state)
        self.saved_step = progress.step

    def _failed(self, error: Exception, in_step: bool) -> TrainingError:
        """Save what can be saved after `error`, and say what happened and how to go on."""
        progress = self.progress
        where = f"at epoch {progress.epoch + 1}, iteration {progress.iteration} (step {progress.step})"
        saved = ""
        if not in_step and not self.context.enabled and progress.step > self.saved_step:
            try:
                self._save([self.run_folder.latest_checkpoint])
                saved = (f"The state after step {progress.step} was saved to {self.run_folder.latest_checkpoint}; "
                         f"fix the cause, then continue with --resume.")
            except Exception as save_error:  # noqa: BLE001 - report both, keep the first
                saved = f"Saving a checkpoint failed too ({_error_summary(save_error)}). {self._kept()}"
        else:
            saved = self._kept() + (" Fix the cause, then continue with --resume."
                                    if self.run_folder.latest_checkpoint.exists() else "")
        return TrainingError(f"training stopped {where}: {_error_summary(error)}. {saved}")
