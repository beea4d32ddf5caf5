"""Atomic file writes: the one way every file that matters is written.

A write goes to a temporary file in the target's folder, is flushed to disk, and then renamed over the target, so a
crash or Ctrl-C in the middle never leaves a half-written file where a good one was. A write that fails (a full
disk, no permission, a file where a folder should be) raises WriteError naming the file and the reason, and leaves
what was there before. A process killed mid-write leaves its temporary file behind; `remove_stale_temporaries`
clears those.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

# Temporary names: ".NAME.XXXXXXXX.tmp", eight characters from tempfile.mkstemp's alphabet (which made them before).
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"
_NAMES = random.SystemRandom()  # not the global generator: seeded training must draw the same numbers
TEMPORARY_PATTERN = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")
# safetensors (0.8) writes a file through its own temporary beside the target, ".tmp" and six letters or digits,
# which a save killed mid-write leaves too, holding most of the data.
WRITER_TEMPORARY_PATTERN = re.compile(r"\.tmp[A-Za-z0-9]{6}")
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


class WriteError(OSError):
    """A file that cannot be written; the message names it, says why and what to do, and that the file that was
    there before (if any) is intact."""


def _errno_of(error: BaseException) -> int | None:
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno
    found = re.search(r"os error (\d+)", str(error))  # safetensors reports the OS error only in its text
    return int(found.group(1)) if found else None


def write_failure(path: str | Path, error: BaseException) -> WriteError:
    """The WriteError for a write of `path` that failed with `error` (an OSError or a library's I/O error)."""
    path = Path(path)
    code = _errno_of(error)
    reason = os.strerror(code) if code is not None else str(error)
    if code in (errno.EEXIST, errno.ENOTDIR):
        blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        reason = f"{blocking} is a file, not a folder" if blocking is not None else reason
    if code in _FULL:
        hint = "free space on that disk (or write somewhere else) and run the command again"
    elif code in _DENIED:
        hint = "check the folder's permissions, or write somewhere else"
    else:
        hint = "check the path and run the command again"
    kept = f"the previous {path.name} is intact" if path.is_file() else "nothing was written there"
    failure = WriteError(f"cannot write {path}: {reason}; {kept}; {hint}")
    failure.errno = code
    return failure


def _create_temporary(path: Path) -> Path:
    """A new empty file beside `path`, with the permissions open() would give it (0666 less the umask)."""
    for _ in range(100):
        suffix = "".join(_NAMES.choices(_ALPHABET, k=8))
        temporary = path.parent / f".{path.name}.{suffix}.tmp"
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temporary
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically, on error it is removed.

    An OSError while writing (in the caller's block, or in the flush and rename) becomes WriteError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = _create_temporary(path)
        mode = stat.S_IMODE(temporary.stat().st_mode)  # 0666 less the umask, as the kernel applied it
    except OSError as error:
        raise write_failure(path, error) from error
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            # A writer may have replaced the file with its own (safetensors writes a 0600 temporary and renames it).
            os.chmod(temporary, mode)
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except WriteError:
        raise
    except OSError as error:
        raise write_failure(path, error) from error
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a file for writing that appears at `path` only once it is complete."""
    binary = "b" in mode
    with atomic_path(path) as temporary, open(temporary, mode, encoding=None if binary else encoding) as stream:
        yield stream


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as stream:
        stream.write(text)


def remove_stale_temporaries(folder: str | Path, older_than: float = 60.0) -> list[Path]:
    """Delete the temporary files that `atomic_path` (and safetensors within it) left in `folder` and its
    subfolders when a process was killed mid-write: only regular files named exactly as they name them, and only
    those last modified over `older_than` seconds ago, so that a write still in progress is left alone. Returns
    what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    cutoff = time.time() - older_than
    removed = []
    for candidate in folder.rglob(".*"):
        named = TEMPORARY_PATTERN.fullmatch(candidate.name) or WRITER_TEMPORARY_PATTERN.fullmatch(candidate.name)
        if not named or candidate.is_symlink() or not candidate.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):  # a writer may have just renamed or removed it
            if candidate.stat().st_mtime < cutoff:
                candidate.unlink()
                removed.append(candidate)
    if removed:
        logger.info("removed %d temporary file(s) left by interrupted writes in %s", len(removed), folder)
    return removed
