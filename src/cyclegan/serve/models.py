"""The models a server holds: parsed from `NAME=SOURCE` arguments, loaded once into Translators, described to
clients without revealing the server's paths."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import ConfigError
from ..translate import Translator

PRETRAINED_PREFIX = "pretrained:"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ModelSpec:
    """One model argument: the name clients use, and what `cyclegan translate` would take as MODEL (or
    `pretrained:NAME` for an official pretrained model)."""

    name: str
    source: str

    @property
    def pretrained(self) -> str | None:
        return self.source[len(PRETRAINED_PREFIX):] if self.source.startswith(PRETRAINED_PREFIX) else None


def parse_model_spec(text: str) -> ModelSpec:
    """`zebra=runs/h2z` -> (zebra, runs/h2z); `runs/h2z` -> (h2z, runs/h2z); `pretrained:style_monet` ->
    (style_monet, ...). A path that itself holds `=` is taken whole when it exists."""
    name, sep, source = text.partition("=")
    if not sep or Path(text).exists() or not _NAME.fullmatch(name):
        source = text
        pretrained = text[len(PRETRAINED_PREFIX):] if text.startswith(PRETRAINED_PREFIX) else None
        path = Path(text)
        name = pretrained or (path.stem if path.suffix in (".safetensors", ".pth", ".onnx") else path.name)
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip("_.-")[:64] or "model"
    if not source:
        raise ConfigError(f"model {text!r} names no source; write NAME=SOURCE, e.g. zebra=runs/h2z or "
                          "monet=pretrained:style_monet")
    return ModelSpec(name, source)


def describe_source(spec: ModelSpec) -> str:
    """What a model was loaded from, in words, naming only the last part of a path (clients never see the
    server's folders)."""
    if spec.pretrained:
        return f"pretrained {spec.pretrained}"
    path = Path(spec.source)
    kinds = {".safetensors": "checkpoint", ".pth": "official weights", ".onnx": "ONNX file"}
    kind = kinds.get(path.suffix, "official checkpoint folder" if path.suffix == "" and
                     any(path.glob("latest_net_G_*.pth")) else "run folder")
    return f"{kind} {path.name}"


@dataclass
class ServedModel:
    """A loaded model and how clients see it."""

    name: str
    translator: Translator
    source: str

    @property
    def directions(self) -> list[str]:
        return list(self.translator.generators)

    @property
    def device(self) -> str:
        return str(self.translator.device)

    def default_direction(self) -> str:
        return "AtoB" if "AtoB" in self.translator.generators else self.directions[0]

    def describe(self) -> dict[str, object]:
        config = self.translator.config
        channels = {"AtoB": {"in": config.channels_a, "out": config.channels_b},
                    "BtoA": {"in": config.channels_b, "out": config.channels_a}}
        return {"name": self.name, "directions": self.directions,
                "channels": {direction: channels[direction] for direction in self.directions},
                "source": self.source, "engine": self.translator.engine, "device": self.device}


def load_models(specs: list[ModelSpec], device: str = "auto", engine: str = "auto", precision: str = "float32",
                base_url: str | None = None, show_progress: bool = False) -> dict[str, ServedModel]:
    """Load every model once (as `cyclegan translate` does), refusing two models of one name."""
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(f"two models are named {', '.join(twice)}; name them apart: NAME=SOURCE")
    models = {}
    for spec in specs:
        if spec.pretrained:
            translator = Translator.from_pretrained(spec.pretrained, base_url, device, show_progress=show_progress,
                                                    engine=engine)
        else:
            translator = Translator.load(spec.source, device, engine)
        translator.set_precision(precision)
        _warm_up(translator)
        models[spec.name] = ServedModel(spec.name, translator, describe_source(spec))
    return models


def _warm_up(translator: Translator) -> None:
    """Translate a small blank image each way, so that the first request does not pay for what happens once (an
    ONNX export on first use, kernel selection, allocator growth)."""
    for direction in translator.generators:
        channels = translator.source_channels(direction)
        translator.translate_tensor(torch.zeros(1, channels, 64, 64), direction)
