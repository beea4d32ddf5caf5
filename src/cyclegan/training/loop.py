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

from ..config import Config, ConfigError, DataConfig, apply_overrides
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
from ..io.checkpoints import find_checkpoint, load_checkpoint, save_checkpoint
from ..io.run_folder import LogWriter, RunFolder
from ..models import TranslationModel, build_model, model_class
from ..progress import format_duration, progress_bar
from ..report.grids import sample_grid, save_png
from ..report.html import write_run_report
from ..runtime import capture_rng_state, configure_cudnn, keep_freed_memory, restore_rng_state, seed_everything
from .distributed import DistributedContext, distributed_context, rank_items, rank_seed
from .schedule import learning_rate

logger = logging.getLogger(__name__)

# Options that may change when a run is resumed; everything else must stay as the run was started.
RESUMABLE_OVERRIDES = frozenset({"device", "num_workers", "n_epochs", "n_epochs_decay", "save_every", "run_dir",
                                 "fast_convolutions", "cudnn_benchmark"})


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


def _ignore_sigint(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; data workers leave the clean stop to the main process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def resolve_data_root(config: Config, run: RunFolder) -> Config:
    """Replace dataroot='builtin' with the folder the built-in data set is written to (inside the run folder);
    a paired model gets its aligned variant."""
    if config.data.dataroot != "builtin" or config.data.dir_a is not None:
        return config
    root = ensure_builtin(run.root / "data", config.data.builtin_size, config.data.builtin_count,
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


def _resume_config(saved: Config, overrides: dict[str, Any] | None) -> Config:
    overrides = overrides or {}
    flat = {k: v for section in overrides.values() for k, v in section.items()} if all(
        isinstance(v, dict) for v in overrides.values()) else overrides
    refused = sorted(set(flat) - RESUMABLE_OVERRIDES)
    if refused:
        raise ConfigError(f"cannot change {', '.join(refused)} when resuming (the run was trained with the values "
                          f"in its config.yaml); only {', '.join(sorted(RESUMABLE_OVERRIDES))} may change")
    return apply_overrides(saved, flat)


def train(config: Config, resume: bool = False, overrides: dict[str, Any] | None = None,
          show_progress: bool = True, max_steps: int | None = None, stop: StopRequest | None = None) -> TrainResult:
    """Train the model `config` names (CycleGAN or pix2pix) as it says, in `config.train.run_dir`.

    resume: continue the run in that folder from its latest checkpoint; the saved config is used, with
    `overrides` (flat option names) applied where a resume allows it. max_steps: stop cleanly, with a resumable
    checkpoint, after this many iterations in this call. Returns what was done.

    Under `torchrun` every process calls this; they train one model data-parallel (see `distributed.py`): an
    iteration (a step) is one update on the global batch, batch_size images per domain from each process. Rank 0
    writes the run folder. `stop` lets a caller (or a signal) end the run cleanly after the current step.
    """
    run = RunFolder(Path(config.train.run_dir))
    checkpoint_state: dict[str, Any] | None = None
    if resume:  # every rank reads the checkpoint: a multi-node run needs its run folder on a shared file system
        saved, checkpoint_state = load_checkpoint(find_checkpoint(run.root))
        config = _resume_config(saved, {**(overrides or {}), "run_dir": str(run.root)})
    with distributed_context(config.train.device) as context:
        return _train(context, config, run, checkpoint_state, show_progress, max_steps, stop or StopRequest())


def _train(context: DistributedContext, config: Config, run: RunFolder, checkpoint_state: dict[str, Any] | None,
           show_progress: bool, max_steps: int | None, stop: StopRequest) -> TrainResult:
    if checkpoint_state is not None:
        saved_world_size = checkpoint_state["progress"].get("world_size", 1)
        if saved_world_size != context.world_size:  # the data split, pools and random streams are per rank
            raise ConfigError(f"{run.root} was trained by {saved_world_size} process(es); resume it with as many "
                              f"(this is {context.world_size})")
    elif run.latest_checkpoint.exists():
        raise ConfigError(f"{run.root} already holds a run; resume it with --resume, or choose another --run-dir")
    context.barrier()  # every rank has looked at the run folder before rank 0 writes into it

    device = context.device
    if device.type == "cpu":
        keep_freed_memory()  # fewer page faults: about 10% of a CPU step
    if context.is_main:
        run.create()
        config = resolve_data_root(config, run)  # may write the built-in data set
    context.barrier()
    if not context.is_main:
        config = resolve_data_root(config, run)  # finds the data set rank 0 wrote
    seed_everything(config.train.seed, config.train.deterministic)
    configure_cudnn(device, config.train.cudnn_benchmark and not config.train.deterministic)
    dataset = _training_dataset(config)
    model = build_model(config.model, config.train).to(device)
    if context.enabled:
        model.distribute(context.rank, context.device_ids())
        if not context.is_main:  # own dropout masks (ranks see different images); rank 0 keeps the usual stream
            seed_everything(rank_seed(config.train.seed, context.rank), config.train.deterministic)
    epoch, iteration, step, elapsed_before = 0, 0, 0, 0.0
    if checkpoint_state is not None:
        own = checkpoint_state if context.is_main else checkpoint_state["rank_states"][str(context.rank)]
        model.load_network_state(checkpoint_state["nets"])
        model.load_training_state({**checkpoint_state["training"], "pools": own["training"]["pools"]})
        restore_rng_state(own["rng"])
        progress = checkpoint_state["progress"]
        epoch, iteration, step = progress["epoch"], progress["iteration"], progress["step"]
        elapsed_before = progress.get("elapsed", 0.0)
        if context.is_main:
            run.truncate_log(step)
        logger.info("resuming %s at epoch %d, iteration %d", run.root, epoch + 1, iteration)
    if context.is_main:
        run.write_config(config)
    fixed = _fixed_samples(config, device) if context.is_main else (torch.zeros(0), torch.zeros(0))
    log = LogWriter(run.log_file) if context.is_main else None
    batch_size, total_epochs = config.train.batch_size, config.train.total_epochs
    items_per_rank = -(-len(dataset) // context.world_size)
    batches_per_epoch = -(-items_per_rank // batch_size)
    steps_this_call, last_losses, started, stopping = 0, {}, time.monotonic(), stop.requested
    logger.info("training on %s%s: %d A / %d B images, %d epochs", device,
                f" (x{context.world_size} processes)" if context.enabled else "", len(dataset.files_a),
                len(dataset.files_b), total_epochs)

    def elapsed() -> float:  # training time of the whole run, across resumes
        return elapsed_before + time.monotonic() - started

    def save(paths: list[Path], at_epoch: int, at_iteration: int) -> None:
        # A collective: all ranks call it at the same point. Rank 0 writes its own pools and random state where a
        # single process would, and every other rank's beside them.
        state = _checkpoint_state(model, at_epoch, at_iteration, step, elapsed())
        ranks = context.gather({"training": {"pools": state["training"]["pools"]}, "rng": state["rng"]})
        if not context.is_main:
            return
        if context.enabled:
            state["progress"]["world_size"] = context.world_size
            state["rank_states"] = {str(rank): ranks[rank] for rank in range(1, context.world_size)}
        for path in paths:
            save_checkpoint(path, config, state)

    try:
        with _stop_on_signals(stop):
            while epoch < total_epochs and not stopping:
                lr = learning_rate(epoch, config.train)
                model.set_learning_rate(lr)
                items = epoch_order(len(dataset), config.train.seed, epoch, not config.data.serial_batches)
                items = rank_items(items, context.rank, context.world_size)
                loader = DataLoader(dataset, batch_size=batch_size, sampler=items[iteration * batch_size:],
                                    num_workers=config.data.num_workers, worker_init_fn=_ignore_sigint,
                                    pin_memory=device.type == "cuda",
                                    generator=torch.Generator())  # leaves the global RNG untouched
                bar = progress_bar(loader, total=batches_per_epoch, initial=iteration, unit="it",
                                   description=f"epoch {epoch + 1}/{total_epochs}",
                                   enabled=show_progress and context.is_main)
                for batch in bar:
                    losses = model.training_step(batch["a"].to(device, non_blocking=True),
                                                 batch["b"].to(device, non_blocking=True))
                    iteration, step, steps_this_call = iteration + 1, step + 1, steps_this_call + 1
                    if max_steps is not None and steps_this_call >= max_steps:
                        stop.request(f"max_steps={max_steps}")
                    # Ranks stop after the same step, whichever of them a signal reached first.
                    losses, stopping = context.agree(losses, stop.requested)
                    last_losses = losses
                    if log is not None:
                        log.write({"epoch": epoch + 1, "iteration": iteration, "step": step,
                                   "time": round(elapsed(), 3), "lr": lr, "losses": losses})
                    remaining = total_epochs * batches_per_epoch - step
                    run_eta = remaining * (time.monotonic() - started) / steps_this_call
                    bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()},
                                     "run ETA": format_duration(run_eta)}, refresh=False)
                    if stopping:
                        break
                bar.close()
                del loader
                if stopping and iteration < batches_per_epoch:
                    # mid-epoch: a resume continues with the next batch of this epoch
                    save([run.latest_checkpoint], epoch, iteration)
                    break
                epoch, iteration = epoch + 1, 0
                keep = epoch % config.train.save_every == 0 or epoch == total_epochs
                save([run.latest_checkpoint, run.epoch_checkpoint(epoch)] if keep else [run.latest_checkpoint],
                     epoch, 0)
                if context.is_main:
                    if fixed[0].shape[0]:
                        _write_samples(model, fixed, run.sample_file(epoch))
                    write_run_report(run.root)
                logger.info("epoch %d/%d done: %s", epoch, total_epochs,
                            ", ".join(f"{k} {v:.3f}" for k, v in last_losses.items()))
                _, stopping = context.agree({}, stop.requested)  # a signal during the epoch's end stops here
    finally:
        if log is not None:
            log.close()
    if context.is_main:
        write_run_report(run.root)
    if stopping and context.is_main:
        logger.warning("stopped (%s) at epoch %d, iteration %d; continue with --resume",
                       stop.reason or "stop requested by another process", epoch + 1, iteration)
    return TrainResult(run.root, config, epoch, step, stopping, last_losses)
