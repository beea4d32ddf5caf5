"""Careful downloads: resume, size and integrity checks, atomic placement, and safe zip extraction.

A download goes to `TARGET.part`; an interrupted one is resumed with an HTTP Range request; only a complete file that
passes its check is renamed to TARGET, so TARGET either does not exist or is whole. Archives are extracted into a
temporary sibling folder that is renamed into place at the end, so a data set folder is never half written.
"""

from __future__ import annotations

import difflib
import http.client
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

from ..progress import progress_bar

logger = logging.getLogger(__name__)

USER_AGENT = "cyclegan-downloader/1.0 (Python urllib)"
CHUNK_SIZE = 1 << 16
# A transfer slower than this is abandoned (the .part is kept for a resume): socket timeouts only catch silence, so a
# server that trickles a byte every few seconds would otherwise hold the download for ever.
STALL_SECONDS = 60.0
STALL_BYTES = 64 * 1024  # per STALL_SECONDS: about 1 KiB/s
# Errors that mean "the transfer stopped", as opposed to "the server said no" (HTTPError) or a bad file.
NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException)


class DownloadError(RuntimeError):
    """A download, check or extraction failed; the message names the file or URL and what to do next."""


class CorruptArchiveError(DownloadError):
    """An archive that is not a readable zip or whose contents fail their CRC check."""


class UnknownNameError(DownloadError):
    """A name that is not in a catalogue of official files (a model or a data set)."""


def cache_dir() -> Path:
    """Where downloads are kept: $CYCLEGAN_CACHE, else $XDG_CACHE_HOME/cyclegan, else ~/.cache/cyclegan."""
    if os.environ.get("CYCLEGAN_CACHE"):
        return Path(os.environ["CYCLEGAN_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "cyclegan"
    return Path.home() / ".cache" / "cyclegan"


def check_name(name: str, known: Iterable[str], kind: str, list_command: str) -> None:
    """Raise UnknownNameError for a name not in `known`, suggesting close matches and the command that lists all."""
    known = list(known)
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnknownNameError(f"unknown {kind} {name!r}; {hint}run `{list_command}` to see them all")


def _content_range_total(header: str | None) -> int | None:
    """The total size from 'bytes 100-199/1000' or 'bytes */1000'; None when absent or '*'."""
    match = re.fullmatch(r"\s*bytes\s+(?:\d+-\d+|\*)/(\d+)\s*", header or "")
    return int(match.group(1)) if match else None


def _content_range_start(header: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(?:\d+|\*)\s*", header or "")
    return int(match.group(1)) if match else None


def _copy(response: http.client.HTTPResponse, stream: IO[bytes], bar: Any, url: str, part: Path,
          stall_seconds: float, stall_bytes: int) -> None:
    """Copy the body of `response` to `stream`; raise DownloadError if fewer than `stall_bytes` arrive in any
    `stall_seconds`. read1 returns what has arrived, so the check runs however slowly the bytes come."""
    read = getattr(response, "read1", response.read)
    window_start, window_bytes = time.monotonic(), 0
    while chunk := read(CHUNK_SIZE):
        stream.write(chunk)
        bar.update(len(chunk))
        window_bytes += len(chunk)
        elapsed = time.monotonic() - window_start
        if elapsed >= stall_seconds:
            if window_bytes < stall_bytes:
                stream.flush()
                raise DownloadError(
                    f"the download of {url} stalled: {window_bytes} bytes in {elapsed:.0f} s (less than "
                    f"{stall_bytes} bytes in {stall_seconds:g} s); the partial file {part} is kept and running the "
                    "command again resumes it, or download the file by hand")
            window_start, window_bytes = time.monotonic(), 0


def _transfer(url: str, part: Path, show_progress: bool, timeout: float, stall_seconds: float = STALL_SECONDS,
              stall_bytes: int = STALL_BYTES) -> int | None:
    """Append the rest of `url` to `part` (or write it from the start); return the server's total size if known."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            # Nothing left to send: the .part already holds the whole file (or more); the size check decides.
            logger.debug("HTTP 416 on resume of %s at byte %d", url, offset)
            return _content_range_total(error.headers.get("Content-Range"))
        raise
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise DownloadError(f"{url}: the server resumed at byte {start}, not {offset}; the partial file was "
                                    "deleted; run the command again to start over")
            total = _content_range_total(response.headers.get("Content-Range"))
            if total is None and length is not None:
                total = offset + length
        else:
            if offset:
                logger.info("%s: the server does not support resuming; starting over", url)
                offset = 0
            total = length
        bar = progress_bar(total=total, initial=offset, description=part.name[: -len(".part")],
                           enabled=show_progress, unit="B")
        # The shared helper has no byte scaling option; tqdm reads these attributes when it draws.
        bar.unit_scale, bar.unit_divisor = True, 1024
        with bar, open(part, "ab" if offset else "wb") as stream:
            _copy(response, stream, bar, url, part, stall_seconds, stall_bytes)
            stream.flush()
            os.fsync(stream.fileno())
    return total


def _check_size(url: str, part: Path, total: int | None, expected_size: int | None) -> None:
    """Keep a short .part (a later call resumes it); delete one that is too long or of the wrong file."""
    size = part.stat().st_size
    if expected_size is not None and total is not None and total != expected_size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url} is {total} bytes but {expected_size} were expected: not the expected file; "
                            "the partial download was deleted (is the base URL right?)")
    wanted = expected_size if expected_size is not None else total
    if wanted is None:
        return
    if size < wanted:
        raise DownloadError(f"incomplete download of {url}: got {size} of {wanted} bytes; the partial file {part} "
                            "is kept and running the command again resumes it")
    if size > wanted:
        part.unlink(missing_ok=True)
        raise DownloadError(f"corrupt download of {url}: {size} bytes but {wanted} expected; the partial file was "
                            "deleted; run the command again")


def download(url: str, target: Path, expected_size: int | None = None, show_progress: bool = True,
             timeout: float = 30, validate: Callable[[Path], None] | None = None,
             stall_seconds: float = STALL_SECONDS, stall_bytes: int = STALL_BYTES) -> Path:
    """Fetch `url` to `target` unless it is already there; resumable, size-checked, validated, placed atomically.

    `validate(path)` inspects the finished download before it is placed and raises DownloadError or ValueError if
    the file is corrupt (the partial file is then deleted). `timeout` bounds each wait for the server (seconds of
    silence); a transfer that brings fewer than `stall_bytes` in any `stall_seconds` is abandoned, its partial file
    kept for a resume. Every failure raises DownloadError with what to do next.
    """
    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    if part.exists() and expected_size is not None and part.stat().st_size > expected_size:
        part.unlink()
    try:
        if part.exists() and expected_size is not None and part.stat().st_size == expected_size:
            total: int | None = expected_size  # finished earlier but never checked: skip the transfer
        else:
            total = _transfer(url, part, show_progress, timeout, stall_seconds, stall_bytes)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise DownloadError(f"HTTP 404 for {url}: no such model or data set at this address "
                                "(is the base URL right? see --base-url)") from error
        raise DownloadError(f"HTTP {error.code} ({error.reason}) for {url}; try again later, or download the file "
                            f"by hand and place it at {target}") from error
    except NETWORK_ERRORS as error:
        reason = getattr(error, "reason", None) or error
        kept = (f" The partial file {part} is kept; running the command again resumes it."
                if part.exists() and part.stat().st_size else "")
        raise DownloadError(f"could not reach {url}: {reason}. Check the network, or download the file by hand and "
                            f"place it at {target}.{kept}") from error
    _check_size(url, part, total, expected_size)
    if validate is not None:
        try:
            validate(part)
        except (DownloadError, ValueError) as error:
            part.unlink(missing_ok=True)
            raise DownloadError(f"corrupt download of {url}: {error}; the file was deleted; run the command "
                                "again") from error
    os.replace(part, target)  # same folder, so the rename is atomic
    logger.info("downloaded %s to %s", url, target)
    return target


def check_zip(archive: Path) -> None:
    """Raise DownloadError unless `archive` is a readable zip whose members all pass their CRC check."""
    try:
        with zipfile.ZipFile(archive) as opened:
            bad = opened.testzip()
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise CorruptArchiveError(f"corrupt archive {archive}: {error}") from error
    if bad is not None:
        raise CorruptArchiveError(f"corrupt archive {archive}: member {bad!r} fails its CRC check")


def _check_member(info: zipfile.ZipInfo) -> None:
    """Refuse a member that could land outside the extraction folder."""
    name = info.filename
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive or PurePosixPath(name).is_absolute():
        raise DownloadError(f"refusing archive member {name!r}: absolute path")
    if ".." in parts:
        raise DownloadError(f"refusing archive member {name!r}: '..' would leave the target folder")
    # Unix mode bits live in the top 16 bits; a data set has no reason to contain links.
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DownloadError(f"refusing archive member {name!r}: symbolic link")


def safe_extract_zip(archive: Path, destination: Path, validate: Callable[[Path], None] | None = None) -> Path:
    """Extract `archive` so that its contents become `destination`; all or nothing.

    Members are checked before anything is written (no absolute paths, drives, '..' or links). Extraction goes
    into a temporary sibling folder; if the archive holds a single top folder, that folder becomes `destination`.
    `validate(folder)` may inspect the extracted tree before it is moved into place. On any failure the temporary
    folder is removed. `destination` must not exist or be an empty folder.
    """
    archive, destination = Path(archive), Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise DownloadError(f"{destination} already exists and is not empty; remove it or choose another folder")
    try:
        opened = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise CorruptArchiveError(f"corrupt archive {archive}: {error}") from error
    destination.parent.mkdir(parents=True, exist_ok=True)
    with opened:
        members = opened.infolist()
        for info in members:
            _check_member(info)
        temporary = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".extracting",
                                          dir=destination.parent))
        try:
            root = temporary.resolve()
            for info in members:
                # Belt and braces after the name checks: the resolved path must stay inside the folder.
                if not (root / info.filename).resolve().is_relative_to(root):
                    raise DownloadError(f"refusing archive member {info.filename!r}: it would leave the folder")
            try:
                opened.extractall(temporary)
            except (zipfile.BadZipFile, zlib.error, EOFError) as error:
                raise CorruptArchiveError(f"corrupt archive {archive}: {error}") from error
            entries = list(temporary.iterdir())
            source = entries[0] if len(entries) == 1 and entries[0].is_dir() else temporary
            if validate is not None:
                validate(source)
            if destination.exists():
                destination.rmdir()  # empty, checked above
            os.replace(source, destination)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    logger.info("extracted %s to %s", archive, destination)
    return destination
