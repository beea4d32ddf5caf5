"""Engines: what runs a generator for the Translator. One engine per direction, called with an NCHW float32 batch
in [-1, 1] whose sides the Translator has padded to the engine's `size_multiple` (and at least its `min_size`).

- torch: the generator (nn.Module) itself.
- onnxruntime: an ONNX file run by onnxruntime's CPU execution provider with all graph optimisations
  (ORT_ENABLE_ALL) and as many intra-op threads as PyTorch uses (torch.get_num_threads(), which the CLI sets).
  A .onnx file we exported says in its metadata which direction it translates and what it needs; for any other
  model the generator is exported on first use and kept in the cache (`io.exported.cached_onnx`).

`auto` (the default) picks the fastest engine that stays within one 8-bit step of exact PyTorch, as measured by
benchmarks/translate_speed.py: onnxruntime where it is installed and translation runs on a CPU with AVX-512 (1.25x
the official per-image loop at 256 px and 1.7x at 512 on our AVX-512 EPYC, against 1.08x and 1.14x for the torch
engine), else torch (GPUs; and CPUs without AVX-512, where the torch engine's NNPACK convolutions are its fast path
and onnxruntime was not measured). $CYCLEGAN_ENGINE (torch or onnxruntime) sets what `auto` means. A generator
that is not one fixed network (CoGAN's latent search, `exportable`) runs on torch only; `auto` picks torch for it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from .config import DIRECTIONS, ConfigError, NetworksConfig
from .io.checkpoints import CheckpointError
from .io.download import cache_dir
from .io.exported import INSTALL_HINT, cached_onnx, generator_metadata
from .nets.convolutions import wide_vectors
from .runtime import select_device

logger = logging.getLogger(__name__)

ENGINES = ("torch", "onnxruntime", "auto")
DEFAULT_ENGINE = "auto"
ENGINE_VARIABLE = "CYCLEGAN_ENGINE"  # what `auto` means, when set


class Engine(Protocol):
    """A generator as the Translator calls it."""

    size_multiple: int
    min_size: int

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


def exportable(net: object) -> bool:
    """Whether `net` is one fixed network that ONNX, torch.export, onnxruntime and tiled translation can take. A
    generator that is an optimisation instead (CoGAN's latent search, nets/cogan.py) sets `exportable = False`."""
    return bool(getattr(net, "exportable", True))


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:
        raise ConfigError(f"the onnxruntime engine needs the package onnxruntime ({error}); {INSTALL_HINT}"
                          ) from None
    return onnxruntime


def onnxruntime_available() -> bool:
    try:
        _onnxruntime()
    except ConfigError:
        return False
    return True


def choose_engine(engine: str, device: str | torch.device) -> tuple[str, torch.device]:
    """`engine` checked, `auto` resolved (module docstring), and the device it runs on (`runtime.select_device`).
    onnxruntime runs on the CPU: device auto means the CPU for it, and any other device is refused."""
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "onnxruntime":
        _onnxruntime()
        target = select_device("cpu" if str(device) == "auto" else device)
        if target.type != "cpu":
            raise ConfigError(f"the onnxruntime engine runs on the CPU, not on {target}; use --device cpu, or the "
                              "torch engine for the GPU")
        return engine, target
    if engine == "auto":
        chosen = os.environ.get(ENGINE_VARIABLE, "").strip()
        if chosen:
            if chosen not in ("torch", "onnxruntime"):
                raise ConfigError(f"${ENGINE_VARIABLE}={chosen!r}; set it to torch or onnxruntime, or unset it")
            return choose_engine(chosen, device)
        target = select_device(device)
        fastest = target.type == "cpu" and wide_vectors() and onnxruntime_available()
        return ("onnxruntime" if fastest else "torch"), target
    return engine, select_device(device)


class OnnxRuntimeEngine:
    """An exported generator (ONNX) run by onnxruntime; its metadata gives the direction, channels and sizes."""

    def __init__(self, path: str | Path) -> None:
        ort = _onnxruntime()
        self.path = Path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own types for a missing, damaged or foreign file
            raise CheckpointError(f"{self.path} cannot be loaded as an ONNX model ({error}); give a file that "
                                  "`cyclegan export --format onnx` wrote") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.input_name = self.session.get_inputs()[0].name
        self.direction, self.channels_in, self.channels_out, self.size_multiple, self.min_size = _checked(
            self.path, self.metadata)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        array = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        (output,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(output).to(batch.device)

    def networks_config(self) -> NetworksConfig:
        """The networks of the model this generator came from (its metadata's `config`; a file exported before
        the networks had a config of their own also holds the model's loss weights there, which are left out)."""
        try:
            config = NetworksConfig.from_dict(json.loads(self.metadata["config"]))
        except (KeyError, ValueError, TypeError) as error:  # ConfigError and JSONDecodeError are ValueErrors
            raise CheckpointError(f"{self.path}: its metadata's config cannot be used ({error}); export the model "
                                  "again with `cyclegan export --format onnx`") from None
        expected = (config.channels_a, config.channels_b)
        if self.direction == "BtoA":
            expected = expected[::-1]
        if expected != (self.channels_in, self.channels_out):
            raise CheckpointError(f"{self.path}: its metadata's channels ({self.channels_in} in, "
                                  f"{self.channels_out} out) contradict its config; export the model again")
        return config


def _checked(path: Path, metadata: dict[str, str]) -> tuple[str, int, int, int, int]:
    """direction, channels in and out, size multiple and min size from an ONNX file's metadata, checked."""
    missing = [key for key in ("direction", "channels_in", "channels_out", "size_multiple", "min_size", "config")
               if key not in metadata]
    if missing:
        raise CheckpointError(f"{path} lacks the metadata cyclegan needs ({', '.join(missing)}): it was not "
                              "written by `cyclegan export --format onnx`; export the model with it")
    direction = metadata["direction"]
    if direction not in DIRECTIONS:
        raise CheckpointError(f"{path}: its metadata gives direction={direction!r}, not AtoB or BtoA; export the "
                              "model again")
    numbers = []
    for key in ("channels_in", "channels_out", "size_multiple", "min_size"):
        value = metadata[key]
        if not value.isdigit() or int(value) < 1 or (key.startswith("channels") and int(value) not in (1, 3)):
            raise CheckpointError(f"{path}: its metadata gives {key}={value!r}; export the model again")
        numbers.append(int(value))
    return direction, numbers[0], numbers[1], numbers[2], numbers[3]


class ExportingEngine:
    """The onnxruntime engine for one of our torch generators: exported into the cache (or found there) on the
    first call, so a direction that is never used is never exported."""

    def __init__(self, net: nn.Module, config: NetworksConfig, direction: str, cache: Path | None = None) -> None:
        self.net = net
        self.metadata = generator_metadata(net, config, direction)
        self.size_multiple, self.min_size = net.size_multiple, net.min_size
        self.cache = cache
        self.engine: OnnxRuntimeEngine | None = None

    def ready(self) -> OnnxRuntimeEngine:
        """The onnxruntime engine, exported or taken from the cache now if it is not yet."""
        if self.engine is None:
            folder = (self.cache if self.cache is not None else cache_dir()) / "onnx"
            self.engine = OnnxRuntimeEngine(cached_onnx(self.net, self.metadata, folder))
            self.net = None  # the session holds its own copy of the weights
        return self.engine

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.ready()(batch)


def engines_for(generators: dict[str, nn.Module], config: NetworksConfig, engine: str) -> dict[str, Engine]:
    """The engines, by direction, that run `generators` (torch generators by direction) with `engine` (resolved:
    torch or onnxruntime)."""
    if engine == "torch":
        return dict(generators)
    fixed = [net for net in generators.values() if not exportable(net)]
    if fixed:
        raise ConfigError(f"the {engine} engine runs an exported graph, and this model's generators "
                          f"({type(fixed[0]).__name__}) are an optimisation per image, which no graph holds; use "
                          "--engine torch (or auto)")
    return {direction: ExportingEngine(net, config, direction) if isinstance(net, nn.Module) else net
            for direction, net in generators.items()}
