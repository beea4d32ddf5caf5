"""The models, by the name `ModelConfig.model` gives them (`model_registry`): each defines its networks and one
optimisation step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import Config, ModelConfig, TrainConfig
from ..generators import build_generators, load_generators
from ..io.checkpoints import check_network_state
from ..model_registry import ModelEntry, model_entry, model_names, register_model, unregister_model
from .base import TranslationModel
from .cyclegan import CycleGAN
from .pix2pix import Pix2Pix


def model_class(config: ModelConfig) -> type[TranslationModel]:
    """The class of the model `config.model` names."""
    return model_entry(config.model).load_class()


def build_model(config: ModelConfig, train: TrainConfig) -> TranslationModel:
    """The model `config.model` names, with its networks, optimisers and image pools (on the CPU)."""
    return model_class(config)(config, train)


def check_checkpoint_networks(config: Config, nets: Any, source: str | Path,
                              wanted: Callable[[str], bool] | None = None) -> None:
    """Raise CheckpointError unless `nets` (a checkpoint's "nets" state, read from `source`) holds the weights of
    every network of `config`'s model (or of those whose name `wanted` accepts), with the shapes `config` gives
    them. The networks are built on the meta device, so this costs no memory and no initialisation."""
    with torch.device("meta"):
        networks = build_model(config.model, config.train).plain_networks()
    if wanted is not None:
        networks = {name: net for name, net in networks.items() if wanted(name)}
    check_network_state(source, networks, nets, config.model)


__all__ = ["CycleGAN", "ModelEntry", "Pix2Pix", "TranslationModel", "build_generators", "build_model",
           "check_checkpoint_networks", "load_generators", "model_class", "model_entry", "model_names",
           "register_model", "unregister_model"]
