"""Checkpoints: one safetensors file holding every tensor, with the config and all other state as JSON metadata.

Nothing is pickled, so loading a checkpoint never runs code. A checkpoint carries the resolved config, so the model
is rebuilt from the file alone. Nested state (optimizer state dicts, image pools, RNG states) is flattened: each
tensor is stored under its path ("optimizers/gen/state/3/exp_avg") and replaced in the JSON tree by a reference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..config import Config, ConfigError, config_from_json, config_to_json
from .atomic import atomic_path

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
        save_file(tensors, str(temporary), metadata=metadata)
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


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu",
                    prefix: str | None = None) -> tuple[Config, dict[str, Any]]:
    """Read a checkpoint: its config and state tree. With `prefix` (e.g. "nets"), only that part of the state."""
    metadata = read_metadata(path)
    try:
        config = config_from_json(metadata["config"])
    except (ConfigError, KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: the stored config cannot be read ({error})") from None
    tree = json.loads(metadata["state"])
    if prefix is not None:
        tree = {prefix: tree[prefix]}
        wanted = f"/{prefix}/"
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys() if key.startswith(wanted)}
    else:
        tensors = load_file(str(path), device=str(device))
    return config, _decode(tree, tensors)


def find_checkpoint(path: str | Path) -> Path:
    """A run folder's latest checkpoint, or the file itself."""
    path = Path(path)
    if path.is_dir():
        latest = path / "checkpoints" / "latest.safetensors"
        if latest.is_file():
            return latest
        raise CheckpointError(f"{path} holds no checkpoints/latest.safetensors; is it a cyclegan run folder, and "
                              "has it finished at least one epoch or been stopped once?")
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; give a run folder or a checkpoint file")
    return path
