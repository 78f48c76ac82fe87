"""A throw-away PostgreSQL 15 server for the test session (no systemd, no root-owned cluster).

A fixture plugin (tests/conftest.py lists it in ``pytest_plugins``), so any test can ask for it::

    def test_x(postgres_url):  # "postgresql+psycopg://postgres@127.0.0.1:PORT/postgres"
        ...

The server is a process-wide singleton started by the first test that asks for it, so every test file
shares one server; it is stopped at the end of the session (and at interpreter exit as a safety net). It runs
initdb with ``--auth=trust`` in a temporary folder, listens on 127.0.0.1 on a free port and keeps its
unix socket in the same folder. When the tests run as root the server runs as the ``postgres`` user
through ``runuser``. Durability is switched off (fsync=off): this is for tests only.

Missing binaries fail the tests with the package to install; they are never skipped silently.
``MMNAR_TEST_PG_BIN`` points at another PostgreSQL bin folder if needed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("MMNAR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresUnavailable(RuntimeError):
    """The server could not be set up (binaries missing, initdb or start failed)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bin_dir: Path = PG_BIN):
        self.bin_dir = Path(bin_dir)
        self.root: Path | None = None
        self.port: int | None = None
        self._running = False

    # -- helpers -------------------------------------------------------------------------------
    def _prefix(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root but `runuser` (util-linux) is not available")
        return ["runuser", "-u", "postgres", "--"]

    def _run(self, args: list[str], what: str) -> None:
        proc = subprocess.run(self._prefix() + args, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = ""
            if self.root is not None and (self.root / "server.log").exists():
                log = (self.root / "server.log").read_text(errors="replace")[-2000:]
            raise PostgresUnavailable(
                f"{what} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}\n{log}"
            )

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> str:
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not (self.bin_dir / tool).is_file():
                raise PostgresUnavailable(
                    f"PostgreSQL 15 server binaries not found ({self.bin_dir / tool} is missing): install the "
                    "`postgresql-15` package (apt-get install postgresql-15) or set MMNAR_TEST_PG_BIN"
                )
        owner = None
        if os.geteuid() == 0:
            import pwd

            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable(
                    "running as root needs the `postgres` system user (created by the postgresql-15 package)"
                ) from exc
        self.root = Path(tempfile.mkdtemp(prefix="mmnar-pg-"))
        self.root.chmod(0o755)  # the postgres user must reach its data folder inside
        data, sock = self.root / "data", self.root / "sock"
        for d in (data, sock):
            d.mkdir(mode=0o700)
            if owner is not None:
                os.chown(d, owner.pw_uid, owner.pw_gid)
        log = self.root / "server.log"
        log.touch()
        if owner is not None:
            os.chown(log, owner.pw_uid, owner.pw_gid)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(data),
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        last: Exception | None = None
        for _ in range(3):  # the free port can be taken between probe and bind: retry on another
            self.port = _free_port()
            opts = (
                f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
            )
            try:
                self._run(
                    [
                        str(self.bin_dir / "pg_ctl"),
                        "-D",
                        str(data),
                        "-l",
                        str(log),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        opts,
                        "start",
                    ],
                    "pg_ctl start",
                )
            except PostgresUnavailable as exc:
                last = exc
                continue
            self._running = True
            return self.url()
        raise PostgresUnavailable(f"PostgreSQL did not start: {last}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.root is None:
            return
        if self._running:
            self._running = False
            try:
                self._run(
                    [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"],
                    "pg_ctl stop",
                )
            except (PostgresUnavailable, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


_lock = threading.Lock()
_server: PostgresServer | None = None
_error: str | None = None


def get_server() -> PostgresServer:
    """Start the shared server on first use (raises PostgresUnavailable, remembered for later calls)."""
    global _server, _error
    with _lock:
        if _error is not None:
            raise PostgresUnavailable(_error)
        if _server is None:
            server = PostgresServer()
            try:
                server.start()
            except BaseException as exc:
                server.stop()
                _error = str(exc)
                raise
            _server = server
            atexit.register(stop_server)
        return _server


def stop_server() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.stop()
            _server = None


@pytest.fixture(scope="session")
def postgres_server():
    """The running PostgresServer; fails (never skips) when PostgreSQL cannot be started."""
    try:
        server = get_server()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    stop_server()


@pytest.fixture(scope="session")
def postgres_url(postgres_server) -> str:
    """URL of the maintenance database `postgres` as superuser `postgres` (trust auth, any password)."""
    return postgres_server.url()
