"""The BiGAN/ALI baseline (models/bigan.py): its step's terms, its pair discriminator, and training, resume,
translation and evaluation through the CLI."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.cli.main import main
from cyclegan.config import config_from_layers
from cyclegan.io.checkpoints import load_checkpoint
from cyclegan.models.bigan import BiGAN, BiGANOptions
from cyclegan.models.pix2pix import build_conditional_discriminator
from cyclegan.training.loop import train

from .helpers import tiny_dataset
from .test_training import _assert_same_tensors, _final_state, _losses

TINY = {"gen_arch": "resnet_6blocks", "ngf": 4, "ndf": 4, "load_size": 36, "crop_size": 32, "num_workers": 0,
        "n_epochs": 1, "n_epochs_decay": 2, "device": "cpu", "deterministic": True, "num_samples": 2,
        "save_every": 2}
# The CLI flags of TINY, for one epoch at each learning rate.
TINY_FLAGS = ["--gen-arch", "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
              "--num-workers", "0", "--n-epochs", "1", "--n-epochs-decay", "1", "--device", "cpu", "--deterministic",
              "--num-samples", "2", "--quiet"]
TERMS = {"gan_ab", "gan_ba", "disc"}


def _config(run_dir="unused", dataroot="unused", **overrides):
    return config_from_layers({"model": "bigan", "run_dir": str(run_dir), "dataroot": str(dataroot), **TINY,
                               **overrides})


def _images(seed, channels=3, batch=2, size=32):
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _float64_scores(model, real_a, real_b):
    """D(x, G(x)) and D(F(y), y) of `model`'s weights, computed apart from the model: plain networks (none of the
    model's faster layers, no batching of the two pairs) in float64."""
    networks = model.architecture
    plain = {**BiGAN.generators_for(networks), "disc": build_conditional_discriminator(networks)}
    for name, net in plain.items():
        net.load_state_dict(model.network_state()[name])
        net.double()
    x, y = real_a.double(), real_b.double()
    with torch.no_grad():
        return (plain["disc"](torch.cat((x, plain["gen_ab"](x)), 1)),
                plain["disc"](torch.cat((plain["gen_ba"](y), y), 1)))


# float32 against float64: each layer's dot products (at most 4 * 4 * 32 = 512 terms here) round with unit
# roundoff 2**-24 ~ 6e-8, whose errors add like a random walk, ~sqrt(512) * 6e-8 ~ 1.4e-6 relative per layer; about
# 20 layers give ~3e-5. 2e-4 leaves a margin on any CPU's summation order; a wrong label or a missing halving is off
# by far more.
REL = 2e-4


@pytest.mark.parametrize("gan_mode", ["lsgan", "vanilla", "wgangp"])
def test_step_terms_are_the_swapped_label_losses_of_the_pairs_before_the_update(gan_mode):
    model = BiGAN(**_model_args(gan_mode=gan_mode, pool_size=0))
    real_a, real_b = _images(1), _images(2)
    ab, ba = _float64_scores(model, real_a, real_b)  # instance norm, no dropout: what the step's forward sees
    terms = model.training_step(real_a, real_b)
    sigmoid = torch.sigmoid
    if gan_mode == "lsgan":  # G: D(x, G(x)) ~ 0, F: D(F(y), y) ~ 1; D the other way round, halved
        expected = {"gan_ab": (ab ** 2).mean(), "gan_ba": ((ba - 1) ** 2).mean(),
                    "disc": 0.5 * (((ab - 1) ** 2).mean() + (ba ** 2).mean())}
    elif gan_mode == "vanilla":  # -log(1 - D) for G, -log D for F; D: -log D(x, G(x)) - log(1 - D(F(y), y)), halved
        expected = {"gan_ab": -torch.log(1 - sigmoid(ab)).mean(), "gan_ba": -torch.log(sigmoid(ba)).mean(),
                    "disc": 0.5 * (-torch.log(sigmoid(ab)).mean() - torch.log(1 - sigmoid(ba)).mean())}
    else:  # Wasserstein: G wants a low critic value for its pair, F a high one; the critic the opposite
        expected = {"gan_ab": ab.mean(), "gan_ba": -ba.mean(), "disc": ba.mean() - ab.mean()}
    assert set(terms) == set(expected) | ({"gp"} if gan_mode == "wgangp" else set())
    for name, value in expected.items():
        assert terms[name] == pytest.approx(value.item(), rel=REL, abs=1e-6), name
    if gan_mode == "wgangp":
        assert np.isfinite(terms["gp"]) and terms["gp"] >= 0


def _model_args(**overrides):
    config = _config(**overrides)
    return {"networks": config.networks, "options": config.options, "train": config.train}


def test_one_discriminator_sees_both_images_and_every_network_learns():
    model = BiGAN(**_model_args())
    assert set(model.network_state()) == {"gen_ab", "gen_ba", "disc"}
    assert model.disc.model[0].in_channels == 6  # cat(a, b)
    assert model.options == BiGANOptions() and model.options.gan_mode == "lsgan"
    before = {name: [p.clone() for p in net.parameters()] for name, net in model.networks().items()}
    model.training_step(_images(1), _images(2))
    for name, net in model.networks().items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters(), strict=True)), name
    assert all(p.requires_grad for p in model.disc.parameters())  # thawed again for the next step
    gray = BiGAN(**_model_args(channels_a=1))  # no term compares the domains: their channels may differ
    assert gray.disc.model[0].in_channels == 4
    assert gray.gen_ab.model[1].in_channels == 1
    assert set(gray.training_step(_images(1, channels=1), _images(2))) == TERMS


def test_stop_and_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    root = tiny_dataset(tmp_path / "data", count_a=4, count_b=3)
    pooled = {"pool_size": 2}  # also checks that both pools of pairs are resumed
    straight = tmp_path / "straight"
    done = train(_config(straight, root, **pooled), show_progress=False)
    assert done.steps_done == 12  # 4 A images a epoch (the larger domain), 3 epochs
    pieces = tmp_path / "pieces"
    first = train(_config(pieces, root, **pooled), show_progress=False, max_steps=5)
    assert first.stopped_early and first.steps_done == 5  # in the middle of the second epoch
    second = train(_config(pieces, root, **pooled), resume=True, show_progress=False)
    assert not second.stopped_early and second.steps_done == 12
    _assert_same_tensors(_final_state(straight), _final_state(pieces))
    assert _losses(straight) == _losses(pieces)
    assert all(set(losses) == TERMS for _, losses in _losses(straight))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A BiGAN run trained through `cyclegan train` on tiny unpaired folders: (data root, run folder, its output)."""
    root = tmp_path_factory.mktemp("bigan")
    data, run = tiny_dataset(root / "data"), root / "run"
    code = main(["train", "--model", "bigan", "--dataroot", str(data), "--run-dir", str(run), *TINY_FLAGS])
    return data, run, code


def test_cli_trains_bigan(trained, capsys):
    data, run, code = trained
    assert code == 0
    saved, state = load_checkpoint(run / "checkpoints" / "latest.safetensors")
    assert saved.model == "bigan" and set(state["nets"]) == {"gen_ab", "gen_ba", "disc"}
    assert state["nets"]["disc"]["model.0.weight"].shape[1] == 6
    assert saved.options == BiGANOptions() and saved.train.pool_size == 50
    assert [step for step, _ in _losses(run)] == list(range(1, 9))  # 4 A images, 2 epochs
    assert all(set(losses) == TERMS for _, losses in _losses(run))
    assert "model: bigan" in (run / "config.yaml").read_text()
    with Image.open(run / "samples" / "epoch_0002.png") as grid:  # four columns: real A, G(A), real B, F(B)
        with Image.open(run / "samples" / "epoch_0001.png") as first:
            assert grid.size == first.size and grid.width < 5 * 128


@pytest.mark.parametrize("direction,source,target", [("AtoB", "testA", "testB"), ("BtoA", "testB", "testA")])
def test_cli_translates_both_ways_and_evaluates_the_translations(trained, tmp_path, direction, source, target):
    data, run, code = trained
    assert code == 0
    out = tmp_path / "out"
    assert main(["translate", str(run), str(data / source), "--out", str(out), "--direction", direction,
                 "--device", "cpu", "--quiet"]) == 0
    translated = sorted(p.name for p in out.glob("*.png"))
    assert translated == sorted(p.name for p in (data / source).iterdir())
    with Image.open(out / translated[0]) as image, Image.open(data / source / translated[0]) as original:
        assert image.size == original.size
    scores = tmp_path / "scores.json"
    assert main(["eval", str(out), "--real", str(data / target), "--metrics", "paired", "--out", str(scores),
                 "--quiet"]) == 0
    paired = json.loads(scores.read_text())["paired"]
    assert paired["count"] == 2 and 0 < paired["l1"] <= 2  # unpaired random images: never equal to the truth


def test_official_export_is_refused_by_name_and_safetensors_translates_like_the_run(trained, tmp_path, capsys):
    data, run, code = trained
    assert code == 0
    assert main(["export", str(run), "--format", "official", "--out", str(tmp_path / "official")]) == 2
    assert "model 'bigan' has no official file name for disc, gen_ab, gen_ba" in capsys.readouterr().err
    assert main(["export", str(run), "--out", str(tmp_path / "file")]) == 0
    out = {}
    for name, model in (("run", run), ("file", tmp_path / "file" / "model.safetensors")):
        out[name] = tmp_path / f"from_{name}"
        assert main(["translate", str(model), str(data / "testB"), "--direction", "BtoA", "--out", str(out[name]),
                     "--device", "cpu", "--quiet"]) == 0
    translated = sorted(out["run"].glob("*.png"))
    assert len(translated) == 2
    for path in translated:
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(out["file"] / path.name)))
