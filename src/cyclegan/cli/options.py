"""Command-line options generated from the config dataclasses, so every option has one definition and one help."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from ..config import SECTIONS, field_choices, field_types


def _base_type(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (`--lambda-a`, also `--lambda_a`), defaulting to "not given"."""
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{section} options")
        hints = field_types(cls)
        for spec in dataclasses.fields(cls):
            base = _base_type(hints[spec.name])
            flags = [f"--{spec.name.replace('_', '-')}"]
            if "_" in spec.name:
                flags.append(f"--{spec.name}")
            default = spec.default if spec.default is not dataclasses.MISSING else None
            help_text = f"{spec.metadata['help']} (default: {default})"
            common = {"dest": f"{section}.{spec.name}", "default": argparse.SUPPRESS, "help": help_text}
            if base is bool:
                group.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
            else:
                choices = field_choices(spec)
                group.add_argument(*flags, type=base, choices=choices, metavar=spec.name.upper(), **common)


def given_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config options the person actually typed, as {'model': {...}, 'data': {...}, 'train': {...}}."""
    given: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for key, value in vars(args).items():
        section, _, name = key.partition(".")
        if section in SECTIONS and name:
            given[section][name] = value
    return {section: values for section, values in given.items() if values}
