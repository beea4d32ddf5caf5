"""CoGAN (models/cogan.py, nets/cogan.py): config, weight sharing, one step's exact terms, the latent search,
translation, a CLI run, exact resume, translate / eval / export through the CLI."""

import copy
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cyclegan.cli.main import main
from cyclegan.config import ConfigError, config_from_layers
from cyclegan.engines import engines_for
from cyclegan.generators import build_generators
from cyclegan.io.checkpoints import load_networks, save_checkpoint
from cyclegan.models import build_model
from cyclegan.models.cogan import CoGAN
from cyclegan.nets import cogan as cogan_nets
from cyclegan.nets.cogan import CoupledGenerator, LatentSearch, reconstruction_error
from cyclegan.training.loop import train
from cyclegan.translate import TranslationError, Translator

from .helpers import tiny_dataset, with_random_statistics
from .test_training import _assert_same_tensors, _final_state, _losses

TINY = {"model": "cogan", "gen_arch": "dcgan_32", "ngf": 4, "ndf": 4, "load_size": 36, "crop_size": 32,
        "num_workers": 0, "n_epochs": 1, "n_epochs_decay": 2, "device": "cpu", "deterministic": True,
        "num_samples": 2, "save_every": 2}


def _config(run_dir="unused", dataroot="unused", **overrides):
    return config_from_layers({"run_dir": str(run_dir), "dataroot": str(dataroot), **TINY, **overrides})


def _images(batch=2, channels=3, size=32, seed=0):
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture
def few_search_steps(monkeypatch):
    monkeypatch.setattr(cogan_nets, "SEARCH_STEPS", 3)  # the search's cost, not its quality, is what these need


def test_defaults_and_the_generator_kind_and_size_are_checked():
    config = config_from_layers({"model": "cogan"})
    assert (config.networks.gen_arch, config.networks.norm, config.train.pool_size) == ("dcgan_64", "batch", 0)
    assert (config.data.crop_size, config.options.gan_mode) == (64, "vanilla")
    with pytest.raises(ConfigError, match="gen_arch=dcgan_32 draws images from a latent code .* model 'cyclegan'"):
        config_from_layers({"gen_arch": "dcgan_32", "crop_size": 32, "load_size": 36})
    with pytest.raises(ConfigError, match="model 'pix2pix' translates images"):
        config_from_layers({"model": "pix2pix", "gen_arch": "dcgan_64", "crop_size": 64, "load_size": 72})
    with pytest.raises(ConfigError, match="gen_arch=resnet_6blocks is an image-to-image generator; use one of "
                                          "dcgan_32, dcgan_64, dcgan_128"):
        _config(gen_arch="resnet_6blocks")
    with pytest.raises(ConfigError, match="crop_size=64, but gen_arch=dcgan_32 makes 32x32 images; use crop_size=32"):
        _config(crop_size=64, load_size=72)
    with pytest.raises(ConfigError, match="preprocess=none keeps the files' sizes"):
        _config(preprocess="none")
    with pytest.raises(ConfigError, match="disc_arch=pixel"):
        _config(disc_arch="pixel")
    with pytest.raises(ConfigError, match="no dropout"):
        _config(dropout=True)
    assert _config(gen_arch="dcgan_128", crop_size=128, load_size=143).networks.gen_arch == "dcgan_128"


def test_the_generators_share_their_first_layers_and_the_discriminators_their_last():
    model = CoGAN(*_networks_options_train())
    generator = model.gen_ab.generator
    assert model.gen_ba.generator is generator  # both translators hold the one coupled generator
    assert model.disc_a.trunk is model.disc_b.trunk and model.disc_a.first is not model.disc_b.first
    shared = {id(p) for p in generator.trunk.parameters()}
    assert shared and shared.isdisjoint(id(p) for p in generator.heads.parameters())
    assert generator.heads["a"][0].weight is not generator.heads["b"][0].weight
    # A step on domain A's images alone moves the weights domain B's images are made from.
    z = torch.randn(2, cogan_nets.LATENT_SIZE, generator=torch.Generator().manual_seed(1))
    generator.eval()
    with torch.no_grad():
        before_b = generator.render(z, "b")
    head_b = [p.clone() for p in generator.heads["b"].parameters()]
    optimizer = torch.optim.SGD(generator.parameters(), lr=1.0)
    generator.render(z, "a").square().mean().backward()
    assert all(p.grad is None for p in generator.heads["b"].parameters())
    optimizer.step()
    with torch.no_grad():
        assert not torch.allclose(generator.render(z, "b"), before_b)
    assert all(torch.equal(a, b) for a, b in zip(head_b, generator.heads["b"].parameters(), strict=True))
    # And a step of D_A alone changes D_B's scores, through the trunk.
    images = _images()
    with torch.no_grad():
        scores_b = model.disc_b(images)
    model.disc_a(images).mean().backward()
    torch.optim.SGD(model.disc_a.parameters(), lr=1.0).step()
    with torch.no_grad():
        assert not torch.allclose(model.disc_b(images), scores_b)


def _networks_options_train(**overrides):
    config = _config(**overrides)
    return config.networks, config.options, config.train


def test_one_step_reports_its_terms_with_exact_values():
    """The step's terms against the vanilla GAN loss written out here, -log sigmoid(s) = softplus(-s): D on real a
    and on G_A(z) of the latents the step draws (batch norm: one call each), then G against the updated D."""
    torch.manual_seed(0)
    model = CoGAN(*_networks_options_train())
    real_a, real_b = _images(seed=1), _images(seed=2)
    before = copy.deepcopy(model)
    torch.manual_seed(5)
    z = torch.randn(2, cogan_nets.LATENT_SIZE)  # what the step draws from the same global state
    with torch.no_grad():
        fake_a, fake_b = before.generator(z)
        expected = {f"disc_{domain}": 0.5 * (F.softplus(-disc(real)).mean() + F.softplus(disc(fake)).mean())
                    for domain, disc, real, fake in (("a", before.disc_a, real_a, fake_a),
                                                     ("b", before.disc_b, real_b, fake_b))}
    torch.manual_seed(5)
    terms = model.training_step(real_a, real_b)
    assert set(terms) == {"gan_a", "gan_b", "disc_a", "disc_b"}
    after = copy.deepcopy(model)  # D as G's update saw it; its own calls here must not touch the model's
    with torch.no_grad():
        expected["gan_a"] = F.softplus(-after.disc_a(fake_a)).mean()
        expected["gan_b"] = F.softplus(-after.disc_b(fake_b)).mean()
    # The same float32 operations on the same values: agreement far below float32's 1e-7 relative step times the
    # few dozen roundings of a mean over a handful of scores.
    for name, value in expected.items():
        assert terms[name] == pytest.approx(value.item(), rel=1e-5, abs=1e-7), name


def _fixed_generator():
    """A coupled generator with seeded weights and random batch-norm statistics (eval mode), so that its images
    vary with z: PyTorch's default initialisation, not the N(0, 0.02) of training, which makes nearly flat images."""
    torch.manual_seed(3)
    return with_random_statistics(CoupledGenerator(32, 3, 1, ngf=8, norm="batch"), seed=4)


def test_the_latent_search_recovers_a_latent_whose_image_is_the_input():
    """For x = G_A(z*), 100 search steps halve at least the L1 distance at the seeded start; and G_B of the found
    latent is closer to G_B(z*) by the same margin. A search that does nothing (ratio 1) or loses its way fails;
    one that descends ends far below half (the L1 at z* itself is 0, so a better latent exists), and 0.5 leaves
    room for other CPUs' rounding to take the descent along a slightly different path."""
    generator = _fixed_generator()
    z_star = torch.randn(2, cogan_nets.LATENT_SIZE, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        x, y = generator.render(z_star, "a"), generator.render(z_star, "b")
    search = LatentSearch(generator, "a", "b", steps=100)
    start = search.start(2, x.device)
    assert torch.equal(start[0], start[1])  # one seeded start for every image
    found = search.search(x)
    with torch.no_grad():
        at_start = reconstruction_error(generator.render(start, "a"), x)
        at_end = reconstruction_error(generator.render(found, "a"), x)
        assert (reconstruction_error(generator.render(z_star, "a"), x) == 0).all()
        assert (at_end < 0.5 * at_start).all(), (at_end, at_start)
        translated = search(x)
        assert translated.shape == (2, 1, 32, 32)
        assert (reconstruction_error(translated, y) < 0.5 * reconstruction_error(generator.render(start, "b"), y)).all()


def test_reconstruction_error_is_the_mean_absolute_difference_per_image():
    rendered = torch.tensor([[[[1.0, -1.0]]], [[[0.5, 0.5]]]])
    target = torch.tensor([[[[0.0, 0.0]]], [[[0.5, -0.5]]]])
    assert reconstruction_error(rendered, target).tolist() == [1.0, 0.5]  # (1 + 1) / 2 and (0 + 1) / 2


def test_translation_is_deterministic_any_size_and_leaves_the_weights_alone():
    generator = _fixed_generator().train()  # the search must switch batch norm to its running statistics itself
    state = copy.deepcopy(generator.state_dict())
    search = LatentSearch(generator, "b", "a", steps=5)
    images = _images(batch=1, channels=1, size=20, seed=9)  # resized to 32 and back
    with torch.inference_mode():  # as the Translator calls it
        first = search(images)
    with torch.no_grad():
        second = search(images.clone())
    assert first.shape == (1, 3, 20, 20) and torch.equal(first, second)
    assert generator.training and all(p.grad is None for p in generator.parameters())
    _assert_same_tensors(state, generator.state_dict())
    assert not torch.equal(first, LatentSearch(generator, "b", "a", steps=6)(images).detach())  # the steps count


def test_cli_trains_then_translates_evaluates_and_refuses_onnx(tmp_path, capsys, few_search_steps):
    data, run = tiny_dataset(tmp_path / "data"), tmp_path / "run"
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in TINY.items() if name != "deterministic"]
    assert main(["train", *flags, "--run-dir", str(run), "--dataroot", str(data), "--n-epochs-decay", "0",
                 "--quiet"]) == 0
    assert "finished after 1 epoch(s), 4 step(s)" in capsys.readouterr().out
    assert all(set(losses) == {"gan_a", "gan_b", "disc_a", "disc_b"} for _, losses in _losses(run))
    assert Image.open(run / "samples" / "epoch_0001.png").width > 5 * 128  # six columns
    # The checkpoint holds the coupled generator under the names the translators give it, once per direction.
    model, networks, state = load_networks(run / "checkpoints" / "latest.safetensors")
    built = build_generators(model, networks)
    for name in ("gen_ab", "gen_ba"):
        assert set(state["nets"][name]) == set(built[name].state_dict())
    _assert_same_tensors(state["nets"]["gen_ab"], state["nets"]["gen_ba"])
    translator = Translator.load(run, device="cpu")
    assert translator.engine == "torch"  # auto: a latent search has no graph for onnxruntime
    assert translator.networks["AtoB"].generator is translator.networks["BtoA"].generator

    out = tmp_path / "out"
    assert main(["translate", str(run), str(data / "testA"), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    outputs = sorted(out.glob("*.png"))
    assert [p.name for p in outputs] == ["000.png", "001.png"] and Image.open(outputs[0]).size == (40, 40)
    assert main(["eval", str(out), "--real", str(data / "testB"), "--metrics", "l1,psnr", "--quiet"]) == 0
    scores = json.loads((out / "metrics.json").read_text())
    assert 0 < scores["paired"]["l1"] < 2
    capsys.readouterr()
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "onnx")]) == 2
    assert "an optimisation per image" in capsys.readouterr().err and not (tmp_path / "onnx").exists()
    with pytest.raises(TranslationError, match="optimisation per image; translate without --tile"):
        translator(Image.open(data / "testA" / "000.png"), tile=8)
    with pytest.raises(ConfigError, match="an optimisation per image, which no graph holds; use --engine torch"):
        engines_for(translator.networks, networks, "onnxruntime")  # what an explicit --engine onnxruntime reaches


def test_stop_and_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, few_search_steps):
    data = tiny_dataset(tmp_path / "data")
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    train(_config(straight, data), show_progress=False)
    first = train(_config(pieces, data), show_progress=False, max_steps=3)
    assert first.stopped_early and first.steps_done == 3
    train(_config(pieces, data), resume=True, show_progress=False, max_steps=3)
    third = train(_config(pieces, data), resume=True, show_progress=False)
    assert not third.stopped_early and third.steps_done == 12
    _assert_same_tensors(_final_state(straight), _final_state(pieces))
    assert _losses(straight) == _losses(pieces)


def test_loading_a_cogan_to_translate_imports_no_training_code(tmp_path):
    config = _config()
    model = tmp_path / "model.safetensors"
    save_checkpoint(model, config, {"nets": {name: net.state_dict()
                                             for name, net in build_model(config).plain_networks().items()}})
    script = (f"import sys, cyclegan; cyclegan.load({str(model)!r}, device='cpu'); "
              "print(' '.join(sorted(name for name in sys.modules if name.startswith('cyclegan'))))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert "cyclegan.nets.cogan" in loaded
    assert [name for name in loaded if name.startswith(("cyclegan.training", "cyclegan.models", "cyclegan.losses",
                                                        "cyclegan.data", "cyclegan.metrics"))] == []
