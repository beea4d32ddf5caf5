"""The run folder: where a training run keeps its config, log, checkpoints, samples and report.

    RUN/config.yaml                 the resolved config
    RUN/log.jsonl                   one JSON record per iteration: epoch, iteration, step, time, lr, every loss
    RUN/checkpoints/latest.safetensors, epoch_0005.safetensors, ...
    RUN/samples/epoch_0001.png ...  fixed test images translated after each epoch
    RUN/losses.png, RUN/index.html  the loss curves and the report
    RUN/scores.json                 scores of the finished model, shown in the report (`cyclegan demo` writes it)
    RUN/translations/index.html     a gallery of translated test images, linked from the report
    RUN/data/                       the built-in data set, where the run generated it
    RUN/.lock                       held by the one training process that writes the folder (see `RunLock`)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError
from ..config_files import config_to_yaml
from .atomic import atomic_write_text

_SAMPLE_NAME = re.compile(r"epoch_(\d+)")


class RunFolderBusy(ConfigError):
    """Another training process holds the run folder's lock."""


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

    def sample_files(self) -> list[tuple[int, Path]]:
        """The sample grids as (epoch, path), newest first (by number: epoch_10 precedes epoch_9)."""
        if not self.samples.is_dir():
            return []
        found = []
        for path in self.samples.glob("epoch_*.png"):
            match = _SAMPLE_NAME.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found, key=lambda item: (item[0], item[1].name), reverse=True)

    @property
    def losses_plot(self) -> Path:
        return self.root / "losses.png"

    @property
    def report_file(self) -> Path:
        return self.root / "index.html"

    @property
    def scores_file(self) -> Path:
        return self.root / "scores.json"

    @property
    def translations(self) -> Path:
        return self.root / "translations"

    @property
    def translations_page(self) -> Path:
        return self.translations / "index.html"

    @property
    def builtin_data(self) -> Path:
        return self.root / "data"

    def relative(self, path: Path) -> str:
        """`path` (inside the run folder) as the page-relative link the report uses: 'samples/epoch_0001.png'."""
        return path.relative_to(self.root).as_posix()

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def run_files(self) -> list[Path]:
        """What a training run has written here (not the built-in data set it may have put in data/)."""
        files = [self.config_file, self.log_file, self.losses_plot, self.report_file, self.scores_file]
        found = [path for path in files if path.exists()]
        for folder in (self.checkpoints, self.samples, self.translations):
            if folder.is_dir() and any(folder.iterdir()):
                found.append(folder)
        return found

    def clear(self) -> None:
        """Remove what a run has written (`run_files`), so that a new run starts afresh; anything else stays."""
        for path in self.run_files():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

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


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class RunLock:
    """The lock that lets one training process at a time write a run folder.

    The lock is an exclusive `flock` on RUN/.lock, which the kernel releases whenever the process ends, however it
    ends (kill -9 included): a lock left by a dead process is never in the way. The file records who holds it (PID,
    host, start time) for the message a second run gets. Where the file system has no flock (some network file
    systems answer ENOLCK), the record itself is the lock: free when empty, taken over only when it names a process
    of this host that no longer exists; a record from another host must be removed by hand.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._descriptor: int | None = None
        self._owns_record = False

    def _record(self) -> str:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})

    def _holder(self) -> str:
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["started"]))
            return f"process {record['pid']} on {record['host']} (since {started})"
        except (OSError, ValueError, KeyError, TypeError):
            return "another process"

    def _busy(self) -> RunFolderBusy:
        return RunFolderBusy(f"{self.path.parent} is in use by {self._holder()}: two trainings in one run folder "
                             "would corrupt it. Wait for that run to end (or stop it, and then --resume), or "
                             "choose another --run-dir")

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                raise self._busy() from None
            except OSError as error:
                if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(descriptor)
                    raise
                self._acquire_by_record(descriptor)
                return
            try:  # the holder before us may have removed the file while we waited: lock the one at the path
                same = os.fstat(descriptor).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(descriptor)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, self._record().encode())
        self._descriptor = descriptor

    def _acquire_by_record(self, descriptor: int) -> None:
        """The fallback without flock: the record is the lock, free when empty or when its process is gone."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
            if text and not self._stale(text):
                raise self._busy()
            os.ftruncate(descriptor, 0)
            os.write(descriptor, self._record().encode())
            self._owns_record = True
        finally:
            os.close(descriptor)

    @staticmethod
    def _stale(text: str) -> bool:
        try:
            record = json.loads(text)
            return record["host"] == socket.gethostname() and not _process_alive(int(record["pid"]))
        except (ValueError, KeyError, TypeError):
            return False  # unreadable: leave it to a person

    def release(self) -> None:
        if self._descriptor is not None:
            self.path.unlink(missing_ok=True)  # while still locked, so no other run's record is removed
            os.close(self._descriptor)
            self._descriptor = None
        elif self._owns_record:
            with contextlib.suppress(OSError, ValueError, KeyError):
                if json.loads(self.path.read_text(encoding="utf-8"))["pid"] == os.getpid():
                    self.path.unlink()
            self._owns_record = False

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()
