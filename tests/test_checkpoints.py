import pytest
import torch

from cyclegan.config import Config, apply_overrides
from cyclegan.io import checkpoints
from cyclegan.io.atomic import atomic_write_text
from cyclegan.io.checkpoints import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint


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
