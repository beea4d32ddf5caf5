"""A real `cyclegan serve` process on 127.0.0.1 for the server's tests (API, load, browser)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cyclegan.training.loop import train

from .helpers import tiny_config, tiny_dataset

# The first line `cyclegan serve` prints once it listens, and the last before it serves (cli/serve.py).
ADDRESS_LINE = re.compile(r"^cyclegan serve: (http://\S+/)")
READY_LINE = re.compile(r"^API: http://")


@dataclass
class RunningServer:
    """A started server: its base URL (ending in /), its process and what it printed so far."""

    url: str
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines)


def tiny_run(root: Path, seed: int = 0, **overrides) -> Path:
    """A trained (one tiny epoch) CycleGAN run folder of 32 px ResNet-6 generators of width 4."""
    torch.manual_seed(seed)
    options = {"n_epochs": 1, "n_epochs_decay": 0, "seed": seed, **overrides}
    run = root / "run"
    train(tiny_config(run, tiny_dataset(root / "data"), **options), show_progress=False)
    return run


@contextlib.contextmanager
def running_server(*args: str, env: dict[str, str] | None = None, timeout: float = 120.0
                   ) -> Iterator[RunningServer]:
    """`python -m cyclegan serve ARGS --port 0` until the block ends (then SIGTERM, and SIGKILL after 30 s)."""
    command = [sys.executable, "-m", "cyclegan", "serve", *args, "--port", "0", "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    lines: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read() -> None:  # keeps the pipe drained for the whole life of the process
        for line in process.stdout:
            lines.append(line)
            match = ADDRESS_LINE.match(line)
            if match and not url:
                url.append(match.group(1))
            if READY_LINE.match(line):
                found.set()
        found.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found.wait(0.1):
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"cyclegan serve printed no address in {timeout} s:\n{''.join(lines)}")
    if not url:
        process.wait(10)
        raise AssertionError(f"cyclegan serve exited ({process.returncode}) before listening:\n{''.join(lines)}")
    server = RunningServer(url[0], process, lines)
    try:
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
