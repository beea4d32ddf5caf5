"""The run folder: where a training run keeps its config, log, checkpoints, samples and report.

    RUN/config.yaml                 the resolved config
    RUN/log.jsonl                   one JSON record per iteration: epoch, iteration, step, time, lr, every loss
    RUN/checkpoints/latest.safetensors, epoch_0005.safetensors, ...
    RUN/samples/epoch_0001.png ...  fixed test images translated after each epoch
    RUN/losses.png, RUN/index.html  the loss curves and the report
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, config_to_yaml
from .atomic import atomic_write_text


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def log_file(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def latest_checkpoint(self) -> Path:
        return self.checkpoints / "latest.safetensors"

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch_{epoch:04d}.safetensors"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def sample_file(self, epoch: int) -> Path:
        return self.samples / f"epoch_{epoch:04d}.png"

    @property
    def translations(self) -> Path:
        return self.root / "translations"

    def create(self) -> None:
        for folder in (self.root, self.checkpoints, self.samples):
            folder.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: Config) -> None:
        atomic_write_text(self.config_file, config_to_yaml(config))

    def truncate_log(self, last_step: int) -> None:
        """Drop records after `last_step`: iterations a killed run did after its last checkpoint are redone."""
        if not self.log_file.exists():
            return
        kept = []
        for line in self.log_file.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= last_step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut off by a crash
        atomic_write_text(self.log_file, "".join(f"{line}\n" for line in kept))


class LogWriter:
    """Appends one JSON line per record and flushes it, so the log survives a crash up to the last iteration."""

    def __init__(self, path: Path) -> None:
        self._stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps(record) + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()
