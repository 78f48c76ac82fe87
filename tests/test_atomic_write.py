"""mmnar_core.atomic_write: the new content or the old, never half a file, and no temporary file left."""

import os
import stat

import pytest

from mmnar_core import atomic_write
from mmnar_core.atomic_write import atomic_path, write_bytes_atomic, write_text_atomic


def test_writes_the_content_and_leaves_only_the_file(tmp_path):
    path = tmp_path / "stats.json"
    assert write_text_atomic(path, '{"runs": 3}\n') == path
    assert path.read_bytes() == b'{"runs": 3}\n'
    write_bytes_atomic(path, b"\x00\xffnew")  # replaces an existing file
    assert path.read_bytes() == b"\x00\xffnew"
    write_text_atomic(path, "café")
    assert path.read_bytes() == b"caf\xc3\xa9"  # UTF-8
    assert os.listdir(tmp_path) == ["stats.json"]


def test_mode_is_that_of_a_new_file(tmp_path):
    secret = write_text_atomic(tmp_path / "tokens.json", "{}", mode=0o600)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    umask = os.umask(0)
    os.umask(umask)
    plain = write_text_atomic(tmp_path / "results.md", "| a |")
    assert stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_a_failed_replace_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_write.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["results.json"]


def test_a_writer_failing_midway_keeps_the_old_file(tmp_path):
    path = tmp_path / "backup.zip"
    path.write_bytes(b"old archive")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as partial:
            assert partial.parent == tmp_path and partial.name.startswith(".backup.zip.partial-")
            partial.write_bytes(b"half an arch")
            raise KeyboardInterrupt  # not only Exception: an interrupted write is cleaned up too
    assert path.read_bytes() == b"old archive" and os.listdir(tmp_path) == ["backup.zip"]


def test_a_bad_argument_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        write_bytes_atomic(tmp_path / "x.bin", "text, not bytes")
    assert os.listdir(tmp_path) == []
