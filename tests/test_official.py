"""The official implementation's weight files: every fixture in shared/fixtures/official loads and reproduces the
official output; our exports load back; unsafe pickles are refused without running."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cyclegan.io.checkpoints import CheckpointError
from cyclegan.io.official import (
    infer_discriminator,
    infer_generator,
    load_official_discriminator,
    load_official_generator,
    read_state_dict,
    save_official,
)
from cyclegan.nets.generators import build_generator
from cyclegan.nets.layers import count_parameters

from .helpers import SHARED

OFFICIAL = SHARED / "fixtures" / "official"


def _fixtures():
    return sorted(json.loads((OFFICIAL / "fixtures.json").read_text()).items())


@pytest.mark.parametrize("name,spec", _fixtures(), ids=[name for name, _ in _fixtures()])
def test_every_official_fixture_is_recognised_and_reproduced(name, spec):
    loader = load_official_generator if spec["kind"] == "G" else load_official_discriminator
    net, found = loader(OFFICIAL / f"{name}.pth")
    if spec["kind"] == "G":
        assert found.arch == spec["netG"] and found.ngf == spec["ngf"] and found.norm == spec["norm"]
        assert found.in_channels == spec.get("input_nc", 3) and found.out_channels == spec.get("output_nc", 3)
        if spec["netG"].startswith("resnet"):
            assert found.dropout == spec["use_dropout"]
    else:
        assert found.ndf == spec["ndf"] and found.norm == spec["norm"]
        assert found.arch == ("basic" if spec["netD"] == "n_layers" and spec.get("n_layers_D") == 3 else spec["netD"])
        if spec["netD"] == "n_layers":
            assert found.n_layers == spec["n_layers_D"]
    assert count_parameters(net) == spec["params"]
    assert not net.training
    with torch.no_grad():
        output = net(torch.from_numpy(np.load(OFFICIAL / f"{name}.input.npy"))).numpy()
    assert output.shape == tuple(spec["output_shape"])
    assert np.abs(output - np.load(OFFICIAL / f"{name}.output.npy")).max() <= 1e-5


def test_old_instance_norm_statistics_are_dropped_as_the_official_code_does():
    state = read_state_dict(OFFICIAL / "G_resnet9_in_ngf16_oldkeys.pth")
    assert any(key.endswith("running_mean") for key in state)
    net, spec = load_official_generator(OFFICIAL / "G_resnet9_in_ngf16_oldkeys.pth")
    assert spec.norm == "instance" and not any(k.endswith("running_mean") for k in net.state_dict())


def test_export_round_trip_and_official_names(tmp_path):
    torch.manual_seed(3)
    gen = build_generator("resnet_6blocks", 3, 3, 8, "instance", True)
    written = save_official({"gen_ab": gen.state_dict()}, tmp_path)
    assert [p.name for p in written] == ["latest_net_G_A.pth"]
    state = torch.load(written[0], weights_only=True)
    assert "model.10.conv_block.6.weight" in state  # official key names, dropout layout
    loaded, spec = load_official_generator(written[0])
    assert (spec.arch, spec.ngf, spec.dropout) == ("resnet_6blocks", 8, True)
    x = torch.rand(1, 3, 32, 32)
    gen.eval()
    assert torch.equal(loaded(x), gen(x))


def test_data_parallel_prefix_and_wrapped_state_dicts(tmp_path):
    gen = build_generator("unet_128", 1, 3, 4, "batch", False)
    path = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in gen.state_dict().items()}}, path)
    _, spec = load_official_generator(path)
    assert (spec.arch, spec.in_channels, spec.out_channels, spec.norm) == ("unet_128", 1, 3, "batch")


def test_unrecognised_weights_give_a_clear_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="resnet_9blocks, resnet_6blocks, unet_128, unet_256"):
        load_official_generator(path)
    with pytest.raises(CheckpointError, match="basic, n_layers, pixel"):
        infer_discriminator(read_state_dict(path))
    with pytest.raises(CheckpointError, match="not a readable PyTorch weights file"):
        (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
        read_state_dict(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError):
        infer_generator({"model.model.0.weight": torch.zeros(8, 3, 4, 4)})


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "horse2zebra.pth"
    torch.save({"model.1.weight": torch.zeros(1), "extra": Payload()}, evil)
    with pytest.raises(CheckpointError, match="refused: besides tensors it holds pickled Python objects"):
        load_official_generator(evil)
    assert not marker.exists()


def test_export_official_and_safetensors_then_translate(tmp_path):
    from cyclegan.cli.main import main
    from cyclegan.training.loop import train
    from cyclegan.translate import Translator

    from .helpers import tiny_config, tiny_dataset

    dataroot = tiny_dataset(tmp_path / "data")
    train(tiny_config(tmp_path / "run", dataroot, n_epochs=1, n_epochs_decay=0, dropout=True), show_progress=False)
    ours = Translator.load(tmp_path / "run", device="cpu")
    x = torch.rand(1, 3, 36, 28) * 2 - 1

    assert main(["export", str(tmp_path / "run"), "--format", "official", "--out", str(tmp_path / "off")]) == 0
    names = sorted(p.name for p in (tmp_path / "off").iterdir())
    assert names == ["latest_net_D_A.pth", "latest_net_D_B.pth", "latest_net_G_A.pth", "latest_net_G_B.pth"]
    official_pair = Translator.load(tmp_path / "off", device="cpu")
    for direction in ("AtoB", "BtoA"):
        assert torch.equal(official_pair(x, direction=direction), ours(x, direction=direction))
    single = Translator.load(tmp_path / "off" / "latest_net_G_B.pth", device="cpu")  # a lone file: A->B only
    assert torch.equal(single(x), ours(x, direction="BtoA"))
    with pytest.raises(ValueError, match="no BtoA generator"):
        single(x, direction="BtoA")
    _, disc_spec = load_official_discriminator(tmp_path / "off" / "latest_net_D_A.pth")
    assert (disc_spec.arch, disc_spec.ndf) == ("basic", 4)

    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "model")]) == 0
    model_file = tmp_path / "model" / "model.safetensors"
    assert model_file.stat().st_size < (tmp_path / "run" / "checkpoints" / "latest.safetensors").stat().st_size
    from_file = Translator.load(model_file, device="cpu")
    assert from_file.config == ours.config
    assert torch.equal(from_file(x), ours(x))


class _Settings:  # what training scripts often pickle beside the weights (an options object)
    pass


@pytest.mark.parametrize("content,refused", [
    (lambda: torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear"),
    (lambda: {"state_dict": {"w": torch.ones(1)}, "opt": _Settings()}, f"{__name__}._Settings"),
])
def test_the_refusal_of_pickled_objects_says_what_why_and_how_to_resave(tmp_path, content, refused):
    path = tmp_path / "model.pth"
    torch.save(content(), path)
    with pytest.raises(CheckpointError) as raised:
        read_state_dict(path)
    message = str(raised.value)
    assert message.startswith(f"{path} was refused: besides tensors it holds pickled Python objects (the first "
                              f"that torch refused: {refused}), and unpickling those can run any code")
    assert "torch.load(weights_only=True)" in message and "If you trust the file" in message
    example = message.split('python -c "')[1].split('"')[0]
    assert example == (f"import torch; torch.save(torch.load({str(path)!r}, weights_only=False).state_dict(), "
                       "'weights.pth')")
    assert message.endswith("instead of .state_dict()).") and "\x1b" not in message and "Please use" not in message
