"""Phase 1 of the training loop: set up a run, or restore one from its latest checkpoint.

`read_resume` reads what a resume continues from (every rank reads it); `claimed` takes the run folder for this
process group; `set_up_or_restore` prepares the data, the model and the fixed sample images, and puts a restored
state back. What follows (epochs) is in `epoch.py`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config, ConfigError, DataConfig, apply_overrides, flat_options
from ..data.folders import (
    AlignedDataset,
    DatasetError,
    UnalignedDataset,
    load_test_images,
    load_test_pairs,
    resolve_aligned_folders,
    resolve_folders,
)
from ..data.synthetic import ensure_builtin
from ..io.atomic import remove_stale_temporaries
from ..io.checkpoints import find_checkpoint, load_checkpoint
from ..io.images import unreadable_images
from ..io.run_folder import RunFolder, RunLock
from ..model_registry import model_entry
from ..models import TranslationModel, build_model, check_checkpoint_networks
from ..runtime import configure_cudnn, seed_everything
from .distributed import DistributedContext, rank_seed
from .state import Counters, TrainingState

logger = logging.getLogger(__name__)

# Options that may change when a run is resumed; everything else must stay as the run was started.
RESUMABLE_OVERRIDES = frozenset({"device", "num_workers", "n_epochs", "n_epochs_decay", "save_every", "run_dir",
                                 "num_samples", "fast_convolutions", "cudnn_benchmark", "skip_nonfinite_steps",
                                 "vgg_weights"})  # feature_gan's fixed VGG-16 file, wherever it now lies


@dataclass
class Session:
    """What the epochs work with: the config as resolved, the model (restored, on its device), the training data,
    the counters to go on from, and the fixed sample images (empty tensors on ranks other than 0)."""

    config: Config
    model: TranslationModel
    dataset: UnalignedDataset | AlignedDataset
    counters: Counters
    fixed: tuple[torch.Tensor, torch.Tensor]


# --- resume: the checkpoint and the config to go on with -----------------------------------------------------

def read_resume(run: RunFolder, overrides: dict[str, Any] | None) -> tuple[Config, TrainingState]:
    """The config (the saved one with `overrides` applied where a resume allows it) and the state that the run in
    `run` continues from. Every rank reads the checkpoint: a multi-node run needs its run folder on a shared file
    system."""
    checkpoint = find_checkpoint(run.root)
    saved, tree = load_checkpoint(checkpoint)
    check_checkpoint_networks(saved, tree.get("nets", {}), checkpoint)
    restored = TrainingState.from_checkpoint(tree, checkpoint)
    return _resume_config(saved, overrides, run), restored


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
    old, new = before.flat(), after.flat()
    return [(name, value, new.get(name)) for name, value in old.items() if new.get(name) != value]


# --- the run folder ------------------------------------------------------------------------------------------

@contextmanager
def claimed(context: DistributedContext, run: RunFolder, resume: bool, overwrite: bool) -> Iterator[None]:
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


# --- data, model and restored state --------------------------------------------------------------------------

def set_up_or_restore(context: DistributedContext, config: Config, run: RunFolder, restored: TrainingState | None,
                      show_progress: bool) -> Session:
    """Create the run folder, find the data (writing the built-in set if asked), check every training image, seed,
    build the model and, when resuming, put `restored` back. Every rank calls this; rank 0 writes the folder."""
    if restored is not None and restored.world_size != context.world_size:  # data split, pools and RNG are per rank
        raise ConfigError(f"{run.root} was trained by {restored.world_size} process(es); resume it with as many "
                          f"(this is {context.world_size})")
    if context.is_main:
        run.create()
        config = resolve_data_root(config, run)  # may write the built-in data set
    context.barrier()
    if not context.is_main:
        config = resolve_data_root(config, run)  # finds the data set rank 0 wrote
    seed_everything(config.train.seed, config.train.deterministic)
    configure_cudnn(context.device, config.train.cudnn_benchmark and not config.train.deterministic)
    dataset = _training_dataset(config)
    _check_images(context, dataset, show_progress)
    model = _built_model(context, config)
    counters = Counters()
    if restored is not None:
        restored.restore(model, context.rank)
        counters = dataclasses.replace(restored.counters)
        if context.is_main:
            run.truncate_log(counters.step)
        logger.info("resuming %s at epoch %d, iteration %d", run.root, counters.epoch + 1, counters.iteration)
    if context.is_main:
        run.write_config(config)
    logger.info("training on %s%s: %d A / %d B images, %d epochs", context.device,
                f" (x{context.world_size} processes)" if context.enabled else "", len(dataset.files_a),
                len(dataset.files_b), config.train.total_epochs)
    fixed = _fixed_samples(config, context.device) if context.is_main else (torch.zeros(0), torch.zeros(0))
    return Session(config, model, dataset, counters, fixed)


def _built_model(context: DistributedContext, config: Config) -> TranslationModel:
    model = build_model(config).to(context.device)
    model.skip_nonfinite_updates = config.train.skip_nonfinite_steps
    if context.enabled:
        model.distribute(context.rank, context.device_ids())
        if not context.is_main:  # own dropout masks (ranks see different images); rank 0 keeps the usual stream
            seed_everything(rank_seed(config.train.seed, context.rank), config.train.deterministic)
    return model


def resolve_data_root(config: Config, run: RunFolder) -> Config:
    """Replace dataroot='builtin' with the folder the built-in data set is written to (inside the run folder);
    a paired model gets its aligned variant."""
    if config.data.dataroot != "builtin" or config.data.dir_a is not None:
        return config
    root = ensure_builtin(run.builtin_data, config.data.builtin_size, config.data.builtin_count,
                          paired=model_entry(config.model).paired)
    return config.replace(data=dataclasses.replace(config.data, dataroot=str(root)))


def _training_dataset(config: Config) -> UnalignedDataset | AlignedDataset:
    """Aligned pairs for a model whose data kind is aligned (pix2pix), two unpaired folders otherwise (CycleGAN)."""
    channels = (config.networks.channels_a, config.networks.channels_b)
    if model_entry(config.model).paired:
        return AlignedDataset(*resolve_aligned_folders(config.data), config.data, config.train.seed, *channels)
    return UnalignedDataset(*resolve_folders(config.data), config.data, config.train.seed, *channels)


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


def _test_or_train(resolve: Callable[[DataConfig, str], tuple], data: DataConfig) -> tuple:
    try:
        return resolve(data, "test")
    except DatasetError:
        return resolve(data, "train")


def _fixed_samples(config: Config, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The same few images every epoch: from the test folders when there are any, else from the training ones."""
    count, size = config.train.num_samples, config.data.crop_size
    if model_entry(config.model).paired:
        pairs = AlignedDataset(*_test_or_train(resolve_aligned_folders, config.data), config.data,
                               config.train.seed, config.networks.channels_a, config.networks.channels_b)
        images_a, images_b = load_test_pairs(pairs, size, count)
    else:
        folder_a, folder_b = _test_or_train(resolve_folders, config.data)
        images_a = load_test_images(folder_a, config.networks.channels_a, size, count)
        images_b = load_test_images(folder_b, config.networks.channels_b, size, count)
    count = min(len(images_a), len(images_b))
    if count == 0:  # num_samples=0: no sample grids
        return torch.zeros(0, device=device), torch.zeros(0, device=device)
    return torch.stack(images_a[:count]).to(device), torch.stack(images_b[:count]).to(device)
