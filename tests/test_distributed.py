"""Data-parallel training: per-rank sampling, and two Gloo processes under torchrun against one process."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn

from cyclegan.data.folders import epoch_order
from cyclegan.io.checkpoints import load_checkpoint
from cyclegan.models import build_model
from cyclegan.training.distributed import distributed_context, rank_items, rank_seed
from cyclegan.training.loop import train
from cyclegan.training.pool import ImagePool

from .helpers import tiny_config, tiny_dataset


@pytest.mark.parametrize("length,world_size,batch_size", [(4, 2, 1), (7, 2, 2), (10, 4, 3), (5, 3, 1)])
def test_ranks_share_each_global_batch_as_one_process_would_draw_it(length, world_size, batch_size):
    items = epoch_order(length, seed=3, epoch=1, shuffle=True)
    shares = [rank_items(items, rank, world_size) for rank in range(world_size)]
    assert len({len(share) for share in shares}) == 1  # same number of steps on every rank
    padded = items + items[:len(shares[0]) * world_size - length]
    global_batch = batch_size * world_size
    for j in range(-(-len(shares[0]) // batch_size)):
        drawn = [item for share in shares for item in share[j * batch_size:(j + 1) * batch_size]]
        assert sorted(drawn) == sorted(padded[j * global_batch:(j + 1) * global_batch])
    assert rank_items(items, 0, 1) == items


def test_one_process_is_not_distributed():
    with distributed_context("cpu") as context:
        assert (context.rank, context.world_size, context.is_main, context.enabled) == (0, 1, True, False)
        assert context.agree({"gan": 1.5}, True) == ({"gan": 1.5}, True)
        assert context.gather("x") == ["x"]
        assert not dist.is_initialized()


def test_ranks_draw_their_own_pool_choices():
    assert rank_seed(7, 0) == 7 and len({rank_seed(7, rank) for rank in range(8)}) == 8
    pool = ImagePool(3, seed=5)
    assert pool.for_rank(0).seed == 5 and pool.for_rank(1).seed != 5 and pool.for_rank(1).size == 3


def _trained_model(run_dir):
    config, state = load_checkpoint(run_dir / "checkpoints" / "latest.safetensors")
    model = build_model(config)
    model.load_network_state(state["nets"])
    return model


def _biases_before_instance_norm(run_dir):
    """Checkpoint names (net.key) of the convolution biases that an affine-free instance norm follows."""
    model = _trained_model(run_dir)
    inert = set()
    for name, net in model.networks().items():
        for prefix, module in net.named_modules():
            children = list(module.named_children())
            for (child, layer), (_, following) in zip(children, children[1:], strict=False):
                cancelled = isinstance(following, nn.InstanceNorm2d) and not following.affine
                if cancelled and getattr(layer, "bias", None) is not None:
                    inert.add(f"{name}.{prefix + '.' if prefix else ''}{child}.bias")
    return inert


def _assert_same_effective_weights(ddp_state, single_state, single_run):
    inert = _biases_before_instance_norm(single_run)
    largest = 0.0
    for name, weights in single_state["nets"].items():
        for key, value in weights.items():
            if f"{name}.{key}" in inert:
                continue
            # Only the float summation order differs (an all-reduce of two per-rank means vs. one batch mean).
            largest = max(largest, (ddp_state["nets"][name][key] - value).abs().max().item())
            torch.testing.assert_close(ddp_state["nets"][name][key], value, rtol=0, atol=1e-5, msg=f"{name}.{key}")
    print(f"\nlargest weight difference, 2 processes vs 1 (effective weights): {largest:.2e}")


def _options(dataroot, run_dir):
    return ["--dataroot", str(dataroot), "--run-dir", str(run_dir), "--gen-arch", "resnet_6blocks", "--ngf", "4",
            "--ndf", "4", "--load-size", "36", "--crop-size", "32", "--num-workers", "0", "--n-epochs", "1",
            "--n-epochs-decay", "1", "--pool-size", "0", "--device", "cpu", "--deterministic",
            "--num-samples", "2", "--save-every", "2"]


def _torchrun(*arguments):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "cyclegan", "train", "--quiet", *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_process_with_the_same_global_batch(tmp_path):
    dataroot = tiny_dataset(tmp_path / "data")  # 4 A images, 3 B: 4 items, 2 steps per epoch at global batch 2
    ddp_run, single_run = tmp_path / "ddp", tmp_path / "single"

    first = _torchrun(*_options(dataroot, ddp_run), "--max-steps", "3")  # stops mid-epoch 2
    assert "resume with" in first.stdout and first.stdout.count("stopped after") == 1  # rank 0 alone speaks
    _, state = load_checkpoint(ddp_run / "checkpoints" / "latest.safetensors")
    assert state["progress"]["world_size"] == 2 and (state["progress"]["epoch"], state["progress"]["iteration"]) \
        == (1, 1)
    assert set(state["rank_states"]) == {"1"}
    _torchrun("--resume", "--run-dir", str(ddp_run))  # under torchrun again: finishes epoch 2

    # One process, batch 2: the same global batches. Instance norm treats every image alone and DDP averages the
    # per-rank mean losses' gradients, which equals the gradient of the mean over both images.
    train(tiny_config(single_run, dataroot, batch_size=2, pool_size=0, n_epochs_decay=1), show_progress=False)

    ddp_state = load_checkpoint(ddp_run / "checkpoints" / "latest.safetensors")[1]
    single_state = load_checkpoint(single_run / "checkpoints" / "latest.safetensors")[1]
    assert ddp_state["progress"]["step"] == single_state["progress"]["step"] == 4
    _assert_same_effective_weights(ddp_state, single_state, single_run)
    # A bias just before an instance norm without affine parameters is cancelled by the norm's mean subtraction:
    # its exact gradient is 0, its computed one is round-off, and Adam's m / sqrt(v) turns round-off of either
    # sign into steps of about lr. Those biases may differ by a few lr; they change no output. The outputs (in
    # [-1, 1]) agree as closely as the effective weights allow through this untrained net's instance norms:
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    outputs = [_trained_model(run).sample(images, images) for run in (ddp_run, single_run)]
    for key in outputs[1]:
        torch.testing.assert_close(outputs[0][key], outputs[1][key], rtol=0, atol=2e-3)

    ddp_log = [json.loads(line) for line in (ddp_run / "log.jsonl").read_text().splitlines()]
    single_log = [json.loads(line) for line in (single_run / "log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in ddp_log] == [1, 2, 3, 4]  # rank 0 alone writes; no duplicate lines
    for ddp_record, single_record in zip(ddp_log, single_log, strict=True):  # losses averaged over the ranks
        assert ddp_record["losses"] == pytest.approx(single_record["losses"], abs=1e-4)
    assert sorted(p.name for p in (ddp_run / "checkpoints").iterdir()) == ["epoch_0002.safetensors",
                                                                          "latest.safetensors"]
    assert sorted(p.name for p in (ddp_run / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]


@pytest.mark.slow
def test_generator_used_by_one_chain_only_is_still_reduced(tmp_path):
    """The optimised step back-propagates the x and y chains one after the other and all-reduces a generator's
    gradients once, after the second chain, when that chain calls it again. With gan_forward (no backward cycle)
    the y chain never calls G: G's gradients must be reduced after the x chain, or the ranks would drift apart."""
    dataroot = tiny_dataset(tmp_path / "data")
    ddp_run, single_run = tmp_path / "ddp", tmp_path / "single"
    _torchrun(*_options(dataroot, ddp_run), "--objective", "gan_forward", "--n-epochs-decay", "0")
    train(tiny_config(single_run, dataroot, batch_size=2, pool_size=0, n_epochs_decay=0, objective="gan_forward"),
          show_progress=False)
    ddp_state = load_checkpoint(ddp_run / "checkpoints" / "latest.safetensors")[1]
    single_state = load_checkpoint(single_run / "checkpoints" / "latest.safetensors")[1]
    assert ddp_state["progress"]["step"] == single_state["progress"]["step"] == 2
    _assert_same_effective_weights(ddp_state, single_state, single_run)
