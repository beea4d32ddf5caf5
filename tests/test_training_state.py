"""training/state.py: TrainingState reads and writes exactly the tree that checkpoints hold (legacy ones included),
puts each rank's own part back, and refuses an incomplete one with the file named."""

import copy
import random
from pathlib import Path

import pytest
import torch

from cyclegan.io.checkpoints import CheckpointError, load_checkpoint
from cyclegan.models import build_model
from cyclegan.runtime import capture_rng_state
from cyclegan.training.loop import train
from cyclegan.training.state import Counters, TrainingState

from .helpers import rewrite_checkpoint, tiny_config, tiny_dataset
from .test_training import _assert_same_tensors

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"


@pytest.mark.parametrize("model", ["cyclegan", "pix2pix"])
def test_a_legacy_checkpoint_reads_and_writes_back_as_the_same_tree(model):
    path = LEGACY / f"{model}.safetensors"
    _, tree = load_checkpoint(path)
    state = TrainingState.from_checkpoint(copy.deepcopy(tree), path)
    assert (state.counters.epoch, state.counters.step, state.world_size, set(state.ranks)) == (1, 4, 1, {0})
    _assert_same_tensors(state.to_checkpoint(), tree)


def _distributed_tree(model, rank_1_pools, rng_1):
    """A two-process checkpoint's tree, as the loop writes one (test_distributed trains a real one)."""
    training = model.training_state()
    return {"nets": model.network_state(), "training": training, "rng": capture_rng_state(),
            "progress": {"epoch": 0, "iteration": 2, "step": 2, "elapsed": 1.5, "world_size": 2},
            "rank_states": {"1": {"training": {"pools": rank_1_pools}, "rng": rng_1}}}


def test_each_rank_gets_its_own_pools_and_random_state_back():
    config, _ = load_checkpoint(LEGACY / "cyclegan.safetensors")
    model = build_model(config)
    image = torch.full((1, 3, 32, 32), 0.25)
    rank_1_pools = {name: {"images": image, "random_state": random.Random(7).getstate()} for name in model.pools}
    random.seed(11)
    rng_1 = capture_rng_state()
    random.seed(0)
    tree = _distributed_tree(model, rank_1_pools, rng_1)
    state = TrainingState.from_checkpoint(tree, "two.safetensors")
    assert state.world_size == 2 and state.counters == Counters(0, 2, 2, 1.5)
    _assert_same_tensors(state.to_checkpoint(), tree)

    state.restore(model, rank=1)
    assert all(torch.equal(pool.images[0], image) for pool in model.pools.values())
    assert random.random() == random.Random(11).random()  # rank 1's Python stream, not rank 0's
    state.restore(model, rank=0)
    assert all(len(pool) == 0 for pool in model.pools.values())


@pytest.mark.parametrize("edit, detail", [
    (lambda tree: tree.pop("training"), "KeyError: 'training'"),
    (lambda tree: tree["progress"].update(world_size=2), r"the states of ranks \[0\] of 2"),
])
def test_an_incomplete_training_state_is_refused_with_the_file_named(edit, detail):
    path = LEGACY / "cyclegan.safetensors"
    _, tree = load_checkpoint(path)
    edit(tree)
    with pytest.raises(CheckpointError, match=rf"^{path} holds no complete training state \({detail}\), so the run "
                                              "cannot be resumed from it; use the file as cyclegan wrote it"):
        TrainingState.from_checkpoint(tree, path)


def test_resuming_a_checkpoint_without_its_training_state_is_refused_before_anything_is_written(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    data = tiny_dataset(tmp_path / "data", count_a=4, count_b=4)
    latest = rewrite_checkpoint(LEGACY / "cyclegan.safetensors", run / "checkpoints" / "latest.safetensors",
                                config=lambda c: c["data"].update(dataroot=str(data)),
                                state=lambda s: s.pop("training"))
    with pytest.raises(CheckpointError, match=rf"^{latest} holds no complete training state"):
        train(tiny_config(run, data), resume=True, show_progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints"]
