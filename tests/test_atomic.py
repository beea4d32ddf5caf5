"""Atomic writes: a failed write names the file and keeps the old one; permissions follow the umask; the temporary
files of interrupted writes are cleared."""

import errno
import os
import re
import time

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from cyclegan.cli.main import USER_ERRORS
from cyclegan.config import Config
from cyclegan.io import atomic, checkpoints, official
from cyclegan.io.atomic import (
    WriteError,
    atomic_open,
    atomic_path,
    atomic_write_text,
    remove_stale_temporaries,
)
from cyclegan.io.checkpoints import load_checkpoint, save_checkpoint
from cyclegan.io.official import save_official


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _safetensors_disk_full(tensors, filename, metadata=None):
    # safetensors 0.8's words for a failed write, with the OS error it saw
    raise SafetensorError(f'Error while serializing: I/O error: No space left on device (os error 28) at path '
                          f'"{filename}"')


@pytest.mark.parametrize("writer", [_disk_full, _safetensors_disk_full])
def test_a_full_disk_during_a_checkpoint_save_is_a_clear_error_and_the_previous_one_is_intact(tmp_path, monkeypatch,
                                                                                              writer):
    path = tmp_path / "checkpoints" / "latest.safetensors"
    save_checkpoint(path, Config(), {"w": torch.ones(3)})
    monkeypatch.setattr(checkpoints, "save_file", writer)
    with pytest.raises(WriteError) as raised:
        save_checkpoint(path, Config(), {"w": torch.zeros(3)})
    assert str(raised.value) == (f"cannot write {path}: No space left on device; the previous latest.safetensors "
                                 "is intact; free space on that disk (or write somewhere else) and run the command "
                                 "again")
    assert raised.value.errno == errno.ENOSPC and isinstance(raised.value, USER_ERRORS)
    assert torch.equal(load_checkpoint(path)[1]["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["latest.safetensors"]  # the temporary file is removed


def test_a_real_safetensors_io_error_is_read_for_its_reason(tmp_path, monkeypatch):
    """safetensors gives the OS error only in its text; a real one (a folder that vanished) is understood."""
    def into_a_missing_folder(tensors, filename, metadata=None):
        save_file(tensors, str(tmp_path / "gone" / "x.safetensors"), metadata=metadata)

    monkeypatch.setattr(checkpoints, "save_file", into_a_missing_folder)
    with pytest.raises(WriteError, match=rf"^cannot write {tmp_path / 'new.safetensors'}: No such file or "
                                         "directory; nothing was written there; check the path"):
        save_checkpoint(tmp_path / "new.safetensors", Config(), {"w": torch.ones(3)})
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_an_official_export_or_a_text_write(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "good")
    with pytest.raises(WriteError, match=rf"^cannot write {target}: No space left on device; the previous a.txt is "
                                         "intact"), atomic_open(target) as stream:
        stream.write("new")
        _disk_full()
    assert target.read_text() == "good" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]

    def zip_writer_fails(obj, f):  # how torch's zip writer reports a full disk
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: file write failed")

    monkeypatch.setattr(official.torch, "save", zip_writer_fails)
    with pytest.raises(WriteError, match=r"latest_net_G_A.pth: \[enforce fail.*file write failed; nothing was "):
        save_official({"gen_ab": {"w": torch.ones(1)}}, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_file_where_a_folder_should_be_is_named(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(WriteError, match=rf"^cannot write {tmp_path / 'taken' / 'sub' / 'f.txt'}: "
                                         rf"{tmp_path / 'taken'} is a file, not a folder; nothing was written"):
        atomic_write_text(tmp_path / "taken" / "sub" / "f.txt", "text")


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_permissions_of_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        save_checkpoint(tmp_path / "c.safetensors", Config(), {"w": torch.ones(1)})
        with open(tmp_path / "reference", "w"):  # what open() gives
            pass
    finally:
        os.umask(previous)
    for name in ("a.txt", "c.safetensors", "reference"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    old = time.time() - 3600
    stale = [run / ".config.yaml.ab12cd_9.tmp", run / "checkpoints" / ".latest.safetensors.q1w2e3r4.tmp",
             run / "checkpoints" / ".tmpl5y5BZ"]
    kept = [run / "config.yaml", run / "checkpoints" / "latest.safetensors",
            run / ".config.yaml.short.tmp", run / "notes.ab12cd_9.tmp", run / ".x.ABCDEFGH.tmp",
            run / ".config.yaml.ab12cd_9.tmp.bak", run / ".tmp12345", run / ".tmp_23456", run / ".gitignore"]
    for path in stale + kept:
        path.write_text("x")
        os.utime(path, (old, old))
    fresh = run / ".log.jsonl.zzzzzzzz.tmp"  # a write in progress: too recent to touch
    fresh.write_text("x")
    (run / ".dir.abcdefgh.tmp").mkdir()
    link = run / ".link.abcdefgh.tmp"
    link.symlink_to(run / "config.yaml")
    assert sorted(remove_stale_temporaries(run)) == sorted(stale)
    assert all(path.exists() for path in [*kept, fresh, run / ".dir.abcdefgh.tmp"]) and link.is_symlink()
    assert not any(path.exists() for path in stale)
    assert remove_stale_temporaries(run / "missing") == []


def test_the_pattern_of_safetensors_own_temporary_file(tmp_path):
    """safetensors writes through a temporary file of its own; its error for a vanished folder names it."""
    with pytest.raises(SafetensorError) as raised:
        save_file({"w": torch.ones(1)}, str(tmp_path / "gone" / "c.safetensors"))
    name = re.search(r'at path "([^"]+)"', str(raised.value)).group(1).rsplit("/", 1)[-1]
    assert atomic.WRITER_TEMPORARY_PATTERN.fullmatch(name), name


def test_the_pattern_matches_what_atomic_path_makes(tmp_path, monkeypatch):
    names = []
    for _ in range(20):
        with atomic_path(tmp_path / "latest.safetensors") as temporary:
            names.append(temporary.name)
            temporary.write_text("x")
    assert all(atomic.TEMPORARY_PATTERN.fullmatch(name) for name in names) and len(set(names)) == 20
    # killed mid-write: the temporary file stays; once it is old it goes
    monkeypatch.setattr(atomic.os, "replace", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    monkeypatch.setattr(atomic.Path, "unlink", lambda self, missing_ok=False: None)
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "latest.safetensors") as temporary:
        temporary.write_text("half")
    monkeypatch.undo()
    assert temporary.exists()
    assert remove_stale_temporaries(tmp_path, older_than=-1) == [temporary]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.safetensors"]
