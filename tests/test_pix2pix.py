"""pix2pix (models/pix2pix.py) through config, step, loop, resume, CLI and translation; and the SimGAN baseline."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.cli.main import main
from cyclegan.config import Config, ConfigError, apply_overrides, config_from_layers, model_defaults
from cyclegan.io.checkpoints import load_checkpoint
from cyclegan.models import CycleGAN, Pix2Pix, build_model
from cyclegan.training.loop import train
from cyclegan.translate import Translator

from .helpers import tiny_config, tiny_dataset, write_images
from .test_training import _assert_same_tensors, _final_state, _losses

TINY = {"gen_arch": "resnet_6blocks", "ngf": 4, "ndf": 4, "load_size": 36, "crop_size": 32, "num_workers": 0,
        "n_epochs": 1, "n_epochs_decay": 2, "device": "cpu", "deterministic": True, "num_samples": 2,
        "save_every": 2}


def _config(run_dir, dataroot, **overrides):
    return config_from_layers({"model": "pix2pix", "run_dir": str(run_dir), "dataroot": str(dataroot), **TINY,
                               **overrides})


def _images(batch=1, channels=3, size=32):
    return torch.rand(batch, channels, size, size) * 2 - 1


@pytest.fixture
def paired_root(tmp_path):
    return tiny_dataset(tmp_path / "data", count_a=4, count_b=4)  # trainA/trainB share names 000..003


def test_model_defaults_apply_under_the_file_and_flags():
    config = config_from_layers({"model": {"model": "pix2pix"}}, {"norm": "instance"})
    assert (config.networks.gen_arch, config.options.gan_mode, config.networks.dropout) == ("unet_256", "vanilla", True)
    assert config.networks.norm == "instance"  # what the person sets wins over the model's default
    assert (config.train.pool_size, config.options.lambda_l1) == (0, 100.0)
    with pytest.raises(ConfigError, match="lambda_identity is an option of cyclegan, not of model 'pix2pix'"):
        config_from_layers({"model": "pix2pix", "lambda_identity": 0.5})  # pix2pix has no identity loss
    assert config_from_layers({"model": "pix2pix"}, {"model": "cyclegan"}).networks.gen_arch == "resnet_9blocks"
    assert model_defaults("cyclegan") == {}
    with pytest.raises(ConfigError, match="model='nope'"):
        model_defaults("nope")
    with pytest.raises(ConfigError, match="objective is an option of cyclegan, not of model 'pix2pix'"):
        config_from_layers({"model": "pix2pix", "objective": "gan_only"})
    config_from_layers({"model": "pix2pix", "channels_a": 1})  # no identity term, so the channels may differ


def test_step_reports_its_terms_and_the_conditional_discriminator_sees_both_images():
    config = _config("unused", "unused")
    model = Pix2Pix(config.networks, config.options, config.train)
    assert set(model.network_state()) == {"gen_ab", "disc_b"}
    assert model.disc_b.model[0].in_channels == 6  # cat(a, b)
    disc_before = [p.clone() for p in model.disc_b.parameters()]
    losses = model.training_step(_images(), _images())
    assert set(losses) == {"gan", "l1", "disc"}
    assert all(np.isfinite(value) for value in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, model.disc_b.parameters(), strict=True))
    gray_config = _config("unused", "unused", channels_a=1)
    gray = Pix2Pix(gray_config.networks, gray_config.options, gray_config.train)
    assert gray.disc_b.model[0].in_channels == 4
    assert set(gray.training_step(_images(channels=1), _images())) == {"gan", "l1", "disc"}


def test_l1_weight_scales_only_the_l1_term():
    real_a, real_b = _images(), _images()
    results = {}
    for weight in (1.0, 100.0):
        config = _config("unused", "unused", lambda_l1=weight)
        torch.manual_seed(3)
        model = Pix2Pix(config.networks, config.options, config.train)
        torch.manual_seed(4)  # the same dropout masks in both
        results[weight] = model.training_step(real_a, real_b)
    assert results[100.0]["l1"] == pytest.approx(100 * results[1.0]["l1"], rel=1e-5)
    assert results[100.0]["gan"] == pytest.approx(results[1.0]["gan"], rel=1e-5)
    assert results[100.0]["disc"] == pytest.approx(results[1.0]["disc"], rel=1e-5)


def test_simgan_objective_trains_only_its_terms():
    config = tiny_config("unused", "unused", objective="simgan", lambda_identity=0.0, lambda_self_reg=7.0)
    model = CycleGAN(config.networks, config.options, config.train)
    real_a, real_b = _images(), _images()
    with torch.no_grad():  # instance norm, no dropout: G(a) before the step is what the step's loss sees
        expected_a = 7.0 * (model.gen_ab(real_a) - real_a).abs().mean().item()
        expected_b = 7.0 * (model.gen_ba(real_b) - real_b).abs().mean().item()
    disc_before = [p.clone() for p in model.disc_a.parameters()]
    losses = model.training_step(real_a, real_b)
    assert set(losses) == {"gan_ab", "gan_ba", "self_reg_a", "self_reg_b", "disc_a", "disc_b"}
    assert losses["self_reg_a"] == pytest.approx(expected_a, rel=1e-5)
    assert losses["self_reg_b"] == pytest.approx(expected_b, rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, model.disc_a.parameters(), strict=True))
    with pytest.raises(ConfigError, match="simgan"):
        apply_overrides(Config(), {"objective": "simgan", "channels_a": 1, "lambda_identity": 0.0})


def test_run_on_side_by_side_images_holds_config_log_checkpoints_and_samples(tmp_path):
    root = tmp_path / "facades"
    for phase, count in (("train", 4), ("test", 2)):  # the official pix2pix layout: A|B in one file
        write_images(root / phase, count, size=40, seed=len(phase))
        for path in (root / phase).iterdir():
            Image.open(path).resize((80, 40)).save(path)
    result = train(_config(tmp_path / "run", root, batch_size=2), show_progress=False)
    run = tmp_path / "run"
    assert (result.epochs_done, result.steps_done) == (3, 6)
    assert all(set(losses) == {"gan", "l1", "disc"} for _, losses in _losses(run))
    saved, state = load_checkpoint(run / "checkpoints" / "latest.safetensors")
    assert saved.model == "pix2pix" and set(state["nets"]) == {"gen_ab", "disc_b"}
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png",
                                                                   "epoch_0003.png"]
    assert Image.open(run / "samples" / "epoch_0001.png").width < 128 * 4  # three columns: real A, G(A), real B
    assert "model: pix2pix" in (run / "config.yaml").read_text()


def test_stop_and_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, paired_root):
    pooled = {"pool_size": 2}  # also checks the pool of generated pairs is resumed
    straight = tmp_path / "straight"
    train(_config(straight, paired_root, **pooled), show_progress=False)
    pieces = tmp_path / "pieces"
    first = train(_config(pieces, paired_root, **pooled), show_progress=False, max_steps=3)
    assert first.stopped_early and first.steps_done == 3
    train(_config(pieces, paired_root, **pooled), resume=True, show_progress=False, max_steps=3)
    third = train(_config(pieces, paired_root, **pooled), resume=True, show_progress=False)
    assert not third.stopped_early and third.steps_done == 12
    _assert_same_tensors(_final_state(straight), _final_state(pieces))
    assert _losses(straight) == _losses(pieces)


def test_cli_trains_pix2pix_on_the_builtin_paired_data_then_translates_a_to_b(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "pix2pix", "--run-dir", str(run), "--builtin-size", "32",
                 "--builtin-count", "2", "--ngf", "4", "--ndf", "4", "--load-size", "256", "--crop-size", "256",
                 "--n-epochs", "1", "--n-epochs-decay", "0", "--num-workers", "0", "--device", "cpu",
                 "--num-samples", "1", "--quiet"]) == 0
    assert "finished after 1 epoch(s), 2 step(s)" in capsys.readouterr().out
    saved = load_checkpoint(run / "checkpoints" / "latest.safetensors")[0]
    assert (saved.networks.gen_arch, saved.networks.norm, saved.options.gan_mode) == ("unet_256", "batch", "vanilla")
    data = next((run / "data").iterdir())
    assert data.name.endswith("_paired") and json.loads((data / "builtin.json").read_text())["paired"]
    assert sorted(p.name for p in (data / "trainA").iterdir()) == sorted(p.name for p in (data / "trainB").iterdir())

    translator = Translator.load(run, device="cpu")
    assert set(translator.generators) == {"AtoB"}
    label = Image.open(next((data / "testA").iterdir()))
    assert translator(label).size == label.size
    with pytest.raises(ValueError, match="no BtoA generator"):
        translator(label, direction="BtoA")
    out = tmp_path / "out"
    assert main(["translate", str(run), str(data / "testA"), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert len(list(out.glob("*.png"))) == 8


def test_build_model_picks_the_class_the_config_names():
    config = _config("unused", "unused")
    assert isinstance(build_model(config), Pix2Pix)
    cyclegan_config = tiny_config("unused", "unused")
    assert isinstance(build_model(cyclegan_config), CycleGAN)
