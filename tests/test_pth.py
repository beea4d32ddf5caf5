"""The one safe .pth reader: each fault gets one message, the same from official weights, pretrained downloads and
the FID Inception weights, and a pickle that carries code is refused without running it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cyclegan.io.checkpoints import CheckpointError
from cyclegan.io.official import load_official_generator, read_state_dict
from cyclegan.io.pth import load_pth
from cyclegan.metrics.fid import check_inception_weights
from cyclegan.pretrained import check_state_dict

CALLERS: dict[str, Callable[[Path], object]] = {
    "official weights": load_official_generator,
    "official state dict": read_state_dict,
    "pretrained download": check_state_dict,
    "Inception weights": check_inception_weights,
}


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def _weights(path: Path, legacy: bool = False) -> bytes:
    torch.save({"model.1.weight": torch.arange(600.0).reshape(6, 100)}, path,
               _use_new_zipfile_serialization=not legacy)
    return path.read_bytes()


def _cut(keep: Callable[[int], int], legacy: bool = False) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        whole = _weights(path, legacy)
        path.write_bytes(whole[:keep(len(whole))])
    return write


FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing": (lambda path: None, "does not exist"),
    "a folder": (lambda path: path.mkdir(), "is a folder, not a .pth weights file"),
    "text": (lambda path: path.write_bytes(b"not a checkpoint at all"), "not a readable PyTorch weights file: it is "
             "neither of the two formats torch.save writes"),
    "a pickle with code": (lambda path: torch.save({"w": torch.ones(1), "x": RunsCode(path.with_name("ran"))}, path),
                           "was refused: besides tensors it holds pickled Python objects"),
    "empty": (lambda path: path.write_bytes(b""), "is cut off (it is empty)"),
    "a zip cut in half": (_cut(lambda size: size // 2), "is cut off (PytorchStreamReader failed reading zip archive"),
    "a zip without its last byte": (_cut(lambda size: size - 1), "is cut off ("),
    "a legacy pickle cut in half": (_cut(lambda size: size // 2, legacy=True), "is cut off ("),
    "a legacy pickle cut early": (_cut(lambda size: 20, legacy=True), "is cut off ("),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_gets_one_message_from_every_caller(tmp_path, fault):
    path = tmp_path / "weights.pth"
    write, expected = FAULTS[fault]
    write(path)
    messages = {}
    for caller, read in CALLERS.items():
        with pytest.raises(ValueError) as raised:  # CheckpointError is a ValueError, which downloads catch
            read(path)
        assert isinstance(raised.value, CheckpointError), caller
        messages[caller] = str(raised.value)
    assert len(set(messages.values())) == 1, messages
    message = messages["official weights"]
    assert message.startswith(f"{path} ") and expected in message
    assert "\x1b" not in message and "weights_only` set to `False`" not in message  # none of torch's advice
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_a_cut_off_file_says_to_fetch_it_again_and_the_whole_file_loads(tmp_path, legacy):
    path = tmp_path / "weights.pth"
    _weights(path, legacy)
    assert torch.equal(read_state_dict(path)["model.1.weight"], torch.arange(600.0).reshape(6, 100))
    _cut(lambda size: size // 2, legacy)(path)
    with pytest.raises(CheckpointError) as raised:
        load_pth(path)
    assert str(raised.value).endswith("its end is missing, as after an interrupted download or copy; download or "
                                      "copy it again")


class Settings:  # an options object, as training scripts often pickle beside the weights
    pass


class CallsSystem:
    def __reduce__(self):
        return os.system, ("true",)


@pytest.mark.parametrize("content,refused", [
    (lambda: {"w": torch.ones(1), "opt": Settings()}, f"{__name__}.Settings"),  # torch: "was not an allowed global"
    (lambda: {"w": torch.ones(1), "x": CallsSystem()}, f"{os.system.__module__}.system"),  # "whose module is blocked"
])
def test_a_refused_pickle_is_called_unsafe_and_names_what_was_refused(tmp_path, content, refused):
    path = tmp_path / "weights.pth"
    torch.save(content(), path)
    with pytest.raises(CheckpointError) as raised:
        load_pth(path)
    message = str(raised.value)
    assert f"(the first that torch refused: {refused})" in message
    assert "unsafe to load as it is; nothing in it was run" in message


@pytest.mark.parametrize("content,found", [
    ([torch.zeros(2)], "but a list"),
    ({}, "but an empty dict"),
    ({"w": torch.zeros(2), "epoch": 3}, "entries that are not named tensors: epoch"),
])
def test_what_is_not_a_state_dict_is_named_the_same_for_official_and_pretrained_files(tmp_path, content, found):
    path = tmp_path / "weights.pth"
    torch.save(content, path)
    messages = set()
    for read in (read_state_dict, load_official_generator, check_state_dict):
        with pytest.raises(CheckpointError) as raised:
            read(path)
        messages.add(str(raised.value))
    assert len(messages) == 1
    message = messages.pop()
    assert message.startswith(f"{path} does not hold a state dict (a mapping of names to tensors)") and found in message
