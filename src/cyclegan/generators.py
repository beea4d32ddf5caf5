"""The generators of a model and its networks' config, built and loaded: all that translation needs.

Translation imports this module, never `models/`: loading a model to translate must not load the training code
(optimisers, image pools, losses, distributed wrappers). Each model's generators are named as in its checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import NetworksConfig
from .io.checkpoints import CheckpointError, check_network_state, describe_networks
from .model_registry import model_entry
from .nets.generators import build_generator
from .nets.layers import init_weights


def build_generators(model: str, networks: NetworksConfig) -> dict[str, nn.Module]:
    """The generators of the registered `model` with `networks`, initialised, by checkpoint name (gen_ab, gen_ba):
    image-to-image networks, or what the entry's `generator_builder` builds (CoGAN's latent searches)."""
    entry = model_entry(model)
    builder = entry.load_generator_builder()
    if builder is not None:
        built = builder(networks)
        expected = [name for name, _, _ in entry.generators]
        if sorted(built) != sorted(expected):
            raise ValueError(f"model {model!r}: its generator_builder built {sorted(built)}, its entry names "
                             f"{sorted(expected)}")
        return built
    n, channels = networks, {"a": networks.channels_a, "b": networks.channels_b}
    generators = {name: build_generator(n.gen_arch, channels[source], channels[target], n.ngf, n.norm, n.dropout)
                  for name, source, target in entry.generators}
    # All built, then all initialised: the order in which they draw from the seeded generator since the start.
    return {name: init_weights(generator, n.init_type, n.init_gain) for name, generator in generators.items()}


def load_generators(model: str, networks: NetworksConfig, nets: Any, source: str | Path) -> dict[str, nn.Module]:
    """The generators of `model` with `networks` holding the weights `nets` (a checkpoint's "nets" state, read from
    `source`), after checking that every tensor is there with the shape `networks` gives (CheckpointError if not)."""
    with torch.device("meta"):  # no time spent initialising weights that the file replaces at once
        generators = build_generators(model, networks)
    check_network_state(source, generators, nets, f"model={model}, {describe_networks(networks)}")
    for name, generator in generators.items():
        generator.load_state_dict(nets[name], assign=True)
        if any(tensor.is_meta for tensor in [*generator.parameters(), *generator.buffers()]):
            raise CheckpointError(f"{source}: {name} has tensors the file does not hold")
    return generators
