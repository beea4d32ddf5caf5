"""The models, by the name `Config.model` gives them (`model_registry`): each defines its networks and one
optimisation step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..generators import build_generators, load_generators
from ..io.checkpoints import check_network_state, describe_networks
from ..model_registry import ModelEntry, model_entry, model_names, register_model, unregister_model
from .base import AdversarialOptions, TranslationModel
from .cyclegan import CycleGAN, CycleGANOptions
from .pix2pix import Pix2Pix, Pix2PixOptions


def model_class(model: str) -> type[TranslationModel]:
    """The class of the registered `model`."""
    return model_entry(model).load_class()


def build_model(config: Config) -> TranslationModel:
    """The model `config.model` names, with its networks, optimisers and image pools (on the CPU)."""
    return model_class(config.model)(config.networks, config.options, config.train)


def check_checkpoint_networks(config: Config, nets: Any, source: str | Path,
                              wanted: Callable[[str], bool] | None = None) -> None:
    """Raise CheckpointError unless `nets` (a checkpoint's "nets" state, read from `source`) holds the weights of
    every network of `config`'s model (or of those whose name `wanted` accepts), with the shapes `config` gives
    them. The networks are built on the meta device, so this costs no memory and no initialisation."""
    with torch.device("meta"):
        networks = build_model(config).plain_networks()
    if wanted is not None:
        networks = {name: net for name, net in networks.items() if wanted(name)}
    check_network_state(source, networks, nets, f"model={config.model}, {describe_networks(config.networks)}")


__all__ = ["AdversarialOptions", "CycleGAN", "CycleGANOptions", "ModelEntry", "Pix2Pix", "Pix2PixOptions",
           "TranslationModel", "build_generators", "build_model",
           "check_checkpoint_networks", "load_generators", "model_class", "model_entry", "model_names",
           "register_model", "unregister_model"]
