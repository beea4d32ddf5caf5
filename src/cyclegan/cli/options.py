"""Command-line options generated from the config dataclasses, so every option has one definition and one help:
the networks, data and training sections, and each registered model's options (`model_registry`)."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from ..config import DEFAULT_MODEL, SECTIONS, field_choices, field_types, model_defaults, option_sections
from ..model_registry import model_entry, model_names

OPTIONS = "options"  # the argparse dest prefix of the models' options, which are resolved once the model is known


def _base_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def _model_help() -> str:
    described = []
    for name in model_names():
        entry = model_entry(name)
        defaults = ", ".join(f"{key} {value}" for key, value in model_defaults(name).items())
        described.append(f"{name} ({entry.summary}{'; its defaults: ' + defaults if defaults else ''})")
    return ("Model to train: " + "; ".join(described) + ". Options the person does not set take the model's "
            f"defaults. (default: {DEFAULT_MODEL})")


def _add_field(group: argparse._ArgumentGroup, spec: dataclasses.Field, hint: Any, dest: str, default_text: str
               ) -> None:
    base = _base_type(hint)
    flags = [f"--{spec.name.replace('_', '-')}"] + ([f"--{spec.name}"] if "_" in spec.name else [])
    common = {"dest": dest, "default": argparse.SUPPRESS, "help": f"{spec.metadata['help']} ({default_text})"}
    if base is bool:
        group.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
    else:
        group.add_argument(*flags, type=base, choices=field_choices(spec), metavar=spec.name.upper(), **common)


def _default_text(spec: dataclasses.Field) -> str:
    return f"default: {spec.default if spec.default is not dataclasses.MISSING else None}"


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """`--model`, and one flag per config field (`--lambda-a`, also `--lambda_a`), defaulting to "not given"."""
    parser.add_argument("--model", choices=model_names(), default=argparse.SUPPRESS, help=_model_help())
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} options")
        hints = field_types(cls)
        for spec in dataclasses.fields(cls):
            _add_field(group, spec, hints[spec.name], f"{section}.{spec.name}", _default_text(spec))
    sections = option_sections()
    added: set[str] = set()
    for model, cls in sections.items():
        specs = dataclasses.fields(cls)
        shared = [spec.name for spec in specs if spec.name in added]
        group = parser.add_argument_group(
            f"{model} options (--model {model})", f"Also {', '.join(shared)}, above." if shared else None)
        hints = field_types(cls)
        for spec in specs:
            if spec.name in added:
                continue
            added.add(spec.name)
            defaults = {name: field.default for name, other in sections.items()
                        for field in dataclasses.fields(other) if field.name == spec.name}
            text = (_default_text(spec) if len({repr(value) for value in defaults.values()}) == 1 else
                    "default: " + ", ".join(f"{value} for {name}" for name, value in defaults.items()))
            _add_field(group, spec, hints[spec.name], f"{OPTIONS}.{spec.name}", text)


def given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The config options the person actually typed: {'model': name} if given, {'networks': {...}, 'data': {...},
    'train': {...}}, and the models' options by name (flat: which model they belong to is known only once the
    config file has been read too)."""
    given: dict[str, Any] = {section: {} for section in SECTIONS}
    for key, value in vars(args).items():
        section, _, name = key.partition(".")
        if section in SECTIONS and name:
            given[section][name] = value
        elif section == OPTIONS and name:
            given[name] = value
    given = {key: value for key, value in given.items() if value != {}}
    if "model" in vars(args):
        given["model"] = args.model
    return given
