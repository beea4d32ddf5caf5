"""Bad input on the command line: exit status 2, one "cyclegan: error: ..." line naming the value or file and what
to do, no traceback, and nothing written."""

import pytest
import torch
from PIL import Image

from cyclegan.cli.main import main
from cyclegan.config import Config, apply_overrides
from cyclegan.io.checkpoints import save_checkpoint
from cyclegan.models import build_generators

from .helpers import rewrite_checkpoint


def _error_of(argv, capsys):
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("cyclegan: error:") and "Traceback" not in error
    return error


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def tiny_model(tmp_path):
    """A model file of ours with two 4-wide ResNet generators, and an image to translate."""
    config = apply_overrides(Config(), {"gen_arch": "resnet_6blocks", "ngf": 4, "ndf": 4})
    nets = {name: net.state_dict() for name, net in build_generators(config.model, config.networks).items()}
    path = save_checkpoint(tmp_path / "model.safetensors", config, {"nets": nets})
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    return path, tmp_path / "x.png"


@pytest.mark.parametrize("flags,message", [
    (["--device", "banana"], "device='banana' is not a device; use auto, cpu, cuda"),
    (["--device", "cuda"], "device 'cuda' was asked for, but this PyTorch sees no CUDA GPU; use --device cpu"),
    (["--device", "cuda:1"], "device 'cuda:1' was asked for"),
    (["--seed", "-1"], "seed=-1 must be between 0 and"),
    (["--seed", str(2**64)], f"seed={2**64} must be between 0 and"),
    (["--lr", "nan"], "lr=nan must be a finite number"),
    (["--lr", "inf"], "lr=inf must be a finite number"),
    (["--lambda-a", "nan"], "lambda_a=nan must be a finite number"),
    (["--beta1", "1"], "beta1=1.0 must be between 0.0 and 1.0 (exclusive)"),
    (["--beta2", "-0.5"], "beta2=-0.5 must be between 0.0 and 1.0"),
    (["--crop-size", "2"], "crop_size=2 is too small for gen_arch=resnet_9blocks with disc_arch=basic: they need "
                           "crops of at least 24 pixels"),
    (["--crop-size", "30"], "crop_size=30 is not a multiple of 4"),
    (["--ngf", str(10**9)], "ngf=1000000000 must be between 1 and 4096"),
    (["--ndf", "5000"], "ndf=5000 must be between 1 and 4096"),
])
def test_bad_training_options_exit_2_before_anything_is_written(tmp_path, monkeypatch, capsys, no_cuda, flags,
                                                                 message):
    monkeypatch.chdir(tmp_path)
    error = _error_of(["train", "--run-dir", "run", "--dataroot", "no-data", "--quiet", *flags], capsys)
    assert message in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("device,message", [
    ("banana", "unknown device 'banana'; use auto, cpu, cuda, cuda:N or mps"),
    ("meta", "unknown device 'meta'"),
    ("cuda", "device 'cuda' was asked for, but this PyTorch sees no CUDA GPU"),
])
def test_translate_refuses_a_device_it_cannot_use(tmp_path, capsys, no_cuda, tiny_model, device, message):
    model, image = tiny_model
    error = _error_of(["translate", str(model), str(image), "--out", str(tmp_path / "out"), "--device", device],
                      capsys)
    assert message in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name,content,message", [
    ("twice.yaml", b"train:\n  n_epochs: 1\n  n_epochs: 3\n",
     "twice.yaml: 'n_epochs' is given twice (line 2 and line 3)"),
    ("latin1.yaml", "# Fran\xe7ais\nngf: 8\n".encode("latin-1"), "latin1.yaml is not UTF-8 text"),
])
def test_a_bad_config_file_exits_2(tmp_path, monkeypatch, capsys, name, content, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(content)
    assert message in _error_of(["train", "--config", name, "--run-dir", "run", "--dataroot", "no-data"], capsys)
    assert not (tmp_path / "run").exists()


def _ngf(value):
    return lambda config: config["networks"].update(ngf=value)


@pytest.mark.parametrize("edit,message", [
    ({"config": _ngf(8)}, "its weights do not fit the networks its config describes (model=cyclegan, "
                          "gen_arch=resnet_6blocks, ngf=8"),
    ({"config": lambda c: c["networks"].update(gen_arch="resnet_9blocks")}, "gen_ab.model.16.conv_block.1.weight is "
                                                                         "missing"),
    ({"config": _ngf(10**9)}, "the stored config cannot be used (ngf=1000000000 must be between 1 and 4096)"),
    ({"metadata": lambda m: m.update(config="{ngf: 4")}, "the stored config is not valid JSON"),
    ({"metadata": lambda m: m.pop("config")}, "holds no config"),
    ({"drop_tensor": "/nets/gen_ba/model.1.weight"}, "the state names the tensor '/nets/gen_ba/model.1.weight'"),
])
@pytest.mark.parametrize("command", ["translate", "export"])
def test_an_edited_or_damaged_checkpoint_exits_2_naming_it(tmp_path, capsys, tiny_model, edit, message, command):
    model, image = tiny_model
    edited = rewrite_checkpoint(model, tmp_path / "edited.safetensors", **edit)
    argv = {"translate": ["translate", str(edited), str(image), "--out", str(tmp_path / "out"), "--quiet"],
            "export": ["export", str(edited), "--out", str(tmp_path / "out")]}[command]
    error = _error_of(argv, capsys)
    assert str(edited) in error and message in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("edit,message", [
    ({"metadata": lambda m: m.update(state="[1,")}, "the stored state record is not valid JSON"),
    ({"metadata": lambda m: m.pop("config")}, "holds no config"),
    ({"drop_tensor": "/nets/gen_ba/model.1.weight"}, "the state names the tensor '/nets/gen_ba/model.1.weight'"),
])
def test_resuming_from_a_damaged_checkpoint_exits_2_naming_it(tmp_path, capsys, tiny_model, edit, message):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    latest = rewrite_checkpoint(tiny_model[0], run / "checkpoints" / "latest.safetensors", **edit)
    before = sorted(run.rglob("*"))
    error = _error_of(["train", "--resume", "--run-dir", str(run), "--quiet"], capsys)
    assert str(latest) in error and message in error
    assert sorted(run.rglob("*")) == before


@pytest.mark.parametrize("argv,message", [
    (["export", "MODEL", "--out", "taken"], "taken is a file, not a folder: export writes its files into the folder "
                                            "taken; give a new or existing folder as --out"),
    (["export", "MODEL", "--out", "taken/sub", "--format", "official"], "taken is a file, not a folder: export "
                                                                        "writes its files into the folder taken/sub"),
    (["data", "synth", "--out", "taken", "--size", "32", "--train", "1", "--test", "1"],
     "taken is a file, not a folder: the data set is written as folders trainA, trainB, testA, testB inside taken"),
    (["data", "synth", "--out", "taken/data", "--size", "32", "--train", "1", "--test", "1"],
     "taken is a file, not a folder: the data set is written as folders trainA, trainB, testA, testB inside "
     "taken/data"),
    (["train", "--dir-a", "taken", "--dir-b", "images", "--run-dir", "run"], "taken is a file, not a folder of "
                                                                             "images"),
    (["train", "--dir-a", "images", "--dir-b", "taken/b", "--run-dir", "run"], "taken is a file, not a folder of "
                                                                               "images"),
    (["train", "--dataroot", "taken", "--run-dir", "run"], "taken is a file, not a folder of images"),
    (["train", "--model", "pix2pix", "--dataroot", "taken", "--run-dir", "run"], "taken is a file, not a data set "
                                                                                 "folder"),
    (["train", "--model", "pix2pix", "--dir-a", "taken", "--dir-b", "images", "--run-dir", "run"],
     "taken is a file, not a folder of images"),
])
def test_a_file_given_where_a_folder_belongs_is_named_as_a_file(tmp_path, monkeypatch, capsys, tiny_model, argv,
                                                                message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("keep me")
    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "0.png")
    argv = [str(tiny_model[0]) if arg == "MODEL" else arg for arg in argv]
    error = _error_of([*argv, *(["--quiet"] if argv[0] == "train" else [])], capsys)
    assert message in error and "does not exist" not in error
    assert (tmp_path / "taken").read_text() == "keep me"
