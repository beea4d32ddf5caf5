import pytest
import torch

from cyclegan.config import Config, apply_overrides
from cyclegan.io import checkpoints
from cyclegan.io.atomic import atomic_write_text
from cyclegan.io.checkpoints import (
    CheckpointError,
    check_network_state,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from cyclegan.models import build_model, check_checkpoint_networks, load_generators

from .helpers import rewrite_checkpoint


def _optimizer_state():
    net = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.999))
    net(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    return optimizer.state_dict()


def test_round_trip_of_nested_state(tmp_path):
    config = apply_overrides(Config(), {"ngf": 8, "seed": 5})
    state = {"nets": {"gen": {"w": torch.randn(2, 3), "scalar": torch.tensor(3.0)}},
             "optimizer": _optimizer_state(),
             "random": (3, (1, 2, 3), None), "progress": {"epoch": 2, "ratio": 0.5, "name": "x"},
             "empty": torch.zeros(0), "ints": torch.arange(5)}
    path = save_checkpoint(tmp_path / "c.safetensors", config, state)
    loaded_config, loaded = load_checkpoint(path)
    assert loaded_config == config
    assert torch.equal(loaded["nets"]["gen"]["w"], state["nets"]["gen"]["w"])
    assert loaded["nets"]["gen"]["scalar"].item() == 3.0
    assert loaded["random"] == (3, (1, 2, 3), None)
    assert loaded["progress"] == {"epoch": 2, "ratio": 0.5, "name": "x"}
    assert torch.equal(loaded["ints"], torch.arange(5)) and loaded["empty"].numel() == 0
    # optimizer state keeps its integer parameter ids and tuples, so torch accepts it back
    assert set(loaded["optimizer"]["state"]) == {0, 1}
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.5, 0.999)
    fresh = torch.optim.Adam(torch.nn.Linear(3, 2).parameters())
    fresh.load_state_dict(loaded["optimizer"])
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], state["optimizer"]["state"][0]["exp_avg"])


def test_prefix_loads_only_part(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", Config(),
                           {"nets": {"g": torch.ones(2)}, "training": {"big": torch.zeros(3)}})
    _, loaded = load_checkpoint(path, prefix="nets")
    assert set(loaded) == {"nets"} and torch.equal(loaded["nets"]["g"], torch.ones(2))


def test_interrupted_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest.safetensors"
    save_checkpoint(path, Config(), {"w": torch.ones(3)})

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, Config(), {"w": torch.zeros(3)})
    _, loaded = load_checkpoint(path)
    assert torch.equal(loaded["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["latest.safetensors"]  # no temporary file left behind


def test_atomic_text_write_failure_keeps_old_content(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "good")
    with pytest.raises(TypeError):
        atomic_write_text(target, None)
    assert target.read_text() == "good"


def test_files_that_are_not_checkpoints_are_refused_without_unpickling(tmp_path):
    ran = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(ran), "w"))

    pickle_file = tmp_path / "evil.pth"
    torch.save({"x": Exploit()}, pickle_file)
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_checkpoint(pickle_file)
    assert not ran.exists()
    with pytest.raises(CheckpointError, match="does not exist"):
        find_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoints/latest.safetensors"):
        find_checkpoint(tmp_path)


@pytest.fixture
def model_checkpoint(tmp_path):
    """A checkpoint of a tiny CycleGAN's four networks (and an optimiser-like extra part), as training writes it."""
    config = apply_overrides(Config(), {"gen_arch": "resnet_6blocks", "ngf": 4, "ndf": 4, "crop_size": 32})
    model = build_model(config)
    path = save_checkpoint(tmp_path / "latest.safetensors", config,
                           {"nets": model.network_state(), "progress": {"epoch": 1}})
    return path, config


def _drop(key):
    return lambda values: values.pop(key)


def _set(key, value):
    return lambda values: values.update({key: value})


@pytest.mark.parametrize("edit,message", [
    ({"metadata": _drop("config")}, r"holds no config \(no 'config' entry in its metadata\)"),
    ({"metadata": _set("config", "{ngf: 4")}, r"the stored config is not valid JSON \(Expecting property name"),
    ({"metadata": _set("config", "[1, 2]")}, "the stored config is not a mapping of options"),
    ({"config": lambda c: c["networks"].update(ngf=10**9)}, r"the stored config cannot be used \(ngf=1000000000 must"),
    ({"config": lambda c: c["networks"].update(ngf=[4])}, r"the stored config cannot be used \(ngf=\[4\] is not"),
    ({"metadata": _drop("state")}, r"holds no state record \(no 'state' entry"),
    ({"metadata": _set("state", "[1,")}, "the stored state record is not valid JSON"),
    ({"drop_tensor": "/nets/gen_ab/model.1.weight"},
     "the state names the tensor '/nets/gen_ab/model.1.weight', which the file does not hold"),
    ({"state": lambda s: s.update(nets={"__items__": 5})}, "the stored state record is malformed"),
])
def test_a_damaged_or_edited_checkpoint_is_refused_with_the_file_named(model_checkpoint, tmp_path, edit, message):
    path = rewrite_checkpoint(model_checkpoint[0], tmp_path / "edited.safetensors", **edit)
    for prefix in (None, "nets"):
        with pytest.raises(CheckpointError, match=rf"^{path}:? {message}.*use the file as cyclegan wrote it"):
            load_checkpoint(path, prefix=prefix)


def test_a_checkpoint_without_the_part_asked_for_is_refused(model_checkpoint, tmp_path):
    path = rewrite_checkpoint(model_checkpoint[0], tmp_path / "edited.safetensors", state=_drop("nets"))
    with pytest.raises(CheckpointError, match=rf"^{path} holds no 'nets' state; the file is damaged or was edited"):
        load_checkpoint(path, prefix="nets")
    _, state = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no weights for gen_ab; no weights for gen_ba"):
        check_checkpoint_networks(Config(), state.get("nets", {}), path)


@pytest.mark.parametrize("change,message", [
    ({"ngf": 8}, r"ngf=8.*gen_ab\.model\.1\.weight has shape \[4, 3, 7, 7\], the config needs \[8, 3, 7, 7\]"),
    ({"ndf": 8}, r"disc_a\.model\.0\.weight has shape \[4, 3, 4, 4\], the config needs \[8, 3, 4, 4\]"),
    ({"gen_arch": "resnet_9blocks"}, r"gen_ab\.model\.16\.conv_block\.1\.weight is missing"),
    ({"gen_arch": "unet_128"}, r"gen_ab\.model\.model\.0\.weight is missing; .*; and \d+ more"),
    ({"channels_a": 1, "lambda_identity": 0}, r"channels_a=1.*gen_ab\.model\.1\.weight has shape \[4, 3, 7, 7\]"),
    ({"norm": "batch"}, r"gen_ab\.model\.2\.weight is missing"),
])
def test_a_config_edited_to_no_longer_fit_the_weights_is_refused(model_checkpoint, tmp_path, change, message):
    source, _ = model_checkpoint
    if change.get("gen_arch") == "unet_128":
        change = {**change, "crop_size": 128}  # which the U-Net needs
    path = rewrite_checkpoint(source, tmp_path / "edited.safetensors",
                              config=lambda c: [c[s].update({k: v for k, v in change.items() if k in c[s]})
                                                for s in c if isinstance(c[s], dict)])
    config, state = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=rf"^{path}: its weights do not fit the networks its config "
                                              rf"describes \(.*{message}.*use the file as cyclegan wrote it"):
        check_checkpoint_networks(config, state["nets"], path)


def test_a_checkpoint_as_written_passes_the_network_check(model_checkpoint):
    path, config = model_checkpoint
    loaded_config, state = load_checkpoint(path)
    check_checkpoint_networks(loaded_config, state["nets"], path)
    generators = load_generators(loaded_config.model, loaded_config.networks, state["nets"], path)
    assert torch.equal(generators["gen_ab"].model[1].weight, state["nets"]["gen_ab"]["model.1.weight"])
    del state["nets"]["disc_a"]  # a model file: generators only
    check_checkpoint_networks(loaded_config, state["nets"], path, lambda name: name.startswith("gen_"))
    with pytest.raises(CheckpointError, match="no weights for disc_a"):
        check_checkpoint_networks(loaded_config, state["nets"], path)
    state["nets"]["gen_ba"]["model.1.weight"] = 3.0
    with pytest.raises(CheckpointError, match=r"gen_ba\.model\.1\.weight is not a tensor"):
        load_generators(loaded_config.model, loaded_config.networks, state["nets"], path)
    state["nets"]["gen_ab"]["extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"gen_ab\.extra is not a network tensor"):
        check_network_state(path, {"gen_ab": generators["gen_ab"]}, state["nets"])
