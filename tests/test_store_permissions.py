"""Files only the service can read (issue 18, item 5): data folder 0700; database, -wal/-shm and backups
0600 whatever the umask; looser existing files warned about at start; the CLI entry points set umask 077."""

import logging
import os
import stat
import subprocess
import sys

import pytest

from mmnar_app.store import open_store
from mmnar_app.store.backup import export_archive

from support.paths import ROOT


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def open_umask():
    """The usual umask 022 (files 0644 unless made otherwise), restored afterwards."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_database_folder_and_files_are_private_under_an_open_umask(tmp_path, open_umask, monkeypatch):
    monkeypatch.delenv("MMNAR_DATABASE_URL", raising=False)
    data = tmp_path / "data"
    with open_store(None, data_dir=data) as store:
        db = data / "mmnar.sqlite3"
        side = [p for p in (data / "mmnar.sqlite3-wal", data / "mmnar.sqlite3-shm") if p.exists()]
        assert side, "the store is open in WAL mode: its -wal file exists"
        assert mode(data) == 0o700 and mode(db) == 0o600, (oct(mode(data)), oct(mode(db)))
        assert all(mode(p) == 0o600 for p in side), [(p.name, oct(mode(p))) for p in side]
        assert store.permission_warnings == []
        export_archive(store, tmp_path / "backup.zip")
    assert mode(tmp_path / "backup.zip") == 0o600


def test_looser_existing_files_are_warned_about_at_start(tmp_path, open_umask, caplog, monkeypatch):
    monkeypatch.delenv("MMNAR_DATABASE_URL", raising=False)
    data = tmp_path / "data"
    open_store(None, data_dir=data).close()
    os.chmod(data, 0o755)
    os.chmod(data / "mmnar.sqlite3", 0o644)
    with caplog.at_level(logging.WARNING), open_store(None, data_dir=data) as store:
        warnings = store.permission_warnings
    assert any(f"{data}: the folder is mode 0755" in w and f"chmod 700 {data}" in w for w in warnings), warnings
    assert any("mmnar.sqlite3: the file is mode 0644" in w for w in warnings), warnings
    assert sum("file permissions" in r.getMessage() for r in caplog.records) == len(warnings)
    assert mode(data) == 0o755  # warned about, not changed behind the owner's back


def test_backup_command_sets_a_private_umask(tmp_path):
    out = tmp_path / "cli-backup.zip"
    env = dict(os.environ)
    env.pop("MMNAR_DATABASE_URL", None)
    result = subprocess.run(
        f"umask 022 && {sys.executable} -m mmnar_app.store.backup export --out {out} "
        f"--data-dir {tmp_path / 'cli-data'}",
        shell=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert mode(out) == 0o600 and mode(tmp_path / "cli-data" / "mmnar.sqlite3") == 0o600
