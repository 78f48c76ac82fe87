"""Backups of the store: every assessment, uploaded file and audit entry in one checked archive.

::

    python -m mmnar_app.store.backup export --out backup.zip [--database-url URL | --data-dir DIR]
    python -m mmnar_app.store.backup verify backup.zip
    python -m mmnar_app.store.backup import backup.zip [--database-url URL | --data-dir DIR]

The archive is a ZIP file (format "mmnar-store-backup", version 1; layout in docs/storage.md):

  manifest.json                 format, schema revision, counts, last ids, and the size and SHA-256 of every
                                other entry
  README.txt                    what this file is
  assessments/<id>.json         one per assessment: its columns, summary/inputs/outputs as JSON, file links
  blobs.jsonl                   one line per stored file content: sha256, size, created_at
  blobs/<sha256>                the bytes (their SHA-256 is their name)
  audit_log.jsonl               the audit log, one entry per line, in id (= append) order
  tables/<name>.jsonl           every other table of the schema (e.g. users), one row per line, by key

An export reads one consistent snapshot (a single read transaction; REPEATABLE READ on PostgreSQL) and
writes the archive atomically. An import first checks every entry against the manifest, then inserts
everything with the original ids and timestamps in ONE write transaction into an EMPTY database (a
non-empty one is refused; any failure rolls back and leaves it unchanged) and advances the id counters
to where the source stood. It only INSERTs: the append-only triggers of the audit log stay in force.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
import zipfile
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Table,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from mmnar_core.arg_types import positive
from mmnar_core.atomic_write import atomic_path

from .archive_limits import ArchiveLimits, BackupError, InflationBudget, check_entry_count, check_headers
from .chain import chain_values
from .core import Store, StoreError, _dump_json, _fold, _text, open_store, schema_head
from .models import AssessmentFile, AssessmentRow, AuditRow, Base, Blob, UTCDateTime

FORMAT = "mmnar-store-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
README = "README.txt"
BLOBS_INDEX = "blobs.jsonl"
AUDIT = "audit_log.jsonl"
_ASSESSMENT_RE = re.compile(r"assessments/(\d{12,19})\.json")
_BLOB_RE = re.compile(r"blobs/([0-9a-f]{64})")
_TABLE_RE = re.compile(r"tables/([a-z_][a-z0-9_]*)\.jsonl")
_CHUNK = 1 << 20
_AUDIT_BATCH = 1000
CORE_TABLES = ("blobs", "assessments", "assessment_files", "audit_log")

README_TEXT = """\
Backup of an mmnar clinician-app store (format mmnar-store-backup, version 1).

manifest.json lists every other entry with its size and SHA-256, the schema revision and the counts.
assessments/<id>.json holds one assessment (inputs, outputs and summary as JSON; NaN and Infinity are
written as Python's json module writes them), blobs/<sha256> the uploaded files, blobs.jsonl their
metadata and audit_log.jsonl the audit log in append order.

Restore into an empty database with:
    python -m mmnar_app.store.backup import THIS_FILE --database-url URL
See docs/storage.md ("Durability and backups").
"""


# -- helpers -------------------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    if value.tzinfo is None:  # the store hands out aware UTC datetimes; be safe anyway
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _chain_hash(where: str, value: Any) -> str | None:
    """A hash of the audit or assessment chain as written (verify reports a wrong one; restoring never
    rewrites it)."""
    if value is None or (isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value)):
        return value
    raise BackupError(f"{where}: expected 64 lowercase hex digits or null, got {str(value)[:80]!r}")


def _parse_time(where: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise BackupError(f"{where}: timestamp must be an ISO 8601 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BackupError(f"{where}: invalid timestamp {value!r}") from None
    if parsed.tzinfo is None:
        raise BackupError(f"{where}: timestamp {value!r} has no time zone")
    return parsed.astimezone(UTC)


def _int(where: str, value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BackupError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _sqlstr(where: str, value: Any, *, max_len: int | None = None, required: bool = False) -> str:
    try:
        return _text(where, value, max_len=max_len, required=required)
    except StoreError as exc:
        raise BackupError(str(exc)) from None


def _assessment_name(aid: int) -> str:
    return f"assessments/{aid:012d}.json"


class _HashingWriter:
    """Write one zip entry while counting its size and SHA-256."""

    def __init__(self, archive: zipfile.ZipFile, name: str, entries: dict, compress: bool = True):
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        self._handle = archive.open(info, "w", force_zip64=True)
        self._digest = hashlib.sha256()
        self._size = 0
        self._name = name
        self._entries = entries

    def write(self, data: bytes) -> None:
        self._digest.update(data)
        self._size += len(data)
        self._handle.write(data)

    def close(self) -> None:
        self._handle.close()
        self._entries[self._name] = {"size": self._size, "sha256": self._digest.hexdigest()}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


EPHEMERAL_TABLES = ("sign_in_backoff",)  # short-lived security state (backoff.py): not part of a backup


def _tables(conn: Connection) -> list[Table]:
    """Every table of the database but alembic_version and the ephemeral ones, in dependency order; refuses
    tables this app does not know."""
    present = set(inspect(conn).get_table_names()) - {"alembic_version", *EPHEMERAL_TABLES}
    unknown = sorted(present - set(Base.metadata.tables))
    if unknown:
        raise BackupError(
            f"the database has table {unknown[0]!r}, which this version of the app does not know: "
            "back it up with the app version that created it"
        )
    return [t for t in Base.metadata.sorted_tables if t.name in present]


def _id_column(table: Table) -> Column | None:
    pk = list(table.primary_key.columns)
    return pk[0] if len(pk) == 1 and isinstance(pk[0].type, Integer) else None


def _sequence(conn: Connection, table: Table) -> str | None:
    """PostgreSQL: the sequence of the table's id; SQLite: the table itself if it is AUTOINCREMENT; else None."""
    column = _id_column(table)
    if column is None:
        return None
    if conn.dialect.name == "postgresql":
        return conn.execute(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}).scalar()
    sql = (
        conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table.name}
        ).scalar()
        or ""
    )
    return table.name if "AUTOINCREMENT" in sql.upper() else None


def _last_ids(conn: Connection, tables: list[Table]) -> dict[str, int]:
    """The last id handed out per table with an id counter (>= its largest id: PostgreSQL sequences also
    count rolled-back saves, so a restored database goes on numbering where the source would have)."""
    out = {}
    for table in tables:
        seq = _sequence(conn, table)
        if seq is None:
            continue
        column = _id_column(table)
        largest = conn.execute(select(func.coalesce(func.max(column), 0))).scalar_one()
        if conn.dialect.name == "postgresql":
            last, called = conn.execute(text(f"SELECT last_value, is_called FROM {seq}")).one()
            used = int(last) if called else int(last) - 1
        else:
            used = conn.execute(text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": seq}).scalar() or 0
        out[table.name] = max(int(largest), int(used))
    return out


def _set_last_ids(conn: Connection, tables: list[Table], last_ids: dict[str, int]) -> None:
    for table in tables:
        seq = _sequence(conn, table)
        last = last_ids.get(table.name, 0)
        if seq is None or last <= 0:
            continue
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(CAST(:s AS regclass), :n, true)"), {"s": seq, "n": last})
            continue
        if conn.execute(text("SELECT COUNT(*) FROM sqlite_sequence WHERE name = :t"), {"t": seq}).scalar():
            conn.execute(
                text("UPDATE sqlite_sequence SET seq = :n WHERE name = :t AND seq < :n"), {"n": last, "t": seq}
            )
        else:
            conn.execute(text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :n)"), {"t": seq, "n": last})


def _counts(conn: Connection, tables: list[Table]) -> dict[str, int]:
    return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one()) for t in tables}


# Other tables (users, ...) are written generically, one JSON object per row, each column by its type.
def _kind(table: Table, column: Column) -> str:
    kind = column.type
    for cls, name in (
        (UTCDateTime, "datetime"),
        (DateTime, "datetime"),
        (LargeBinary, "bytes"),
        (Boolean, "bool"),
        (Integer, "int"),
        (Float, "float"),
        (String, "str"),
    ):
        if isinstance(kind, cls):
            return name
    raise BackupError(f"column {table.name}.{column.name} has type {kind!r}, which backups do not handle yet")


def _encode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "datetime":
        return _iso(value)
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return int(value)
    return value


def _decode(where: str, kind: str, value: Any) -> Any:
    if value is None:
        return None
    ok = {"datetime": str, "bytes": str, "bool": bool, "int": int, "float": (int, float), "str": str}[kind]
    if not isinstance(value, ok) or (kind == "int" and isinstance(value, bool)):
        raise BackupError(f"{where}: expected a {kind}, got {value!r}")
    if kind == "datetime":
        return _parse_time(where, value)
    if kind == "bytes":
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            raise BackupError(f"{where}: invalid base64") from None
    if kind == "str":
        return _sqlstr(where, value)
    return value


def _table_entry(name: str) -> str:
    return f"tables/{name}.jsonl"


# -- export --------------------------------------------------------------------------------------------


def export_archive(store: Store, out: str | Path, *, overwrite: bool = False) -> dict:
    """Write every assessment, file and audit entry of `store` to the archive `out`; returns the manifest
    (plus ``archive_sha256``). The archive appears only when complete (written beside it, then renamed)."""
    store._check_open()
    out = Path(out).expanduser().absolute()
    if out.exists() and not overwrite:
        raise BackupError(f"{out} already exists: choose another --out (or pass --overwrite)")
    if not out.parent.is_dir():
        raise BackupError(f"the folder of {out} does not exist")
    with atomic_path(out, 0o600) as partial:  # a backup holds every note and input: only its owner reads it
        manifest = _write_archive(store, partial)
    digest = hashlib.sha256()
    with open(out, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return {**manifest, "archive": str(out), "archive_sha256": digest.hexdigest()}


def _write_archive(store: Store, path: Path) -> dict:
    engine = store._engine
    entries: dict[str, dict] = {}
    conn = engine.connect()
    try:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin(), zipfile.ZipFile(path, "w", allowZip64=True) as archive:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SET TRANSACTION READ ONLY"))
            # the first read fixes the snapshot (SQLite WAL: the read transaction starts here)
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            tables = _tables(conn)
            counts = _counts(conn, tables)
            last_ids = _last_ids(conn, tables)
            with _HashingWriter(archive, README, entries) as w:
                w.write(README_TEXT.encode())

            a = AssessmentRow.__table__.c
            ids = conn.execute(select(a.id).order_by(a.id)).scalars().all()
            f = AssessmentFile.__table__.c
            for aid in ids:
                row = conn.execute(select(AssessmentRow.__table__).where(a.id == aid)).one()
                links = conn.execute(
                    select(f.role, f.filename, f.media_type, f.blob_sha256)
                    .where(f.assessment_id == aid)
                    .order_by(f.role)
                ).all()
                try:
                    outputs_text = zlib.decompress(bytes(row.outputs_zjson)).decode("ascii")
                except (zlib.error, UnicodeDecodeError) as exc:
                    raise BackupError(
                        f"the outputs of assessment {aid} are corrupted in the database ({exc}); nothing was exported"
                    ) from exc
                head = {
                    "id": int(row.id),
                    "created_at": _iso(row.created_at),
                    "user": row.username,
                    "patient_label": row.patient_label,
                    "model_id": row.model_id,
                    "model_version": row.model_version,
                    "input_hash": row.input_hash,
                    "pattern": row.pattern,
                    "note": row.note,
                    "outputs_size": int(row.outputs_size),
                    "prev_hash": row.prev_hash,
                    "entry_hash": row.entry_hash,
                    "files": [
                        {"role": x.role, "filename": x.filename, "media_type": x.media_type, "sha256": x.blob_sha256}
                        for x in links
                    ],
                }
                # the stored JSON texts go in verbatim: no re-encoding on the way out
                document = (
                    json.dumps(head, ensure_ascii=True)[:-1]
                    + ', "summary": '
                    + row.summary_json
                    + ', "inputs": '
                    + row.inputs_json
                    + ', "outputs": '
                    + outputs_text
                    + "}\n"
                )
                with _HashingWriter(archive, _assessment_name(int(aid)), entries) as w:
                    w.write(document.encode("utf-8"))

            b = Blob.__table__.c
            blobs = conn.execute(select(b.sha256, b.size, b.created_at).order_by(b.sha256)).all()
            with _HashingWriter(archive, BLOBS_INDEX, entries) as w:
                for blob in blobs:
                    w.write(
                        (
                            json.dumps(
                                {"sha256": blob.sha256, "size": int(blob.size), "created_at": _iso(blob.created_at)}
                            )
                            + "\n"
                        ).encode()
                    )
            for blob in blobs:
                data = bytes(conn.execute(select(b.data).where(b.sha256 == blob.sha256)).scalar_one())
                if hashlib.sha256(data).hexdigest() != blob.sha256 or len(data) != blob.size:
                    raise BackupError(
                        f"blob {blob.sha256} is corrupted in the database (its bytes do not match "
                        "its SHA-256); nothing was exported"
                    )
                with _HashingWriter(archive, f"blobs/{blob.sha256}", entries, compress=False) as w:
                    w.write(data)

            u = AuditRow.__table__.c
            with _HashingWriter(archive, AUDIT, entries) as w:
                for row in conn.execute(select(AuditRow.__table__).order_by(u.id)):
                    w.write(
                        (
                            json.dumps(
                                {
                                    "id": int(row.id),
                                    "at": _iso(row.at),
                                    "user": row.username,
                                    "action": row.action,
                                    "model_version": row.model_version,
                                    "input_hash": row.input_hash,
                                    "assessment_id": None if row.assessment_id is None else int(row.assessment_id),
                                    "detail": row.detail,
                                    "prev_hash": row.prev_hash,
                                    "entry_hash": row.entry_hash,
                                },
                                ensure_ascii=True,
                            )
                            + "\n"
                        ).encode("ascii")
                    )

            others = {}
            for table in tables:
                if table.name in CORE_TABLES:
                    continue
                kinds = {c.name: _kind(table, c) for c in table.columns}
                others[table.name] = {"columns": kinds}
                order = list(table.primary_key.columns) or list(table.columns)
                with _HashingWriter(archive, _table_entry(table.name), entries) as w:
                    for row in conn.execute(select(table).order_by(*order)).mappings():
                        w.write(
                            (
                                json.dumps({c: _encode(k, row[c]) for c, k in kinds.items()}, ensure_ascii=True) + "\n"
                            ).encode("ascii")
                        )

            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "created_at": _iso(datetime.now(UTC)),
                "source": {"backend": engine.dialect.name, "url": store.url},
                "schema_revision": revision[0] if len(revision) == 1 else revision,
                "counts": counts,
                "last_ids": last_ids,
                "tables": others,
                "entries": dict(sorted(entries.items())),
            }
            info = zipfile.ZipInfo(MANIFEST, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, json.dumps(manifest, indent=1) + "\n")
    finally:
        conn.close()
    return manifest


# -- reading and checking an archive ------------------------------------------------------------------


class _Archive:
    """An opened archive whose manifest was read; `read(name)` returns an entry checked against it."""

    def __init__(self, path: str | Path, limits: ArchiveLimits | None = None):
        self.path = Path(path).expanduser().absolute()
        if not self.path.is_file():
            raise BackupError(f"{self.path}: no such backup file")
        limits = limits or ArchiveLimits()
        try:
            check_entry_count(self.path, limits)
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise BackupError(f"{self.path}: not a readable backup archive ({exc})") from None
        self.budget = InflationBudget(self.path, limits)
        try:
            check_headers(self.path, self.zip.infolist(), limits)
            self.manifest = self._read_manifest()
        except BaseException:
            self.zip.close()
            raise

    def close(self) -> None:
        self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _info(self, name: str) -> zipfile.ZipInfo:
        try:
            return self.zip.getinfo(name)
        except KeyError:
            raise BackupError(f"{self.path}: entry {name} is missing from the archive") from None

    def _raw(self, name: str) -> bytes:
        return self.budget.read(self.zip, self._info(name))

    def _read_manifest(self) -> dict:
        try:
            manifest = json.loads(self._raw(MANIFEST))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BackupError(f"{self.path}: {MANIFEST} is not valid JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BackupError(f"{self.path}: not an mmnar store backup ({MANIFEST} does not say format {FORMAT!r})")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise BackupError(
                f"{self.path}: backup format version {manifest.get('format_version')!r}; this app "
                f"reads version {FORMAT_VERSION} (upgrade the app to read newer backups)"
            )
        entries = manifest.get("entries")
        if not isinstance(entries, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("size"), int)
            for v in entries.values()
        ):
            raise BackupError(f"{self.path}: {MANIFEST} has no valid list of entries")
        for key in ("counts", "last_ids", "tables"):
            if not isinstance(manifest.get(key), dict):
                raise BackupError(f"{self.path}: {MANIFEST} has no {key!r}")
        names = {i.filename for i in self.zip.infolist()}  # duplicates were refused by check_headers
        unexpected = sorted(set(names) - set(entries) - {MANIFEST})
        if unexpected:
            raise BackupError(f"{self.path}: entry {unexpected[0]} is not listed in {MANIFEST} (tampered archive?)")
        missing = sorted(set(entries) - set(names))
        if missing:
            raise BackupError(f"{self.path}: entry {missing[0]} is listed in {MANIFEST} but missing from the archive")
        for name in entries:
            if (
                name not in (README, BLOBS_INDEX, AUDIT)
                and not _ASSESSMENT_RE.fullmatch(name)
                and not _BLOB_RE.fullmatch(name)
                and not _TABLE_RE.fullmatch(name)
            ):
                raise BackupError(f"{self.path}: unexpected entry {name} in {MANIFEST}")
        return manifest

    def _check(self, name: str, size: int, digest: str) -> None:
        expected = self.manifest["entries"][name]
        if size != expected["size"] or digest != expected["sha256"]:
            raise BackupError(
                f"{self.path}: checksum mismatch for entry {name}: SHA-256 {digest} ({size} bytes), "
                f"the manifest says {expected['sha256']} ({expected['size']} bytes); the archive "
                "is corrupted or was changed; nothing was imported"
            )

    def verify_entry(self, name: str) -> None:
        digest, size = hashlib.sha256(), 0
        for block in self.budget.chunks(self.zip, self._info(name)):
            digest.update(block)
            size += len(block)
        self._check(name, size, digest.hexdigest())

    def read(self, name: str) -> bytes:
        data = self._raw(name)
        self._check(name, len(data), hashlib.sha256(data).hexdigest())
        return data

    def lines(self, name: str) -> Iterator[tuple[int, Any]]:
        for number, line in enumerate(self.read(name).decode("utf-8").splitlines(), 1):
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                raise BackupError(f"{self.path}: {name} line {number} is not valid JSON ({exc})") from None

    def verify_all(self) -> None:
        for name in sorted(self.manifest["entries"]):
            self.verify_entry(name)


def verify_archive(path: str | Path, *, limits: ArchiveLimits | None = None) -> dict:
    """Check every entry of the archive against its manifest (within `limits`); returns the manifest."""
    with _Archive(path, limits) as archive:
        archive.verify_all()
        return archive.manifest


# -- import --------------------------------------------------------------------------------------------


def import_archive(
    store: Store, path: str | Path, *, record_as: str | None = None, limits: ArchiveLimits | None = None
) -> dict:
    """Restore the archive into `store`, which must be empty, in ONE transaction; returns the counts.

    record_as: if given, also append an audit entry ``action="restore"`` by this user after the restored log.
    limits: entry count and inflated sizes (ArchiveLimits' defaults), checked before anything is imported.
    """
    store._check_open()
    if record_as is not None:
        _sqlstr("record_as", record_as, max_len=255, required=True)
    with _Archive(path, limits) as archive:
        manifest = archive.manifest
        revision = manifest.get("schema_revision")
        head = schema_head()
        if revision != head:
            raise BackupError(
                f"{archive.path}: written at schema revision {revision!r}, this app is at {head!r}: "
                "restore it with the app version that wrote it"
            )
        archive.verify_all()  # nothing touches the database until every entry matches the manifest

        try:
            with store._write.begin() as session:
                conn = session.connection()
                tables = _tables(conn)
                if conn.dialect.name == "postgresql":  # no save can slip in while we check and fill
                    conn.execute(text("LOCK TABLE " + ", ".join(t.name for t in tables) + " IN EXCLUSIVE MODE"))
                present = _counts(conn, tables)
                if any(present.values()):
                    raise BackupError(
                        f"the target database {store.url} is not empty ("
                        + ", ".join(f"{n} {t}" for t, n in present.items() if n)
                        + "): import only into an empty database"
                    )
                counts = _restore(conn, archive)
                for table in tables:
                    if table.name not in CORE_TABLES:
                        counts[table.name] = _restore_table(conn, archive, table)
                expected = manifest["counts"]
                if counts != expected:
                    raise BackupError(
                        f"{archive.path}: the archive holds {counts}, its manifest says {expected}; "
                        "nothing was imported"
                    )
                last_ids = {t: _int(f"{MANIFEST} last_ids[{t!r}]", n) for t, n in manifest["last_ids"].items()}
                _set_last_ids(conn, tables, last_ids)
                if record_as is not None:
                    entry = {
                        "at": datetime.now(UTC),
                        "username": record_as,
                        "action": "restore",
                        "model_version": "",
                        "input_hash": "",
                        "assessment_id": None,
                        "detail": f"restored {counts['assessments']} assessments, {counts['audit_log']} audit "
                        f"entries from {archive.path.name}",
                    }
                    conn.execute(insert(AuditRow.__table__).values(**entry, **chain_values(conn, entry)))
        except SQLAlchemyError as exc:
            raise BackupError(
                f"restoring {archive.path} into {store.url} failed and was rolled back: "
                f"{str(getattr(exc, 'orig', None) or exc).strip().splitlines()[0]}"
            ) from exc
    return {"archive": str(Path(path).expanduser().absolute()), "target": store.url, **counts}


def _restore_table(conn: Connection, archive: _Archive, table: Table) -> int:
    """Rows of a table other than the four core ones (e.g. users), written generically by column type."""
    name = _table_entry(table.name)
    described = archive.manifest["tables"].get(table.name)
    if described is None or name not in archive.manifest["entries"]:
        raise BackupError(
            f"{archive.path}: the archive has no {name} (schema {archive.manifest.get('schema_revision')!r} "
            f"has table {table.name!r})"
        )
    kinds = {c.name: _kind(table, c) for c in table.columns}
    if described.get("columns") != kinds:
        raise BackupError(f"{archive.path}: {name} has columns {described.get('columns')}, this app expects {kinds}")
    rows = []
    for number, item in archive.lines(name):
        loc = f"{archive.path}: {name} line {number}"
        if not isinstance(item, dict) or set(item) != set(kinds):
            raise BackupError(f"{loc}: expected the columns {sorted(kinds)}")
        rows.append({c: _decode(f"{loc} {c}", k, item[c]) for c, k in kinds.items()})
    for start in range(0, len(rows), _AUDIT_BATCH):
        conn.execute(insert(table), rows[start : start + _AUDIT_BATCH])
    return len(rows)


def _restore(conn: Connection, archive: _Archive) -> dict[str, int]:
    where = archive.path
    # blobs
    blob_meta: dict[str, tuple[int, datetime]] = {}
    for number, item in archive.lines(BLOBS_INDEX):
        loc = f"{where}: {BLOBS_INDEX} line {number}"
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("sha256"), str)
            or not _BLOB_RE.fullmatch("blobs/" + item["sha256"])
        ):
            raise BackupError(f"{loc}: not a blob record")
        sha = item["sha256"]
        if sha in blob_meta:
            raise BackupError(f"{loc}: blob {sha} listed twice")
        blob_meta[sha] = (_int(loc, item.get("size")), _parse_time(loc, item.get("created_at")))
    blob_entries = {m.group(1) for m in map(_BLOB_RE.fullmatch, archive.manifest["entries"]) if m}
    if blob_entries != set(blob_meta):
        odd = sorted(blob_entries ^ set(blob_meta))[0]
        raise BackupError(f"{where}: blob {odd} is in {BLOBS_INDEX} or blobs/ but not both")
    blobs = Blob.__table__
    for sha in sorted(blob_meta):
        data = archive.read(f"blobs/{sha}")
        size, created = blob_meta[sha]
        if hashlib.sha256(data).hexdigest() != sha or len(data) != size:
            raise BackupError(f"{where}: entry blobs/{sha} does not hash to its name (or its size is not {size})")
        conn.execute(insert(blobs).values(sha256=sha, size=size, data=data, created_at=created))

    # assessments and their file links
    assessments, links = AssessmentRow.__table__, AssessmentFile.__table__
    n_links = 0
    names = sorted(n for n in archive.manifest["entries"] if _ASSESSMENT_RE.fullmatch(n))
    ids: set[int] = set()
    for name in names:
        try:
            doc = json.loads(archive.read(name))
        except ValueError as exc:
            raise BackupError(f"{where}: entry {name} is not valid JSON ({exc})") from None
        loc = f"{where}: entry {name}"
        if not isinstance(doc, dict):
            raise BackupError(f"{loc}: not an assessment record")
        aid = _int(f"{loc} id", doc.get("id"), minimum=1)
        if name != _assessment_name(aid):
            raise BackupError(f"{loc}: holds assessment id {aid}")
        try:
            fields = {
                k: _sqlstr(f"{loc} {k}", doc.get(k), max_len=None if k in ("patient_label", "note") else 255)
                for k in ("user", "patient_label", "model_id", "model_version", "input_hash", "pattern", "note")
            }
            _sqlstr(f"{loc} user", fields["user"], required=True)
            inputs_json = _dump_json(f"{loc} inputs", doc.get("inputs"))
            outputs_raw = _dump_json(f"{loc} outputs", doc.get("outputs")).encode("ascii")
            summary_json = _dump_json(f"{loc} summary", doc.get("summary"))
        except StoreError as exc:
            raise BackupError(str(exc)) from None
        if doc.get("outputs_size") != len(outputs_raw):
            raise BackupError(
                f"{loc}: outputs are {len(outputs_raw)} bytes of JSON, the record says {doc.get('outputs_size')!r}"
            )
        conn.execute(
            insert(assessments).values(
                id=aid,
                created_at=_parse_time(f"{loc} created_at", doc.get("created_at")),
                username=fields["user"],
                patient_label=fields["patient_label"],
                model_id=fields["model_id"],
                model_version=fields["model_version"],
                input_hash=fields["input_hash"],
                pattern=fields["pattern"],
                note=fields["note"],
                search_text=_fold(fields["patient_label"]) + "\x1f" + _fold(fields["note"]),
                summary_json=summary_json,
                inputs_json=inputs_json,
                outputs_zjson=zlib.compress(outputs_raw, 6),
                outputs_size=len(outputs_raw),
                prev_hash=_chain_hash(f"{loc} prev_hash", doc.get("prev_hash")),
                entry_hash=_chain_hash(f"{loc} entry_hash", doc.get("entry_hash")),
            )
        )
        ids.add(aid)
        files = doc.get("files")
        if not isinstance(files, list):
            raise BackupError(f"{loc}: 'files' must be a list")
        roles = set()
        for link in files:
            if not isinstance(link, dict):
                raise BackupError(f"{loc}: file link {link!r} is not an object")
            role = _sqlstr(f"{loc} file role", link.get("role"), max_len=255, required=True)
            if role in roles:
                raise BackupError(f"{loc}: file role {role!r} appears twice")
            roles.add(role)
            sha = link.get("sha256")
            if sha not in blob_meta:
                raise BackupError(f"{loc}: file {role!r} points at blob {sha!r}, which the archive does not hold")
            conn.execute(
                insert(links).values(
                    assessment_id=aid,
                    role=role,
                    filename=_sqlstr(f"{loc} filename", link.get("filename")),
                    media_type=_sqlstr(f"{loc} media_type", link.get("media_type"), max_len=255),
                    blob_sha256=sha,
                )
            )
            n_links += 1

    # the audit log, in append order, with its original ids
    audit = AuditRow.__table__
    batch: list[dict] = []
    last_id, n_audit = 0, 0
    for number, item in archive.lines(AUDIT):
        loc = f"{where}: {AUDIT} line {number}"
        if not isinstance(item, dict):
            raise BackupError(f"{loc}: not an audit record")
        eid = _int(f"{loc} id", item.get("id"), minimum=1)
        if eid <= last_id:
            raise BackupError(f"{loc}: id {eid} is not after {last_id} (the log must be in append order)")
        last_id = eid
        ref = item.get("assessment_id")
        if ref is not None and (_int(f"{loc} assessment_id", ref, minimum=1) not in ids):
            raise BackupError(f"{loc}: refers to assessment {ref}, which the archive does not hold")
        batch.append(
            {
                "id": eid,
                "at": _parse_time(loc, item.get("at")),
                "username": _sqlstr(f"{loc} user", item.get("user"), max_len=255, required=True),
                "action": _sqlstr(f"{loc} action", item.get("action"), max_len=255, required=True),
                "model_version": _sqlstr(f"{loc} model_version", item.get("model_version"), max_len=255),
                "input_hash": _sqlstr(f"{loc} input_hash", item.get("input_hash"), max_len=255),
                "assessment_id": ref,
                "detail": _sqlstr(f"{loc} detail", item.get("detail")),
                "prev_hash": _chain_hash(f"{loc} prev_hash", item.get("prev_hash")),
                "entry_hash": _chain_hash(f"{loc} entry_hash", item.get("entry_hash")),
            }
        )
        n_audit += 1
        if len(batch) >= _AUDIT_BATCH:
            conn.execute(insert(audit), batch)
            batch = []
    if batch:
        conn.execute(insert(audit), batch)
    return {"blobs": len(blob_meta), "assessments": len(ids), "assessment_files": n_links, "audit_log": n_audit}


# -- command line --------------------------------------------------------------------------------------


def _open(args) -> Store:
    return open_store(args.database_url or None, data_dir=args.data_dir or None)


def _limit_flags(p: argparse.ArgumentParser) -> None:
    d = ArchiveLimits()
    p.add_argument(
        "--max-entries",
        type=positive(int),
        default=d.max_entries,
        help=f"refuse an archive with more entries (default {d.max_entries:,})",
    )
    p.add_argument(
        "--max-entry-mb",
        type=positive(int),
        default=d.max_entry_bytes >> 20,
        help=f"refuse an entry that inflates past this many MiB (default {d.max_entry_bytes >> 20:,})",
    )
    p.add_argument(
        "--max-total-mb",
        type=positive(int),
        default=d.max_total_bytes >> 20,
        help=f"refuse an archive that inflates past this many MiB in all (default {d.max_total_bytes >> 20:,})",
    )
    p.add_argument(
        "--max-ratio",
        type=positive(int),
        default=d.max_ratio,
        help=f"refuse an entry over 1 MiB inflating more than N times its compressed size (default {d.max_ratio})",
    )


def _limits(args) -> ArchiveLimits:
    return ArchiveLimits(
        max_entries=args.max_entries,
        max_entry_bytes=args.max_entry_mb << 20,
        max_total_bytes=args.max_total_mb << 20,
        max_ratio=args.max_ratio,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmnar_app.store.backup",
        description="Export the store to a checked archive, or restore one into an empty database (docs/storage.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def target(p):
        group = p.add_mutually_exclusive_group()
        group.add_argument(
            "--database-url", help="SQLAlchemy URL (default: MMNAR_DATABASE_URL, else SQLite in the data folder)"
        )
        group.add_argument("--data-dir", help="folder of the SQLite database mmnar.sqlite3")

    exp = sub.add_parser("export", help="write every assessment, file and audit entry to an archive")
    exp.add_argument("--out", required=True, help="archive to write (.zip)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    target(exp)
    imp = sub.add_parser("import", help="restore an archive into an EMPTY database (one transaction)")
    imp.add_argument("archive")
    imp.add_argument("--record-as", metavar="USER", help="also append a 'restore' audit entry by USER")
    target(imp)
    ver = sub.add_parser("verify", help="check an archive against its manifest (no database needed)")
    ver.add_argument("archive")
    for p in (imp, ver):
        _limit_flags(p)
    args = parser.parse_args(argv)
    try:
        if args.command == "verify":
            manifest = verify_archive(args.archive, limits=_limits(args))
            result = {
                "archive": args.archive,
                "ok": True,
                "schema_revision": manifest.get("schema_revision"),
                "counts": manifest["counts"],
            }
        elif args.command == "export":
            with _open(args) as store:
                manifest = export_archive(store, args.out, overwrite=args.overwrite)
            result = {
                "archive": manifest["archive"],
                "sha256": manifest["archive_sha256"],
                "schema_revision": manifest["schema_revision"],
                "counts": manifest["counts"],
            }
        else:
            with _open(args) as store:
                result = import_archive(store, args.archive, record_as=args.record_as, limits=_limits(args))
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    from mmnar_app.store.permissions import restrict_umask

    restrict_umask()  # archives and databases hold every note and input: 0600
    raise SystemExit(main())
