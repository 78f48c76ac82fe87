"""Persistence of assessments, uploaded files and the audit log (SQLite by default, PostgreSQL by URL).

One `Store` per process is enough and safe to share between threads: it holds only an engine (a
connection pool) and opens a new session for every call. Every write is one transaction; on SQLite
writes start with ``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout instead of failing.
The schema belongs to the Alembic migrations in ``migrations/``, run by `open_store`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from .assessment_chain import next_assessment_hashes
from .chain import FIELDS as CHAIN_FIELDS
from .chain import chain_values
from .models import AssessmentFile, AssessmentRow, AuditRow, Blob
from .permissions import private_dir, private_file, warn_if_loose

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEFAULT_DATA_DIR = "~/.local/share/mmnar"
SQLITE_FILENAME = "mmnar.sqlite3"
SQLITE_BUSY_TIMEOUT_S = 10.0
PG_CONNECT_TIMEOUT_S = 10
MAX_FILE_BYTES = 512 * 1024 * 1024  # per uploaded file; PostgreSQL bytea and SQLite blobs stop near 1 GB
_PG_MIGRATION_LOCK_KEY = 0x6D6D6E6172  # pg_advisory_xact_lock key serialising concurrent `open_store`s
_NAME_MAX = 255
_SEARCH_SEP = "\x1f"
_RETRY_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected: retry the transaction
_EXAMPLE_URLS = "sqlite:////abs/path/mmnar.sqlite3 or postgresql+psycopg://user:password@host:5432/dbname"

T = TypeVar("T")


class StoreError(ValueError):
    """Anything the caller should show the user: bad URL, unreachable or too-new database, bad input, unknown id."""


# -- results -----------------------------------------------------------------------------------------


@dataclass
class AssessmentSummary:
    id: int
    created_at: datetime  # timezone-aware, UTC
    user: str
    patient_label: str
    model_id: str
    model_version: str
    input_hash: str
    pattern: str
    summary: dict
    note: str


@dataclass
class StoredFile:
    role: str
    filename: str
    media_type: str
    sha256: str
    size: int
    data: bytes = field(repr=False)


@dataclass
class Assessment(AssessmentSummary):
    inputs: dict = field(repr=False)
    outputs: dict = field(repr=False)
    files: dict[str, StoredFile]


@dataclass
class AuditEntry:
    id: int
    at: datetime  # timezone-aware, UTC
    user: str
    action: str
    model_version: str
    input_hash: str
    assessment_id: int | None
    detail: str


# -- URLs ----------------------------------------------------------------------------------------------


def default_database_url(data_dir: str | Path | None = None) -> str:
    """``MMNAR_DATABASE_URL`` if set, else SQLite at ``<data_dir>/mmnar.sqlite3`` (directories created).

    data_dir: the argument, else ``MMNAR_DATA_DIR``, else ``~/.local/share/mmnar``.
    """
    env_url = os.environ.get("MMNAR_DATABASE_URL", "").strip()
    if env_url:
        return env_url
    base = data_dir if data_dir not in (None, "") else (os.environ.get("MMNAR_DATA_DIR") or DEFAULT_DATA_DIR)
    directory = Path(base).expanduser().absolute()
    _make_dir(directory)
    return f"sqlite:///{directory / SQLITE_FILENAME}"


def _make_dir(directory: Path) -> None:
    try:
        private_dir(directory)  # 0700 when created here
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {directory}: {exc.strerror or exc}") from exc


def _mask(url: str) -> str:
    return re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", url)


def _parse_url(url: str | URL) -> URL:
    if isinstance(url, URL):
        parsed = url
    else:
        if not isinstance(url, str) or not url.strip():
            raise StoreError(f"empty database URL: expected e.g. {_EXAMPLE_URLS}")
        try:
            parsed = make_url(url.strip())
        except ArgumentError:
            raise StoreError(f"invalid database URL {_mask(url)!r}: expected e.g. {_EXAMPLE_URLS}") from None
    backend = parsed.get_backend_name()
    shown = parsed.render_as_string(hide_password=True)
    if backend in ("postgresql", "postgres"):
        if parsed.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise StoreError(f"unsupported PostgreSQL driver in {shown!r}: use postgresql+psycopg://...")
        parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is what requirements.txt installs
        if not parsed.database:
            raise StoreError(f"database URL {shown!r} names no database: expected e.g. {_EXAMPLE_URLS}")
        return parsed
    if backend == "sqlite":
        if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise StoreError(f"unsupported SQLite driver in {shown!r}: use sqlite:///path")
        database = parsed.database or ""
        if database in ("", ":memory:") or "mode=memory" in database or parsed.query.get("mode") == "memory":
            raise StoreError(
                f"in-memory SQLite ({shown!r}) is not supported: everything would be lost on restart; "
                "give a file path, e.g. sqlite:////abs/path/mmnar.sqlite3"
            )
        if database.startswith("file:"):
            raise StoreError(f"SQLite URI file names ({shown!r}) are not supported: use sqlite:////abs/path/file")
        return parsed.set(database=str(Path(database).expanduser().absolute()))
    raise StoreError(f"unsupported database {backend!r} in {shown!r}: use SQLite or PostgreSQL ({_EXAMPLE_URLS})")


# -- engines -----------------------------------------------------------------------------------------


def _sqlite_engine(url: URL) -> Engine:
    _make_dir(Path(url.database).parent)
    try:  # created 0600 before SQLite opens it: its -wal and -shm files take the database's mode
        private_file(Path(url.database))
    except OSError as exc:
        raise StoreError(f"cannot create the database {url.database}: {exc.strerror or exc}") from exc
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}, hide_parameters=True
    )  # never echo patient data in error text
    busy_ms = int(SQLITE_BUSY_TIMEOUT_S * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # the driver's own implicit BEGINs off: `_on_begin` emits them
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cur.execute("PRAGMA foreign_keys = ON")
            _set_wal(cur)
            cur.execute("PRAGMA synchronous = FULL")  # a committed assessment survives a power cut too
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock up front (waiting up to busy_timeout) rather than failing with
        # "database is locked" when a read transaction tries to upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("mmnar_write") else "BEGIN")

    return engine


def _set_wal(cur) -> None:
    """Switch to WAL (persistent in the file, a no-op once done), retrying while another process holds a lock.

    Switching a new database into WAL needs an exclusive lock and can fail at once with "database is
    locked" (the busy handler is not consulted) when another process opens the same new file at the same
    moment: retry for up to the busy timeout. A database that cannot use WAL (e.g. a filesystem without
    shared memory) answers with its old mode and stays in it.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay = 0.002
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if not ("locked" in str(exc) or "busy" in str(exc)) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _pg_connect_args(url: URL) -> dict:
    args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    if "application_name" not in url.query:
        args["application_name"] = "mmnar-app"
    return args


def _pg_engine(url: URL) -> Engine:
    try:
        return create_engine(url, pool_pre_ping=True, connect_args=_pg_connect_args(url), hide_parameters=True)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreError(f"the PostgreSQL driver is not installed ({exc}): pip install 'psycopg[binary]'") from exc


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).strip().splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(orig).__name__


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", None), "sqlstate", None)


def _where(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database}"
    return (
        f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432} (database {url.database!r}, user {url.username!r})"
    )


def _connect_error(exc: BaseException, url: URL) -> StoreError:
    if url.get_backend_name() == "sqlite":
        message = _first_line(exc)
        if "locked" in message or "busy" in message:
            return StoreError(
                f"{_where(url)} stayed locked by another connection (waited up to "
                f"{SQLITE_BUSY_TIMEOUT_S:g} s): {message}"
            )
        return StoreError(f"cannot use {_where(url)}: {message}")
    state = _sqlstate(exc)
    if state in ("28P01", "28000"):
        return StoreError(f"{_where(url)} refused the login: {_first_line(exc)}")
    return StoreError(f"cannot reach {_where(url)}: {_first_line(exc)}")


def _create_pg_database(url: URL) -> None:
    admin = create_engine(
        url.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args=_pg_connect_args(url),
    )
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {admin.dialect.identifier_preparer.quote(url.database)}")
    except DBAPIError as exc:
        # another process created it just now: duplicate_database, or a unique violation on pg_database
        # when both CREATE DATABASE statements ran at the same moment
        if _sqlstate(exc) in ("42P04", "23505"):
            return
        raise StoreError(
            f"database {url.database!r} does not exist at {url.host or 'localhost'}:{url.port or 5432} "
            f"and could not be created ({_first_line(exc)}): create it first, e.g. "
            f"`createdb -h HOST -U USER {url.database}`"
        ) from exc
    finally:
        admin.dispose()


def _ensure_pg_database(engine: Engine, url: URL) -> None:
    try:
        with engine.connect():
            return
    except OperationalError as exc:
        missing = _sqlstate(exc) == "3D000" or (
            "does not exist" in _first_line(exc) and f'database "{url.database}"' in _first_line(exc)
        )
        if not missing:
            raise _connect_error(exc, url) from exc
    _create_pg_database(url)


# -- migrations --------------------------------------------------------------------------------------


def alembic_config(url: str | None = None):
    """The Alembic Config of the store, built in code (no alembic.ini); `url` only for Alembic's own CLI use."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url:
        cfg.set_main_option("sqlalchemy.url", str(url).replace("%", "%%"))
    return cfg


def schema_head() -> str:
    """The newest schema revision this code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _migrate(write_engine: Engine, url: URL) -> None:
    """`alembic upgrade head` in ONE write transaction, serialised against other processes doing the same."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    heads = set(script.get_heads())
    known = {rev.revision for rev in script.walk_revisions()}
    try:
        with write_engine.begin() as conn:  # BEGIN IMMEDIATE on SQLite: a second process waits here
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY})
            current = set(MigrationContext.configure(conn).get_current_heads())
            unknown = sorted(current - known)
            if unknown:
                raise StoreError(
                    f"{_where(url)} is at schema revision {', '.join(unknown)}, newer than this app knows "
                    f"(its newest is {', '.join(sorted(heads))}): upgrade the app "
                    "(a newer version of it wrote this database)"
                )
            if current != heads:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
    except StoreError:
        raise
    except OperationalError as exc:
        raise _connect_error(exc, url) from exc
    except SQLAlchemyError as exc:
        raise StoreError(
            f"migrating {_where(url)} to schema {', '.join(sorted(heads))} failed: {_first_line(exc)}"
        ) from exc


def open_store(url: str | None = None, data_dir: str | Path | None = None) -> Store:
    """Open (creating the database if needed and migrating it to the newest schema) the store at `url`.

    url: a SQLAlchemy URL; None -> `default_database_url(data_dir)`. ``postgresql://`` and ``postgres://``
    mean ``postgresql+psycopg://``. Safe to call from several processes at once.
    """
    parsed = _parse_url(url if url not in (None, "") else default_database_url(data_dir))
    engine = _sqlite_engine(parsed) if parsed.get_backend_name() == "sqlite" else _pg_engine(parsed)
    try:
        if engine.dialect.name == "postgresql":
            _ensure_pg_database(engine, parsed)
        _migrate(engine.execution_options(mmnar_write=True), parsed)
    except BaseException:
        engine.dispose()
        raise
    store = Store(engine, parsed)
    if store.backend == "sqlite":
        store.permission_warnings = warn_if_loose(Path(parsed.database))
    return store


# -- validation and encoding ---------------------------------------------------------------------------


def _text(name: str, value: Any, *, required: bool = False, max_len: int | None = None) -> str:
    if not isinstance(value, str):
        raise StoreError(f"{name} must be a str, got {type(value).__name__}")
    if required and not value.strip():
        raise StoreError(f"{name} must not be empty")
    if max_len is not None and len(value) > max_len:
        raise StoreError(f"{name} is longer than {max_len} characters")
    if "\x00" in value:
        raise StoreError(f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise StoreError(f"{name} is not valid Unicode text (lone surrogate)") from None
    return value


def _path_str(path) -> str:
    parts = []
    while path is not None:
        path, key = path
        parts.append(f"[{key!r}]")
    return "".join(reversed(parts))


def _check_json(name: str, value: Any) -> None:
    """Only values that come back equal from JSON: dict (str keys), list, str, int, float, bool, None."""
    if not isinstance(value, dict):
        raise StoreError(f"{name} must be a dict, got {type(value).__name__}")
    active: set[int] = set()

    def walk(v, path) -> None:
        if v is None or isinstance(v, (str, int, float)):  # bool is an int
            return
        if isinstance(v, (dict, list)):
            if id(v) in active:
                raise StoreError(f"{name}{_path_str(path)} contains itself (circular reference)")
            active.add(id(v))
            if isinstance(v, dict):
                for k, x in v.items():
                    if not isinstance(k, str):
                        raise StoreError(
                            f"{name}{_path_str(path)}: key {k!r} is a {type(k).__name__}; JSON keys "
                            "must be str (it would come back as a different key)"
                        )
                    walk(x, (path, k))
            else:
                for i, x in enumerate(v):
                    walk(x, (path, i))
            active.discard(id(v))
            return
        raise StoreError(
            f"{name}{_path_str(path)} is a {type(v).__name__}, not a JSON value: convert it "
            "(tuple -> list, numpy scalar -> float/int, bytes -> base64 str, set -> list)"
        )

    try:
        walk(value, None)
    except RecursionError:
        raise StoreError(f"{name} is nested too deeply") from None


def _dump_json(name: str, value: Any) -> str:
    _check_json(name, value)
    try:
        # ASCII output: exact for any str (even lone surrogates) and for every float (shortest repr, NaN/inf kept)
        return json.dumps(value, ensure_ascii=True, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:  # pragma: no cover - _check_json catches these first
        raise StoreError(f"{name} is not JSON-serialisable: {exc}") from exc


def _fold(value: str) -> str:
    return unicodedata.normalize("NFKC", value).casefold()


def _utc(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise StoreError(f"{name} must be a datetime, got {type(value).__name__}")
    return (value.replace(tzinfo=UTC) if value.tzinfo is None else value).astimezone(UTC)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StoreError(f"{name} must be an int >= 0, got {value!r}")
    return value


@dataclass
class _File:
    role: str
    filename: str
    media_type: str
    sha256: str
    data: bytes


def _prepare_files(files: Any) -> list[_File]:
    if files is None:
        return []
    if not isinstance(files, dict):
        raise StoreError(f"files must be a dict role -> (filename, media_type, bytes), got {type(files).__name__}")
    out = []
    for role, spec in files.items():
        _text("file role", role, required=True, max_len=_NAME_MAX)
        if not isinstance(spec, (tuple, list)) or len(spec) != 3:
            raise StoreError(f"files[{role!r}] must be (filename, media_type, bytes)")
        filename, media_type, data = spec
        _text(f"files[{role!r}] filename", filename)
        _text(f"files[{role!r}] media type", media_type, max_len=_NAME_MAX)
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise StoreError(f"files[{role!r}] content must be bytes, got {type(data).__name__}")
        if len(data) > MAX_FILE_BYTES:
            raise StoreError(
                f"files[{role!r}] is {len(data) / 2**20:.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit per file"
            )
        out.append(_File(role, filename, media_type, hashlib.sha256(data).hexdigest(), data))
    return out


def _now() -> datetime:
    return datetime.now(UTC)


# -- the store -----------------------------------------------------------------------------------------


class Store:
    """Assessments, content-addressed files and the append-only audit log. Thread-safe; see module doc."""

    def __init__(self, engine: Engine, url: URL):
        self._engine = engine
        self._url = url
        self.url: str = url.render_as_string(hide_password=True)
        self.backend: str = engine.dialect.name  # "sqlite" or "postgresql"
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(engine.execution_options(mmnar_write=True), expire_on_commit=False)
        self._closed = False
        self.permission_warnings: list[str] = []  # files others can read (checked by open_store)

    def __repr__(self) -> str:
        return f"Store(url={self.url!r})"

    __str__ = __repr__

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the connections. The store cannot be used afterwards (open a new one)."""
        self._closed = True
        self._engine.dispose()

    # -- plumbing ---------------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store {self.url} is closed")

    def _in_write(self, what: str, work: Callable[[Session], T]) -> T:
        """Run `work` in ONE write transaction (committed at the end, rolled back on any exception)."""
        self._check_open()
        for attempt in range(3):
            try:
                with self._write.begin() as session:
                    return work(session)
            except DBAPIError as exc:
                if _sqlstate(exc) in _RETRY_SQLSTATES and attempt < 2:
                    continue
                if isinstance(exc, OperationalError):
                    raise StoreError(f"could not {what}: {_connect_error(exc, self._url)}") from exc
                raise
        raise AssertionError("unreachable")

    def _in_read(self, work: Callable[[Session], T]) -> T:
        self._check_open()
        try:
            with self._read() as session, session.begin():
                return work(session)
        except OperationalError as exc:
            raise _connect_error(exc, self._url) from exc

    def _put_blobs(self, session: Session, files: list[_File], now: datetime) -> None:
        """Insert the blobs not stored yet (sorted by hash so concurrent savers cannot deadlock)."""
        unique = {f.sha256: f.data for f in files}
        if not unique:
            return
        present = set(session.scalars(select(Blob.sha256).where(Blob.sha256.in_(sorted(unique)))))
        if self.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        for sha in sorted(set(unique) - present):
            data = unique[sha]
            session.execute(
                insert(Blob)
                .values(sha256=sha, size=len(data), data=data, created_at=now)
                .on_conflict_do_nothing(index_elements=["sha256"])
            )

    def _write_audit(self, session: Session, entry: AuditRow) -> None:
        """Appends `entry`, linked to the entry before it (the hash chain, chain.py)."""
        values = {name: getattr(entry, name) for name in CHAIN_FIELDS}
        for name, value in chain_values(session, values).items():
            setattr(entry, name, value)
        session.add(entry)
        session.flush()

    # -- assessments ------------------------------------------------------------------------------------
    def save_assessment(
        self,
        *,
        user: str,
        patient_label: str,
        model_id: str,
        model_version: str,
        input_hash: str,
        inputs: dict,
        outputs: dict,
        files: dict[str, tuple[str, str, bytes]] | None = None,
        pattern: str = "",
        summary: dict | None = None,
        note: str = "",
    ) -> int:
        """Save one assessment with its files and an audit entry (action "save") in ONE transaction; its id."""
        self._check_open()
        _text("user", user, required=True, max_len=_NAME_MAX)
        _text("patient_label", patient_label)
        _text("model_id", model_id, max_len=_NAME_MAX)
        _text("model_version", model_version, max_len=_NAME_MAX)
        _text("input_hash", input_hash, max_len=_NAME_MAX)
        _text("pattern", pattern, max_len=_NAME_MAX)
        _text("note", note)
        inputs_json = _dump_json("inputs", inputs)
        outputs_raw = _dump_json("outputs", outputs).encode("ascii")
        summary_json = _dump_json("summary", {} if summary is None else summary)
        outputs_z = zlib.compress(outputs_raw, 6)
        prepared = _prepare_files(files)
        search_text = _fold(patient_label) + _SEARCH_SEP + _fold(note)
        detail = f"model_id={model_id}" + (f"; files={','.join(f.role for f in prepared)}" if prepared else "")

        def work(session: Session) -> int:
            now = _now()  # taken inside the transaction: on SQLite time order == id order
            self._put_blobs(session, prepared, now)
            columns = dict(
                created_at=now,
                username=user,
                patient_label=patient_label,
                model_id=model_id,
                model_version=model_version,
                input_hash=input_hash,
                pattern=pattern,
                note=note,
                summary_json=summary_json,
                inputs_json=inputs_json,
                outputs_size=len(outputs_raw),
            )
            links = [(f.role, f.filename, f.media_type, f.sha256) for f in prepared]
            row = AssessmentRow(
                **columns,
                search_text=search_text,
                outputs_zjson=outputs_z,
                **next_assessment_hashes(session, columns, outputs_raw, links),
            )
            session.add(row)
            session.flush()
            for f in prepared:
                session.add(
                    AssessmentFile(
                        assessment_id=row.id,
                        role=f.role,
                        filename=f.filename,
                        media_type=f.media_type,
                        blob_sha256=f.sha256,
                    )
                )
            session.flush()
            self._write_audit(
                session,
                AuditRow(
                    at=now,
                    username=user,
                    action="save",
                    model_version=model_version,
                    input_hash=input_hash,
                    assessment_id=row.id,
                    detail=detail,
                ),
            )
            return int(row.id)

        return self._in_write("save the assessment", work)

    def list_assessments(
        self,
        *,
        search: str | None = None,
        user: str | None = None,
        model_id: str | None = None,
        pattern: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[AssessmentSummary]:
        """Newest first. search: case-insensitive substring of patient_label or note; user, model_id, pattern:
        exact; since <= created_at < until (naive datetimes are taken as UTC)."""
        since, until = _utc("since", since), _utc("until", until)
        limit, offset = _count("limit", limit), _count("offset", offset)
        a = AssessmentRow
        stmt = select(
            a.id,
            a.created_at,
            a.username,
            a.patient_label,
            a.model_id,
            a.model_version,
            a.input_hash,
            a.pattern,
            a.summary_json,
            a.note,
        )
        if search is not None:
            term = _fold(_text("search", search))
            if term.strip():
                stmt = stmt.where(a.search_text.contains(term, autoescape=True))
        for column, value, name in (
            (a.username, user, "user"),
            (a.model_id, model_id, "model_id"),
            (a.pattern, pattern, "pattern"),
        ):
            if value is not None:
                stmt = stmt.where(column == _text(name, value))
        if since is not None:
            stmt = stmt.where(a.created_at >= since)
        if until is not None:
            stmt = stmt.where(a.created_at < until)
        stmt = stmt.order_by(a.created_at.desc(), a.id.desc()).limit(limit).offset(offset)
        rows = self._in_read(lambda s: s.execute(stmt).all())
        return [
            AssessmentSummary(
                id=int(r.id),
                created_at=r.created_at,
                user=r.username,
                patient_label=r.patient_label,
                model_id=r.model_id,
                model_version=r.model_version,
                input_hash=r.input_hash,
                pattern=r.pattern,
                summary=json.loads(r.summary_json),
                note=r.note,
            )
            for r in rows
        ]

    def get_assessment(self, assessment_id: int) -> Assessment:
        """The assessment exactly as saved, with its files' bytes (checked against their SHA-256)."""
        if isinstance(assessment_id, bool) or not isinstance(assessment_id, int):
            raise StoreError(f"assessment id must be an int, got {assessment_id!r}")

        def work(session: Session):
            row = session.get(AssessmentRow, assessment_id)
            if row is None:
                return None, []
            files = session.execute(
                select(
                    AssessmentFile.role,
                    AssessmentFile.filename,
                    AssessmentFile.media_type,
                    AssessmentFile.blob_sha256,
                    Blob.size,
                    Blob.data,
                )
                .join(Blob, Blob.sha256 == AssessmentFile.blob_sha256)
                .where(AssessmentFile.assessment_id == assessment_id)
                .order_by(AssessmentFile.role)
            ).all()
            return row, files

        row, file_rows = self._in_read(work)
        if row is None:
            raise StoreError(f"no assessment with id {assessment_id} in {self.url}")
        files: dict[str, StoredFile] = {}
        for f in file_rows:
            data = bytes(f.data)
            if hashlib.sha256(data).hexdigest() != f.blob_sha256 or len(data) != f.size:
                raise StoreError(
                    f"file {f.role!r} of assessment {assessment_id} is corrupted in the database "
                    f"(content does not match its SHA-256 {f.blob_sha256})"
                )
            files[f.role] = StoredFile(
                role=f.role,
                filename=f.filename,
                media_type=f.media_type,
                sha256=f.blob_sha256,
                size=len(data),
                data=data,
            )
        try:
            outputs = json.loads(zlib.decompress(bytes(row.outputs_zjson)))
        except (zlib.error, ValueError) as exc:
            raise StoreError(f"the outputs of assessment {assessment_id} are corrupted in the database: {exc}") from exc
        return Assessment(
            id=int(row.id),
            created_at=row.created_at,
            user=row.username,
            patient_label=row.patient_label,
            model_id=row.model_id,
            model_version=row.model_version,
            input_hash=row.input_hash,
            pattern=row.pattern,
            summary=json.loads(row.summary_json),
            note=row.note,
            inputs=json.loads(row.inputs_json),
            outputs=outputs,
            files=files,
        )

    def count_assessments(self) -> int:
        return int(self._in_read(lambda s: s.scalar(select(func.count()).select_from(AssessmentRow))))

    # -- audit log --------------------------------------------------------------------------------------
    def record(
        self,
        *,
        action: str,
        user: str,
        model_version: str = "",
        input_hash: str = "",
        assessment_id: int | None = None,
        detail: str = "",
    ) -> None:
        """Append one entry to the audit log (its own transaction)."""
        self._check_open()
        _text("action", action, required=True, max_len=_NAME_MAX)
        _text("user", user, required=True, max_len=_NAME_MAX)
        _text("model_version", model_version, max_len=_NAME_MAX)
        _text("input_hash", input_hash, max_len=_NAME_MAX)
        _text("detail", detail)
        if assessment_id is not None and (isinstance(assessment_id, bool) or not isinstance(assessment_id, int)):
            raise StoreError(f"assessment_id must be an int or None, got {assessment_id!r}")

        def work(session: Session) -> None:
            if (
                assessment_id is not None
                and session.scalar(select(AssessmentRow.id).where(AssessmentRow.id == assessment_id)) is None
            ):
                raise StoreError(f"no assessment with id {assessment_id} in {self.url}")
            self._write_audit(
                session,
                AuditRow(
                    at=_now(),
                    username=user,
                    action=action,
                    model_version=model_version,
                    input_hash=input_hash,
                    assessment_id=assessment_id,
                    detail=detail,
                ),
            )

        self._in_write("record the audit entry", work)

    def audit_log(self, *, limit: int = 500, user: str | None = None, action: str | None = None) -> list[AuditEntry]:
        """Newest first (append order)."""
        limit = _count("limit", limit)
        stmt = select(AuditRow)
        if user is not None:
            stmt = stmt.where(AuditRow.username == _text("user", user))
        if action is not None:
            stmt = stmt.where(AuditRow.action == _text("action", action))
        stmt = stmt.order_by(AuditRow.id.desc()).limit(limit)
        rows = self._in_read(lambda s: list(s.scalars(stmt)))
        return [
            AuditEntry(
                id=int(r.id),
                at=r.at,
                user=r.username,
                action=r.action,
                model_version=r.model_version,
                input_hash=r.input_hash,
                detail=r.detail,
                assessment_id=None if r.assessment_id is None else int(r.assessment_id),
            )
            for r in rows
        ]
