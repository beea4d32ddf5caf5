"""Checkpoints: one safetensors file holding every tensor, with the config and all other state as JSON metadata.

Nothing is pickled, so loading a checkpoint never runs code. A checkpoint carries the resolved config, so the model
is rebuilt from the file alone. Nested state (optimizer state dicts, image pools, RNG states) is flattened: each
tensor is stored under its path ("optimizers/gen/state/3/exp_avg") and replaced in the JSON tree by a reference.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import Config, NetworksConfig, networks_from_dict
from ..config_files import config_to_json
from .atomic import atomic_path, write_failure
from .run_folder import RunFolder

FORMAT = "cyclegan-checkpoint"
FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A file that is not a readable cyclegan checkpoint; the message names it and says what to do."""


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[path] = value.detach().cpu().contiguous().clone()
        return {"__tensor__": path}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _encode(item, f"{path}/{key}", tensors) for key, item in value.items()}
        return {"__items__": [[key, _encode(item, f"{path}/{key}", tensors)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item, f"{path}/{i}", tensors) for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(item, f"{path}/{i}", tensors) for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store {type(value).__name__} at {path!r} in a checkpoint")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__items__" in value:
            return {key: _decode(item, tensors) for key, item in value["__items__"]}
        if "__tuple__" in value:
            return tuple(_decode(item, tensors) for item in value["__tuple__"])
        return {key: _decode(item, tensors) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    return value


def save_checkpoint(path: str | Path, config: Config, state: dict[str, Any]) -> Path:
    """Write `state` (nested dicts/lists/tuples of tensors and JSON values) and `config` to `path`, atomically."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, "", tensors)
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config_to_json(config),
                "state": json.dumps(tree)}
    path = Path(path)
    with atomic_path(path) as temporary:
        try:
            save_file(tensors, str(temporary), metadata=metadata)
        except SafetensorError as error:  # how safetensors reports a full disk or any other I/O failure
            raise write_failure(path, error) from error
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a safetensors checkpoint ({error}); give a file written by "
                              "cyclegan (a run folder, or a .safetensors file inside its checkpoints/)") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not a cyclegan checkpoint (no config inside)")
    return metadata


_DAMAGED = "the file is damaged or was edited; use the file as cyclegan wrote it, or another checkpoint"


def _stored_json(path: str | Path, metadata: dict[str, str], key: str, what: str) -> Any:
    if key not in metadata:
        raise CheckpointError(f"{path} holds no {what} (no {key!r} entry in its metadata); {_DAMAGED}")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: the stored {what} is not valid JSON ({error}); {_DAMAGED}") from None


def _stored(path: str | Path, metadata: dict[str, str], read: Callable[[dict[str, Any]], Any]) -> Any:
    values = _stored_json(path, metadata, "config", "config")
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: the stored config is not a mapping of options; {_DAMAGED}")
    try:
        return read(values)
    except (ValueError, TypeError, AttributeError) as error:  # ConfigError is a ValueError
        raise CheckpointError(f"{path}: the stored config cannot be used ({error}); {_DAMAGED}") from None


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu",
                    prefix: str | None = None) -> tuple[Config, dict[str, Any]]:
    """Read a checkpoint: its config and state tree. With `prefix` (e.g. "nets"), only that part of the state.

    A file that is not a whole cyclegan checkpoint (config or state missing or not JSON, a tensor the state names
    but the file lacks) raises CheckpointError; `check_network_state` then checks the networks' tensors.
    """
    metadata = read_metadata(path)
    return _stored(path, metadata, Config.from_dict), _stored_state(path, metadata, device, prefix)


def load_networks(path: str | Path, device: torch.device | str = "cpu"
                  ) -> tuple[str, NetworksConfig, dict[str, Any]]:
    """Read what translation needs from a checkpoint: the model's name, its networks' config and the "nets"
    state. The model's training options are not read, so its training code is not imported."""
    metadata = read_metadata(path)
    model, networks = _stored(path, metadata, networks_from_dict)
    return model, networks, _stored_state(path, metadata, device, "nets")


def _stored_state(path: str | Path, metadata: dict[str, str], device: torch.device | str,
                  prefix: str | None) -> dict[str, Any]:
    tree = _stored_json(path, metadata, "state", "state record")
    if prefix is not None:
        if not isinstance(tree, dict) or prefix not in tree:
            raise CheckpointError(f"{path} holds no {prefix!r} state; {_DAMAGED}")
        tree = {prefix: tree[prefix]}
    try:
        if prefix is not None:
            with safe_open(str(path), framework="pt", device=str(device)) as handle:
                tensors = {key: handle.get_tensor(key) for key in handle.keys() if key.startswith(f"/{prefix}/")}
        else:
            tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: its tensors cannot be read ({error}); {_DAMAGED}") from None
    try:
        return _decode(tree, tensors)
    except KeyError as error:
        raise CheckpointError(f"{path}: the state names the tensor {error.args[0]!r}, which the file does not "
                              f"hold; {_DAMAGED}") from None
    except (TypeError, ValueError, AttributeError):
        raise CheckpointError(f"{path}: the stored state record is malformed; {_DAMAGED}") from None


def describe_networks(networks: NetworksConfig) -> str:
    """The architecture in a line, for messages."""
    n = networks
    return (f"gen_arch={n.gen_arch}, ngf={n.ngf}, disc_arch={n.disc_arch}, ndf={n.ndf}, norm={n.norm}, "
            f"channels_a={n.channels_a}, channels_b={n.channels_b}")


def _network_problems(name: str, net: nn.Module, stored: Any) -> list[str]:
    if not isinstance(stored, Mapping):
        return [f"no weights for {name}"]
    expected = net.state_dict()
    problems = [f"{name}.{key} is missing" for key in expected if key not in stored]
    problems += [f"{name}.{key} is not a network tensor" for key in stored if key not in expected]
    for key, tensor in expected.items():
        value = stored.get(key)
        if key in stored and not isinstance(value, torch.Tensor):
            problems.append(f"{name}.{key} is not a tensor")
        elif key in stored and value.shape != tensor.shape:
            problems.append(f"{name}.{key} has shape {list(value.shape)}, the config needs {list(tensor.shape)}")
    return problems


def check_network_state(path: str | Path, networks: Mapping[str, nn.Module], state: Any,
                        described: str | None = None) -> None:
    """Raise CheckpointError unless `state` (a checkpoint's "nets") holds for each of `networks` exactly the
    tensors it has, of the same shapes; `described` (the model and `describe_networks`) goes into the message.
    The networks may be built on the meta device: only shapes are read."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: the stored networks are not a mapping of weights; {_DAMAGED}")
    problems = [problem for name, net in networks.items() for problem in _network_problems(name, net, state.get(name))]
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        described = f" ({described})" if described is not None else ""
        raise CheckpointError(f"{path}: its weights do not fit the networks its config describes{described}: "
                              f"{shown}. The stored config or weights were changed after saving; use the file as "
                              "cyclegan wrote it, or another checkpoint")


def find_checkpoint(path: str | Path) -> Path:
    """A run folder's latest checkpoint, or the file itself."""
    path = Path(path)
    if path.is_dir():
        run = RunFolder(path)
        if run.latest_checkpoint.is_file():
            return run.latest_checkpoint
        raise CheckpointError(f"{path} holds no {run.relative(run.latest_checkpoint)}; is it a cyclegan run folder, "
                              "and has it finished at least one epoch or been stopped once?")
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; give a run folder or a checkpoint file")
    return path
