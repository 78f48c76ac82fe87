"""Audit log and assessments cannot be rewritten (issue 18, item 7): triggers reject every write that
would replace a row (INSERT OR REPLACE, REPLACE INTO, upserts, UPDATE, DELETE, TRUNCATE) on SQLite and
PostgreSQL, and a hash chain over the audit log lets mmnar_app.store.verify name any entry changed,
removed or inserted by someone who could drop the triggers; a second chain over the saved assessments
(migration 0004, back-filled) does the same for assessments and their file links."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from mmnar_app.store import open_store
from mmnar_app.store.verify import main as verify_main
from mmnar_app.store.verify import verify_store

from support.store import raw_engine, sample

ASSESSMENT_COLUMNS = (
    "id, created_at, username, patient_label, model_id, model_version, input_hash, pattern, note, "
    "search_text, summary_json, inputs_json, outputs_zjson, outputs_size"
)
AUDIT_COLUMNS = "id, at, username, action, model_version, input_hash, assessment_id, detail, prev_hash, entry_hash"


def _tampered(columns: str, field: str) -> str:
    return columns.replace(f" {field},", " 'tampered',") if f" {field}," in columns else columns


def replacing_statements(backend: str, aid: int) -> list[str]:
    """Every way of rewriting saved assessment `aid` and audit entry 1 through the database itself."""
    new_note = _tampered(ASSESSMENT_COLUMNS, "note")
    new_detail = _tampered(AUDIT_COLUMNS, "detail")
    copy_assessment = f"({ASSESSMENT_COLUMNS}) SELECT {new_note} FROM assessments WHERE id = {aid}"
    copy_audit = f"({AUDIT_COLUMNS}) SELECT {new_detail} FROM audit_log WHERE id = 1"
    statements = [
        f"UPDATE assessments SET note = 'tampered' WHERE id = {aid}",
        f"DELETE FROM assessments WHERE id = {aid}",
        "UPDATE assessment_files SET filename = 'tampered'",
        "DELETE FROM assessment_files",
        "UPDATE blobs SET size = size + 1",
        "DELETE FROM blobs",
        f"INSERT INTO assessments {copy_assessment} ON CONFLICT (id) DO UPDATE SET note = excluded.note",
        f"INSERT INTO audit_log {copy_audit} ON CONFLICT (id) DO UPDATE SET detail = excluded.detail",
    ]
    if backend == "sqlite":
        statements += [
            f"INSERT OR REPLACE INTO assessments {copy_assessment}",
            f"REPLACE INTO assessments {copy_assessment}",
            f"INSERT OR REPLACE INTO audit_log {copy_audit}",
            f"REPLACE INTO audit_log {copy_audit}",
            "REPLACE INTO assessment_files SELECT assessment_id, role, 'tampered', media_type, blob_sha256 "
            "FROM assessment_files",
        ]
    else:
        statements += ["TRUNCATE assessments, assessment_files, audit_log, blobs"]
    return statements


def test_no_write_can_replace_an_assessment_or_an_audit_entry(store, db_url):
    aid = store.save_assessment(**sample(1, note="original"), files={"cxr": ("x.png", "image/png", b"\x89PNG pixels")})
    store.record(action="open", user="nurse", assessment_id=aid)
    saved, log = store.get_assessment(aid), store.audit_log()
    engine = raw_engine(db_url)
    try:
        for sql in replacing_statements(store.backend, aid):
            with pytest.raises(DBAPIError, match="append-only"):
                with engine.begin() as conn:
                    conn.execute(text(sql))
        with engine.begin() as conn:  # a second copy of a stored file keeps the first bytes (and no error)
            conn.execute(
                text(
                    "INSERT INTO blobs (sha256, size, data, created_at) SELECT sha256, 1, substr(data, 1, 1), "
                    "created_at FROM blobs WHERE true ON CONFLICT DO NOTHING"
                )
            )
            if store.backend == "sqlite":
                conn.execute(
                    text(
                        "INSERT OR REPLACE INTO blobs (sha256, size, data, created_at) "
                        "SELECT sha256, 1, substr(data, 1, 1), created_at FROM blobs"
                    )
                )
    finally:
        engine.dispose()
    assert store.get_assessment(aid) == saved and store.audit_log() == log
    assert store.get_assessment(aid).note == "original"
    assert verify_store(store).ok


def _owner_sql(db_url: str, backend: str, statements: list[str]) -> None:
    """What the database's owner can do: lift the triggers, change rows, put the triggers back."""
    lift = (
        ["DROP TRIGGER audit_log_no_update", "DROP TRIGGER audit_log_no_delete"]
        if backend == "sqlite"
        else ["ALTER TABLE audit_log DISABLE TRIGGER USER"]
    )
    engine = raw_engine(db_url)
    try:
        with engine.begin() as conn:
            for sql in lift + statements:
                conn.execute(text(sql))
    finally:
        engine.dispose()


def test_chain_links_every_entry_and_verify_names_a_changed_one(store, db_url, capsys):
    aid = store.save_assessment(**sample(2))
    for action in ("open", "compare", "export"):
        store.record(action=action, user="nurse", assessment_id=aid)
    report = verify_store(store)
    assert report.ok and report.audit.entries == 4 and report.audit.head == _column(db_url, "entry_hash")[-1]
    assert verify_main(["--database-url", db_url]) == 0 and '"ok": true' in capsys.readouterr().out
    _owner_sql(db_url, store.backend, ["UPDATE audit_log SET detail = 'nothing to see' WHERE id = 3"])
    report = verify_store(store)
    assert report.breaks == [
        "audit entry 3: its content does not match its hash (the entry was changed after it was written)"
    ], report.breaks
    assert verify_main(["--database-url", db_url]) == 1 and "audit entry 3" in capsys.readouterr().out


def test_verify_names_the_entry_after_a_removed_one(store, db_url):
    aid = store.save_assessment(**sample(3))
    for action in ("open", "compare", "export"):
        store.record(action=action, user="nurse", assessment_id=aid)
    _owner_sql(db_url, store.backend, ["DELETE FROM audit_log WHERE id = 2"])
    assert [b.split(":")[0] for b in verify_store(store).breaks] == ["audit entry 3"]
    store.record(action="open", user="nurse", assessment_id=aid)  # new entries link to the last one again
    assert [b.split(":")[0] for b in verify_store(store).breaks] == ["audit entry 3"]


def _column(db_url: str, name: str) -> list:
    engine = raw_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(f"SELECT {name} FROM audit_log ORDER BY id")).scalars())
    finally:
        engine.dispose()


def test_migration_chains_the_entries_written_before_it(db_url):
    from alembic import command

    from mmnar_app.store.core import alembic_config

    engine = raw_engine(db_url)
    if engine.dialect.name == "postgresql":
        open_store(db_url).close()  # creates the database; then back to 0002 to start from there
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
    else:
        Path(db_url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
    try:
        with engine.begin() as conn:
            for i in range(3):
                conn.execute(
                    text(
                        "INSERT INTO audit_log (at, username, action, model_version, input_hash, detail) "
                        f"VALUES ('2026-01-0{i + 1} 10:00:00.123456', 'u{i}', 'open', '', '', 'before')"
                    )
                )
    finally:
        engine.dispose()
    with open_store(db_url) as store:
        store.record(action="open", user="after")
        report = verify_store(store)
    assert report.ok and report.audit.entries == 4, report
    assert None not in _column(db_url, "entry_hash")


# -- the assessment chain (migration 0004) ---------------------------------------------------------------


def _owner_changes_assessments(db_url: str, backend: str, statements: list[str]) -> None:
    lift = (
        [
            "DROP TRIGGER assessments_no_update",
            "DROP TRIGGER assessments_no_delete",
            "DROP TRIGGER assessment_files_no_update",
        ]
        if backend == "sqlite"
        else ["ALTER TABLE assessments DISABLE TRIGGER USER", "ALTER TABLE assessment_files DISABLE TRIGGER USER"]
    )
    engine = raw_engine(db_url)
    try:
        with engine.begin() as conn:
            for sql in lift + statements:
                conn.execute(text(sql))
    finally:
        engine.dispose()


def _saved(store, n: int) -> list[int]:
    return [
        store.save_assessment(
            **sample(10 + i, note=f"note {i}"), files={"cxr": (f"x{i}.png", "image/png", b"\x89PNG pixels %d" % i)}
        )
        for i in range(n)
    ]


def test_assessment_chain_names_a_changed_or_removed_assessment(store, db_url, capsys):
    ids = _saved(store, 4)
    report = verify_store(store)
    assert report.ok and report.assessments.entries == 4 and report.audit.entries == 4
    _owner_changes_assessments(
        db_url,
        store.backend,
        [
            f"UPDATE assessments SET note = 'quietly changed' WHERE id = {ids[1]}",
            f"UPDATE assessment_files SET filename = 'other.png' WHERE assessment_id = {ids[2]}",
        ],
    )
    assert verify_store(store).breaks == [
        f"assessment {ids[1]}: its content or files do not match its hash (the assessment was changed after it "
        "was saved)",
        f"assessment {ids[2]}: its content or files do not match its hash (the assessment was changed after it "
        "was saved)",
    ]
    assert verify_main(["--database-url", db_url]) == 1
    out = capsys.readouterr().out
    assert f"assessment {ids[1]}" in out and '"audit_log"' in out and '"ok": false' in out


def test_assessment_chain_names_the_one_after_a_removed_assessment(store, db_url):
    ids = _saved(store, 3)
    lift = (
        ["DROP TRIGGER audit_log_no_delete", "DROP TRIGGER assessment_files_no_delete"]
        if store.backend == "sqlite"
        else ["ALTER TABLE audit_log DISABLE TRIGGER USER"]
    )
    _owner_changes_assessments(
        db_url,
        store.backend,
        lift
        + [
            f"DELETE FROM audit_log WHERE assessment_id = {ids[1]}",
            f"DELETE FROM assessment_files WHERE assessment_id = {ids[1]}",
            f"DELETE FROM assessments WHERE id = {ids[1]}",
        ],
    )
    assert [b.split(":")[0] for b in verify_store(store).assessments.breaks] == [f"assessment {ids[2]}"]


def test_migration_0004_chains_every_assessment_saved_before_it(db_url):
    """A database at 0003 with saved assessments upgrades without losing or changing any, and its back-filled
    chain is the one the store writes on save."""
    from alembic import command

    from mmnar_app.store.core import alembic_config

    with open_store(db_url) as store:
        ids = _saved(store, 5)
        before = [store.get_assessment(i) for i in ids]
        hashes = _assessment_hashes(db_url)
    engine = raw_engine(db_url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
        with engine.connect() as conn:
            assert "entry_hash" not in {c["name"] for c in inspect(conn).get_columns("assessments")}
    finally:
        engine.dispose()
    with open_store(db_url) as store:
        assert [store.get_assessment(i) for i in ids] == before
        report = verify_store(store)
        assert report.ok and report.assessments.entries == 5, report
        new = store.save_assessment(**sample(99))
        assert verify_store(store).ok and store.count_assessments() == 6 and new > ids[-1]
    assert _assessment_hashes(db_url)[:5] == hashes


def _assessment_hashes(db_url: str) -> list[tuple]:
    engine = raw_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT prev_hash, entry_hash FROM assessments ORDER BY id"))]
    finally:
        engine.dispose()


def test_backup_round_trip_keeps_the_assessment_chain(store, tmp_path):
    from mmnar_app.store.backup import export_archive, import_archive

    _saved(store, 3)
    export_archive(store, tmp_path / "b.zip")
    with open_store(f"sqlite:///{tmp_path / 'copy' / 'mmnar.sqlite3'}") as copy:
        import_archive(copy, tmp_path / "b.zip")
        report = verify_store(copy)
    assert (
        report.ok
        and report.assessments.entries == 3
        and report.assessments.head == verify_store(store).assessments.head
    )
