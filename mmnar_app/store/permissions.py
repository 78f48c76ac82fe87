"""Files only the service's user can read: the data folder 0700; the database, its -wal/-shm and backups 0600.

Why: saved notes, inputs and password hashes are health data and secrets. SQLite creates -wal and -shm with
the database file's own mode, so creating the database 0600 (and a umask of 077 in every entry point) keeps
all three private. Existing files are not changed behind the owner's back: `permission_warnings` says which
are looser and how to fix them, and `open_store` logs that at start.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

PRIVATE_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
log = logging.getLogger("mmnar.store")


def restrict_umask() -> int:
    """Sets the process umask to 077 (files 0600, folders 0700 unless made otherwise); returns the old one.
    Called by the app and every command line entry point, before anything is written."""
    return os.umask(PRIVATE_UMASK)


def private_dir(directory: Path) -> None:
    """Creates `directory` (and missing parents) with mode 0700; an existing one is left as it is."""
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask; this is not


def private_file(path: Path) -> None:
    """Creates `path` empty with mode 0600 if it does not exist (never truncates one that does)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), PRIVATE_FILE_MODE))
    except FileExistsError:
        return
    os.chmod(path, PRIVATE_FILE_MODE)


def _looser(path: Path, wanted: int) -> str | None:
    try:
        mode = stat.S_IMODE(path.lstat().st_mode)
    except FileNotFoundError:
        return None
    if mode & 0o077 == 0:
        return None
    kind = "folder" if path.is_dir() else "file"
    return (
        f"{path}: the {kind} is mode {mode:04o}, readable by other users (expected {wanted:04o}); "
        f"fix with: chmod {wanted:o} {path}"
    )


def permission_warnings(database: Path) -> list[str]:
    """One line per looser-than-private path: the database's folder, the database and its side files."""
    paths = [(database.parent, PRIVATE_DIR_MODE), (database, PRIVATE_FILE_MODE)]
    paths += [(database.with_name(database.name + suffix), PRIVATE_FILE_MODE) for suffix in SQLITE_SIDE_FILES]
    return [w for w in (_looser(p, mode) for p, mode in paths) if w]


def warn_if_loose(database: Path) -> list[str]:
    """permission_warnings, each also logged as a warning (file paths only, no contents)."""
    warnings = permission_warnings(database)
    for line in warnings:
        log.warning("file permissions: %s", line)
    return warnings
