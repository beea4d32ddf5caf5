"""Atomic file writes: the one way every file that matters is written.

A write goes to a temporary file in the target's folder, is flushed to disk, and then renamed over the target, so a
crash or Ctrl-C in the middle never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        with open(temporary_path, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary_path, path)
    finally:
        temporary_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a file for writing that appears at `path` only once it is complete."""
    binary = "b" in mode
    with atomic_path(path) as temporary, open(temporary, mode, encoding=None if binary else encoding) as stream:
        yield stream


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as stream:
        stream.write(text)


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Remove the temporary files `atomic_path` leaves when a write is killed midway (.NAME.*.tmp) from `folder`.
    Call it only where no write can be under way (e.g. in a run folder whose lock one holds). Returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [path for path in folder.glob(".*.tmp") if path.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
