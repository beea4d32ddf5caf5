import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cyclegan.config import ConfigError
from cyclegan.io.checkpoints import load_checkpoint
from cyclegan.models.cyclegan import CycleGAN
from cyclegan.nets.speed import speed_layers
from cyclegan.runtime import configure_cudnn
from cyclegan.training.loop import train

from .helpers import tiny_config, tiny_dataset


@pytest.fixture
def dataroot(tmp_path):
    return tiny_dataset(tmp_path / "data")


def _final_state(run_dir):
    _, state = load_checkpoint(run_dir / "checkpoints" / "latest.safetensors")
    assert state["progress"].pop("elapsed") > 0  # wall-clock time, the one thing a resume cannot repeat
    return state


def _assert_same_tensors(left, right, path=""):
    if isinstance(left, torch.Tensor):
        assert torch.equal(left, right), path
    elif isinstance(left, dict):
        assert left.keys() == right.keys(), path
        for key in left:
            _assert_same_tensors(left[key], right[key], f"{path}/{key}")
    elif isinstance(left, (list, tuple)):
        assert len(left) == len(right), path
        for i, (a, b) in enumerate(zip(left, right, strict=True)):
            _assert_same_tensors(a, b, f"{path}/{i}")
    else:
        assert left == right, path


def _losses(run_dir):
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [(r["step"], r["losses"]) for r in map(json.loads, lines)]


def test_run_folder_holds_config_log_checkpoints_samples_and_report(tmp_path, dataroot):
    config = tiny_config(tmp_path / "run", dataroot, batch_size=2)
    result = train(config, show_progress=False)
    run = tmp_path / "run"
    assert (result.epochs_done, result.steps_done) == (3, 6)  # 4 A images, batch 2, 3 epochs
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert set(records[0]["losses"]) == {"gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_a", "idt_b",
                                         "disc_a", "disc_b"}
    assert [r["lr"] for r in records[::2]] == pytest.approx([2e-4, 2e-4 * 2 / 3, 2e-4 / 3])
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "epoch_0002.safetensors", "epoch_0003.safetensors", "latest.safetensors"]
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "epoch_0001.png", "epoch_0002.png", "epoch_0003.png"]
    assert (run / "losses.png").stat().st_size > 1000
    html = (run / "index.html").read_text()
    assert "samples/epoch_0003.png" in html and "losses.png" in html
    saved = load_checkpoint(run / "checkpoints" / "latest.safetensors")[0]
    assert saved.networks.ngf == 4 and "ngf: 4" in (run / "config.yaml").read_text()


def test_stop_and_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, dataroot):
    straight = tmp_path / "straight"
    train(tiny_config(straight, dataroot), show_progress=False)

    pieces = tmp_path / "pieces"
    first = train(tiny_config(pieces, dataroot), show_progress=False, max_steps=3)  # stops mid-epoch 1
    assert first.stopped_early and first.steps_done == 3
    progress = _final_state(pieces)["progress"]
    assert (progress["epoch"], progress["iteration"]) == (0, 3)
    second = train(tiny_config(pieces, dataroot), resume=True, show_progress=False, max_steps=3)  # into epoch 2
    assert second.steps_done == 6
    third = train(tiny_config(pieces, dataroot), resume=True, show_progress=False)
    assert not third.stopped_early and third.steps_done == 12
    # the training time is the whole run's, across the resumes, as the checkpoint records it
    assert 0 < first.seconds < second.seconds < third.seconds
    recorded = load_checkpoint(pieces / "checkpoints" / "latest.safetensors")[1]["progress"]["elapsed"]
    assert third.seconds == pytest.approx(recorded, abs=1.0)

    _assert_same_tensors(_final_state(straight), _final_state(pieces))
    assert _losses(straight) == _losses(pieces)


def test_resume_refuses_changes_that_would_break_the_run(tmp_path, dataroot):
    run = tmp_path / "run"
    train(tiny_config(run, dataroot), show_progress=False, max_steps=1)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_config(run, dataroot), show_progress=False)
    with pytest.raises(ConfigError, match="cannot change ngf"):
        train(tiny_config(run, dataroot), resume=True, overrides={"ngf": 8}, show_progress=False)
    result = train(tiny_config(run, dataroot), resume=True, overrides={"n_epochs": 2}, show_progress=False)
    assert result.epochs_done == 4  # the total was extended by the allowed override


@pytest.mark.parametrize("objective,expected", [
    ("gan_only", {"gan_ab", "gan_ba", "disc_a", "disc_b"}),
    ("cycle_only", {"cycle_a", "cycle_b"}),
    ("gan_forward", {"gan_ab", "gan_ba", "cycle_a", "disc_a", "disc_b"}),
    ("gan_backward", {"gan_ab", "gan_ba", "cycle_b", "disc_a", "disc_b"}),
])
def test_ablations_train_only_their_terms(objective, expected):
    config = tiny_config("unused", "unused", objective=objective, lambda_identity=0.0)
    model = CycleGAN(config.networks, config.options, config.train)
    disc_before = [p.clone() for p in model.disc_a.parameters()]
    losses = model.training_step(torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1)
    assert set(losses) == expected
    disc_changed = any(not torch.equal(a, b) for a, b in zip(disc_before, model.disc_a.parameters(), strict=True))
    assert disc_changed == (objective != "cycle_only")


def test_wgan_gp_applies_its_penalty():
    config = tiny_config("unused", "unused", gan_mode="wgangp")
    model = CycleGAN(config.networks, config.options, config.train)
    losses = model.training_step(torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert losses["gp_a"] > 0 and losses["gp_b"] > 0


def test_vanilla_gan_and_batch_norm_unet_train(tmp_path, dataroot):
    config = tiny_config(tmp_path / "run", dataroot, gan_mode="vanilla", gen_arch="unet_128", norm="batch",
                         load_size=128, crop_size=128, dropout=True, n_epochs=1, n_epochs_decay=0)
    result = train(config, show_progress=False)
    assert result.steps_done == 4


def test_sigterm_saves_and_exits_cleanly_then_resume_finishes(tmp_path, dataroot):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "cyclegan", "train", "--quiet", "--dataroot", str(dataroot),
               "--run-dir", str(run), "--gen-arch", "resnet_6blocks", "--ngf", "4", "--ndf", "4",
               "--load-size", "36", "--crop-size", "32", "--num-workers", "1", "--n-epochs", "500",
               "--n-epochs-decay", "0", "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run / "log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 6):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "resume with" in stdout
    state = _final_state(run)
    steps = state["progress"]["step"]
    assert 6 <= steps < 2000
    assert len(log.read_text().splitlines()) == steps
    resumed = subprocess.run([sys.executable, "-m", "cyclegan", "train", "--quiet", "--resume", "--run-dir",
                              str(run), "--max-steps", "2"], capture_output=True, text=True, timeout=120,
                             env={**os.environ})
    assert resumed.returncode == 0, resumed.stderr
    assert _final_state(run)["progress"]["step"] == steps + 2


def test_grayscale_domain_trains_and_translates(tmp_path):
    from PIL import Image

    from cyclegan.translate import Translator

    from .helpers import write_images

    root = tmp_path / "data"
    write_images(root / "trainA", 3, mode="L")
    write_images(root / "trainB", 2, seed=5)
    config = tiny_config(tmp_path / "run", root, channels_a=1, lambda_identity=0.0, n_epochs=1, n_epochs_decay=0,
                         num_samples=0)
    assert train(config, show_progress=False).steps_done == 3
    translator = Translator.load(tmp_path / "run", device="cpu")
    assert translator(Image.new("L", (20, 12))).mode == "RGB"
    assert translator(Image.new("RGB", (20, 12)), direction="BtoA").mode == "L"


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_track_float32_and_resume_exactly(tmp_path, dataroot, precision):
    """Mixed precision (autocast; fp16 with a gradient scaler) runs on the CPU too: a step from the same weights
    gives losses near float32's, the networks run their plain module path (autocast picks each layer's
    precision), and a run stopped mid-way resumes to the same weights and scaler state as an uninterrupted one."""
    real_a, real_b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    losses, faster_layers = {}, {}
    for kind in ("float32", precision):
        torch.manual_seed(0)
        config = tiny_config(tmp_path / "unused", dataroot, precision=kind)
        model = CycleGAN(config.networks, config.options, config.train)
        faster_layers[kind] = len(speed_layers(model))
        losses[kind] = model.training_step(real_a, real_b)
    assert faster_layers[precision] == 0 < faster_layers["float32"]
    for name, value in losses["float32"].items():
        assert losses[precision][name] == pytest.approx(value, rel=0.05), name
    assert ("grad_scaler" in model.training_state()) == (precision == "fp16")

    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    train(tiny_config(straight, dataroot, precision=precision), show_progress=False)
    train(tiny_config(pieces, dataroot, precision=precision), show_progress=False, max_steps=5)
    train(tiny_config(pieces, dataroot, precision=precision), resume=True, show_progress=False)
    _assert_same_tensors(_final_state(straight), _final_state(pieces))
    assert _losses(straight) == _losses(pieces)
    if precision == "fp16":
        scaler = _final_state(pieces)["training"]["grad_scaler"]
        assert scaler == _final_state(straight)["training"]["grad_scaler"] and scaler["scale"] < 2.0**16


def test_cudnn_autotuner_is_set_on_cuda_only():
    before = torch.backends.cudnn.benchmark
    try:
        assert configure_cudnn(torch.device("cuda"), True) is True
        assert configure_cudnn(torch.device("cuda"), False) is False
        torch.backends.cudnn.benchmark = True
        assert configure_cudnn(torch.device("cpu"), False) is True  # the CPU leaves cuDNN alone
    finally:
        torch.backends.cudnn.benchmark = before
