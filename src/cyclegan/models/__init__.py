"""The models, by the name `ModelConfig.model` gives them: each defines its networks and one optimisation step."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig, TrainConfig
from .base import TranslationModel
from .cyclegan import CycleGAN
from .pix2pix import Pix2Pix

MODELS: dict[str, type[TranslationModel]] = {"cyclegan": CycleGAN, "pix2pix": Pix2Pix}


def model_class(config: ModelConfig) -> type[TranslationModel]:
    """The class of the model `config.model` names."""
    return MODELS[config.model]


def build_model(config: ModelConfig, train: TrainConfig) -> TranslationModel:
    """The model `config.model` names, with its networks, optimisers and image pools (on the CPU)."""
    return model_class(config)(config, train)


def build_generators(config: ModelConfig) -> dict[str, nn.Module]:
    """The generators of the model `config.model` names, by checkpoint name (gen_ab, and gen_ba for CycleGAN)."""
    return model_class(config).generators_for(config)


__all__ = ["MODELS", "CycleGAN", "Pix2Pix", "TranslationModel", "build_generators", "build_model", "model_class"]
