"""Config files and records: reading a YAML, TOML or JSON file of options (not yet validated), and a `Config` as
the YAML of the run folder's config.yaml and the JSON inside every checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from .config import Config, ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # an unhashable key: SafeLoader refuses it below
            if first is not key_node.start_mark:
                again = key_node.start_mark
                where = (f"line {first.line + 1} and line {again.line + 1}" if first.line != again.line else
                         f"line {again.line + 1}, columns {first.column + 1} and {again.column + 1}")
                raise ConfigError(f"config file {again.name}: {key!r} is given twice ({where}); keep one")
        return super().construct_mapping(node, deep)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml), JSON or TOML (.toml) config file into a dict (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"config file {path}: use a .yaml, .yml, .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {error.start} cannot be decoded); save it "
                          "as UTF-8") from None
    try:
        if path.suffix == ".toml":
            values = tomllib.loads(text)
        else:
            loader = _UniqueKeyLoader(text)
            loader.name = str(path)  # named in the marks of errors
            try:
                values = loader.get_single_data() or {}
            finally:
                loader.dispose()
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config file {path} cannot be parsed: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of options")
    return values


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def config_to_json(config: Config) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)


def config_from_json(text: str) -> Config:
    return Config.from_dict(json.loads(text))
