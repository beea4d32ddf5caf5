"""Feature loss + GAN (models/feature_gan.py): the VGG-16 weights' resolution and download (io/vgg_weights.py)
against a local server, the network against torchvision's, the step's terms and gradients, and the model through
training, exact resume, translation and evaluation on the command line.

The weights are a seeded stand-in with torchvision's `features.*` names and shapes (all 13 convolutions, ~59 MB;
the real file's classifier is left out), served under a name that carries its own SHA-256 prefix."""

import hashlib
import io
import json
import math
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.transforms.functional import normalize

from cyclegan.cli.main import main
from cyclegan.config import config_from_layers
from cyclegan.io.checkpoints import CheckpointError, load_checkpoint
from cyclegan.io.download import DownloadError
from cyclegan.io.vgg_weights import load_vgg16_features, resolve_vgg16_weights
from cyclegan.models import build_model
from cyclegan.models.feature_gan import FeatureGAN

from .helpers import tiny_dataset
from .test_download import FixtureServer
from .test_training import _assert_same_tensors, _final_state, _losses

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
TINY = {"gen_arch": "resnet_6blocks", "ngf": 4, "ndf": 4, "load_size": 36, "crop_size": 32, "num_workers": 0,
        "n_epochs": 1, "n_epochs_decay": 1, "device": "cpu", "deterministic": True, "num_samples": 1,
        "pool_size": 2, "save_every": 1}
TINY_FLAGS = ["--gen-arch", "resnet_6blocks", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
              "--num-workers", "0", "--n-epochs", "1", "--n-epochs-decay", "1", "--device", "cpu",
              "--deterministic", "--num-samples", "1", "--pool-size", "2", "--quiet"]


@dataclass(frozen=True)
class StandIn:
    state: dict  # torchvision's features.* names -> seeded tensors
    data: bytes  # the file, as torch.save wrote it
    name: str  # vgg16-<first 8 hex digits of its SHA-256>.pth
    path: Path  # the file on disk


def _saved(state) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _named(data: bytes) -> str:
    return f"vgg16-{hashlib.sha256(data).hexdigest()[:8]}.pth"


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    with torch.device("meta"):  # torchvision's own names and shapes, nothing allocated
        shapes = {name: tensor.shape for name, tensor in torchvision.models.vgg16().state_dict().items()
                  if name.startswith("features.")}
    generator = torch.Generator().manual_seed(16)
    state = {}
    for name, shape in shapes.items():  # He-scaled, so that activations stay of order 1 through the layers
        scale = math.sqrt(2 / math.prod(shape[1:])) if name.endswith("weight") else 0.05
        state[name] = scale * torch.randn(shape, generator=generator)
    data = _saved(state)
    path = tmp_path_factory.mktemp("vgg") / _named(data)
    path.write_bytes(data)
    return StandIn(state, data, path.name, path)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLEGAN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CYCLEGAN_VGG16_WEIGHTS", raising=False)
    monkeypatch.delenv("CYCLEGAN_VGG16_URL", raising=False)
    return tmp_path / "cache"


@pytest.fixture
def server():
    fixture = FixtureServer()
    yield fixture
    fixture.close()


def closed_port_url(name: str) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/models/{name}"


def _cached(cache: Path) -> list[str]:
    return sorted(path.name for path in cache.rglob("*") if path.is_file())


def _torchvision_relu4_2(state, images):
    """The oracle: torchvision's VGG-16 with `state`, its features up to relu4_2 (features[20]), on images mapped
    from [-1, 1] to ImageNet's normalisation by torchvision's own function."""
    vgg = torchvision.models.vgg16()
    vgg.features.load_state_dict({name.removeprefix("features."): value for name, value in state.items()})
    with torch.no_grad():
        return vgg.features[:21].eval()(normalize((images + 1) / 2, IMAGENET_MEAN, IMAGENET_STD))


# --- the weights: download, cache, integrity, resolution order -----------------------------------------------------

def test_the_download_lands_in_the_cache_and_is_used_from_there(server, cache, standin, monkeypatch):
    server.files[f"/models/{standin.name}"] = standin.data
    monkeypatch.setenv("CYCLEGAN_VGG16_URL", f"{server.url}/models/{standin.name}")
    path = resolve_vgg16_weights(show_progress=False)
    assert path == cache / "vgg16" / standin.name and path.read_bytes() == standin.data
    assert resolve_vgg16_weights(show_progress=False) == path
    assert len(server.requests) == 1  # the second call found it in the cache
    assert _cached(cache) == [standin.name]  # no .part left behind


def test_a_download_whose_hash_is_not_the_one_its_name_promises_is_refused_and_removed(server, cache, standin,
                                                                                         monkeypatch):
    true_prefix = standin.name[len("vgg16-"):-len(".pth")]
    wrong = f"vgg16-{(int(true_prefix[0], 16) + 1) % 16:x}{true_prefix[1:]}.pth"
    server.files[f"/models/{wrong}"] = standin.data
    monkeypatch.setenv("CYCLEGAN_VGG16_URL", f"{server.url}/models/{wrong}")
    with pytest.raises(DownloadError, match=f"SHA-256 is {hashlib.sha256(standin.data).hexdigest()}, which does "
                                            f"not start with {wrong[6:14]}"):
        resolve_vgg16_weights(show_progress=False)
    assert _cached(cache) == []
    # The right hash of a file that is not VGG-16 (conv4_2 missing): refused by its tensors, removed too.
    partial = _saved({name: value for name, value in standin.state.items() if not name.startswith("features.19")})
    server.files[f"/models/{_named(partial)}"] = partial
    monkeypatch.setenv("CYCLEGAN_VGG16_URL", f"{server.url}/models/{_named(partial)}")
    with pytest.raises(DownloadError, match="not a VGG-16 state dict: it lacks features.19.weight"):
        resolve_vgg16_weights(show_progress=False)
    assert _cached(cache) == []
    # A name with no hash in it cannot be checked, so nothing is fetched.
    requests = len(server.requests)
    monkeypatch.setenv("CYCLEGAN_VGG16_URL", f"{server.url}/models/vgg16.pth")
    with pytest.raises(DownloadError, match="carries no SHA-256 prefix"):
        resolve_vgg16_weights(show_progress=False)
    assert len(server.requests) == requests


def test_a_path_the_variable_and_the_cache_come_before_the_download(server, cache, standin, tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLEGAN_VGG16_URL", f"{server.url}/models/{standin.name}")  # it would serve, if asked
    server.files[f"/models/{standin.name}"] = standin.data
    assert resolve_vgg16_weights(standin.path) == standin.path
    monkeypatch.setenv("CYCLEGAN_VGG16_WEIGHTS", str(standin.path))
    assert resolve_vgg16_weights() == standin.path
    monkeypatch.setenv("CYCLEGAN_VGG16_WEIGHTS", str(tmp_path / "elsewhere.pth"))
    assert resolve_vgg16_weights(standin.path) == standin.path  # the explicit path wins over the variable
    with pytest.raises(CheckpointError, match=r"elsewhere.pth \(from \$CYCLEGAN_VGG16_WEIGHTS\) does not exist"):
        resolve_vgg16_weights()
    with pytest.raises(CheckpointError, match="missing.pth does not exist"):
        resolve_vgg16_weights(tmp_path / "missing.pth")
    monkeypatch.delenv("CYCLEGAN_VGG16_WEIGHTS")
    cached = cache / "vgg16" / standin.name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(standin.data)
    assert resolve_vgg16_weights() == cached
    assert server.requests == []


def test_offline_without_weights_the_error_says_where_to_put_the_file(cache, monkeypatch):
    url = closed_port_url("vgg16-397923af.pth")
    monkeypatch.setenv("CYCLEGAN_VGG16_URL", url)
    with pytest.raises(DownloadError) as caught:
        resolve_vgg16_weights(show_progress=False)
    message = str(caught.value)
    assert f"could not reach {url}" in message and "--vgg-weights PATH" in message
    assert "CYCLEGAN_VGG16_WEIGHTS=PATH" in message and str(cache / "vgg16" / "vgg16-397923af.pth") in message
    assert _cached(cache) == []


def test_weights_that_are_not_vgg16s_are_refused_naming_the_file(standin, tmp_path):
    batch_norm = dict(standin.state, **{"features.19.weight": torch.zeros(512)})  # VGG-16-BN's layout differs
    path = tmp_path / "vgg16_bn.pth"
    torch.save(batch_norm, path)
    with pytest.raises(CheckpointError, match=r"vgg16_bn.pth is not a VGG-16 state dict: features.19.weight has "
                                              r"shape \(512,\), not \(512, 512, 3, 3\)"):
        load_vgg16_features(path)
    path.write_bytes(b"not a weights file")
    with pytest.raises(CheckpointError, match="vgg16_bn.pth is not a readable PyTorch weights file"):
        load_vgg16_features(path)


# --- the network -------------------------------------------------------------------------------------------------

def test_features_are_torchvisions_vgg16_through_relu4_2_on_imagenet_normalised_images(standin):
    net = load_vgg16_features(standin.path)
    kept = {name: value for name, value in standin.state.items() if int(name.split(".")[1]) <= 19}
    assert net.state_dict().keys() == kept.keys() and len(kept) == 18  # conv1_1 .. conv4_2: 9 weights, 9 biases
    _assert_same_tensors(net.state_dict(), kept)
    images = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        ours = net(images)
    assert ours.shape == (2, 512, 3, 4)  # three poolings: 1/8 the size
    # The same operations on the same tensors, so the very same numbers on any CPU.
    assert torch.equal(ours, _torchvision_relu4_2(standin.state, images))
    gray = images[:, :1]
    with torch.no_grad():
        assert torch.equal(net(gray), net(gray.expand(-1, 3, -1, -1)))  # grayscale is seen as RGB


def _model(standin, **overrides):
    config = config_from_layers({"model": "feature_gan", "run_dir": "unused", "dataroot": "unused", **TINY,
                                 "vgg_weights": str(standin.path), **overrides})
    return build_model(config)


def test_the_step_trains_gan_and_feature_terms_against_torchvisions_features(standin):
    model = _model(standin, lambda_feature=7.0)
    assert isinstance(model, FeatureGAN)
    generator = torch.Generator().manual_seed(2)
    real_a, real_b = (torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1 for _ in range(2))
    with torch.no_grad():  # instance norm, no dropout: G(a) before the step is what the step's loss sees
        expected_a = 7.0 * (_torchvision_relu4_2(standin.state, model.gen_ab(real_a))
                            - _torchvision_relu4_2(standin.state, real_a)).abs().mean().item()
        expected_b = 7.0 * (_torchvision_relu4_2(standin.state, model.gen_ba(real_b))
                            - _torchvision_relu4_2(standin.state, real_b)).abs().mean().item()
    step = model.training_step(real_a, real_b)
    assert set(step) == {"gan_ab", "gan_ba", "self_reg_a", "self_reg_b", "disc_a", "disc_b"}  # no cycle, no identity
    # float32 sums of a few thousand terms, in another order at worst: far inside 1e-5 relative.
    assert step["self_reg_a"] == pytest.approx(expected_a, rel=1e-5)
    assert step["self_reg_b"] == pytest.approx(expected_b, rel=1e-5)
    assert step["self_reg_a"] != pytest.approx(7.0 * (model.gen_ab(real_a) - real_a).abs().mean().item(), rel=0.01)


def test_gradients_reach_the_generator_through_vgg_and_vgg_stays_fixed_outside_the_checkpoint(standin):
    model = _model(standin)
    vgg = model.phi.net
    before = {name: value.clone() for name, value in vgg.state_dict().items()}
    real_a = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    model._self_regularization(model.gen_ab(real_a), real_a, 1.0).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.gen_ab.parameters())
    assert all(not p.requires_grad and p.grad is None for p in vgg.parameters())
    model.training_step(real_a, real_a)
    model.sample(real_a, real_a)
    _assert_same_tensors(vgg.state_dict(), before)  # trained around, never trained
    assert not vgg.training  # train() and the sampling's eval() do not reach it
    assert set(model.network_state()) == {"gen_ab", "gen_ba", "disc_a", "disc_b"}
    assert all(module is not vgg for module in model.modules())  # so .to(), DDP and checkpoints leave it alone
    assert model.options.objective == "simgan" and model.options.lambda_identity == 0


# --- the model on the command line ---------------------------------------------------------------------------------

def test_cli_trains_translates_and_evaluates_feature_gan(tmp_path, standin, capsys):
    data, run = tiny_dataset(tmp_path / "data", count_a=2, count_b=2), tmp_path / "run"
    assert main(["train", "--model", "feature_gan", "--vgg-weights", str(standin.path), "--lambda-feature", "3",
                 "--dataroot", str(data), "--run-dir", str(run), *TINY_FLAGS]) == 0
    assert "finished after 2 epoch(s), 4 step(s)" in capsys.readouterr().out
    config, state = load_checkpoint(run / "checkpoints" / "latest.safetensors")
    assert config.model == "feature_gan" and set(state["nets"]) == {"gen_ab", "gen_ba", "disc_a", "disc_b"}
    assert (config.options.vgg_weights, config.options.lambda_feature) == (str(standin.path), 3.0)
    assert all(set(terms) >= {"self_reg_a", "self_reg_b"} for _, terms in _losses(run))

    out = tmp_path / "out"
    assert main(["translate", str(run), str(data / "testA"), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert sorted(path.name for path in out.glob("*.png")) == ["000.png", "001.png"]
    scores = tmp_path / "scores.json"
    assert main(["eval", str(out), "--real", str(data / "testB"), "--metrics", "paired", "--out", str(scores),
                 "--quiet"]) == 0
    assert json.loads(scores.read_text())["paired"]["l1"] > 0


def test_stop_and_resume_on_the_cli_gives_the_weights_of_one_run(tmp_path, standin, capsys):
    data = tiny_dataset(tmp_path / "data", count_a=3, count_b=3)
    common = ["train", "--model", "feature_gan", "--vgg-weights", str(standin.path), "--dataroot", str(data),
              *TINY_FLAGS]
    straight, pieces = tmp_path / "straight", tmp_path / "pieces"
    assert main([*common, "--run-dir", str(straight)]) == 0
    assert main([*common, "--run-dir", str(pieces), "--max-steps", "2"]) == 0
    assert "stopped after" in capsys.readouterr().out
    moved = tmp_path / "moved" / standin.name  # the weights may have moved: vgg_weights may change on resume
    moved.parent.mkdir()
    moved.write_bytes(standin.data)
    assert main(["train", "--resume", "--run-dir", str(pieces), "--vgg-weights", str(moved), "--quiet"]) == 0
    assert "finished after 2 epoch(s), 6 step(s)" in capsys.readouterr().out
    _assert_same_tensors(_final_state(straight), _final_state(pieces))
    assert _losses(straight) == _losses(pieces)


def test_training_without_weights_offline_stops_before_it_starts_with_the_advice(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CYCLEGAN_VGG16_URL", closed_port_url("vgg16-397923af.pth"))
    data, run = tiny_dataset(tmp_path / "data", count_a=1, count_b=1), tmp_path / "run"
    assert main(["train", "--model", "feature_gan", "--dataroot", str(data), "--run-dir", str(run),
                 *TINY_FLAGS]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cyclegan: error:") and "--vgg-weights PATH" in error
    assert "CYCLEGAN_VGG16_WEIGHTS" in error
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())


def test_the_feature_loss_weight_scales_only_its_term(standin):
    real = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4)) * 2 - 1
    results = {}
    for weight in (1.0, 10.0):
        torch.manual_seed(5)
        results[weight] = _model(standin, lambda_feature=weight, pool_size=0).training_step(real, real)
    assert results[10.0]["self_reg_a"] == pytest.approx(10 * results[1.0]["self_reg_a"], rel=1e-5)
    assert results[10.0]["gan_ab"] == pytest.approx(results[1.0]["gan_ab"], rel=1e-5)  # G's adversarial term
