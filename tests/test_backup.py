"""Backups of the store (mmnar_app.store.backup): exact round trips SQLite -> PostgreSQL -> SQLite, refusal of
non-empty targets and of corrupted or tampered archives, one transaction per import, and the command line."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
import zipfile
import zlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from mmnar_app.store import UserStore, open_store, schema_head
from mmnar_app.store.backup import BackupError, export_archive, import_archive, verify_archive

from support.backup import TABLES, counts, populate, snapshot

ROOT = Path(__file__).resolve().parents[1]


# -- helpers -------------------------------------------------------------------------------------------


def pg_url(server) -> str:
    return server.url(f"b_{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'target' / 'mmnar.sqlite3'}"
    return pg_url(request.getfixturevalue("postgres_server"))


def table_rows(url: str) -> dict[str, list]:
    """Every row of every table in key order, decompressing outputs; comparable across backends."""
    engine = create_engine(url, poolclass=NullPool)
    from mmnar_app.store.models import AssessmentFile, AssessmentRow, AuditRow, Blob
    from mmnar_app.store.pattern_counts import PatternCountRow
    from mmnar_app.store.users import UserRow

    out = {}
    try:
        with engine.connect() as conn:
            for model, key in (
                (Blob, "sha256"),
                (AssessmentRow, "id"),
                (AssessmentFile, "assessment_id, role"),
                (AuditRow, "id"),
                (UserRow, "username"),
                (PatternCountRow, "model_id, pattern"),
            ):
                table = model.__table__
                rows = []
                for row in conn.execute(table.select().order_by(text(key))).mappings():
                    row = dict(row)
                    for k, v in row.items():
                        if isinstance(v, (bytes, memoryview)):
                            row[k] = bytes(v)
                    if "outputs_zjson" in row:
                        row["outputs_zjson"] = zlib.decompress(row["outputs_zjson"])
                    rows.append(row)
                out[table.name] = rows
    finally:
        engine.dispose()
    return out


def rewrite(
    src: Path,
    dst: Path,
    *,
    replace: dict | None = None,
    drop: tuple = (),
    add: dict | None = None,
    fix_manifest: bool = False,
) -> Path:
    """Copy an archive changing entries; with fix_manifest the manifest checksums are recomputed (a careful forger)."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as zin:
        contents = {n: zin.read(n) for n in zin.namelist()}
    for name, change in replace.items():
        contents[name] = change(contents[name]) if callable(change) else change
    for name in drop:
        del contents[name]
    contents.update(add)
    if fix_manifest:
        manifest = json.loads(contents["manifest.json"])
        manifest["entries"] = {
            n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for n, d in sorted(contents.items())
            if n != "manifest.json"
        }
        contents["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in contents.items():
            zout.writestr(name, data)
    return dst


# -- round trips ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_round_trip_sqlite_to_postgresql_and_back_is_exact(tmp_path, postgres_server):
    src = f"sqlite:///{tmp_path / 'src.sqlite3'}"
    with open_store(src) as store:
        ids = populate(store)
        before = snapshot(store)
        first = export_archive(store, tmp_path / "a.zip")
    assert first["counts"] == {
        "blobs": 5,
        "assessments": 4,
        "assessment_files": 7,
        "audit_log": 9,
        "users": 2,
        "pattern_counts": 2,
    }
    assert first["tables"]["users"]["columns"]["locked_until"] == "datetime"
    assert first["schema_revision"] == schema_head() and first["last_ids"] == {"assessments": 4, "audit_log": 9}
    assert verify_archive(tmp_path / "a.zip")["counts"] == first["counts"]

    pg = pg_url(postgres_server)
    with open_store(pg) as store:
        result = import_archive(store, tmp_path / "a.zip")
        assert {k: result[k] for k in first["counts"]} == first["counts"]
        assert snapshot(store) == before  # ids, timestamps, inputs, outputs, files and audit order
    assert table_rows(pg) == table_rows(src)  # every column of every row, search_text and blob dates too

    # PostgreSQL sequences also count rolled-back saves: burn one id, then back to SQLite
    with open_store(pg) as store:
        engine = create_engine(pg, poolclass=NullPool)
        with pytest.raises(DBAPIError):  # an insert that fails inside the database burns a sequence value
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO assessments (created_at, username, patient_label, model_id, "
                        "model_version, input_hash, pattern, note, search_text, summary_json, "
                        "inputs_json, outputs_zjson, outputs_size) VALUES (now(), 'u', 'x', 'm', 'v', "
                        "'h', '', '', '', '{}', '{}', '', NULL)"
                    )
                )
        engine.dispose()
        second = export_archive(store, tmp_path / "b.zip")
    assert second["last_ids"] == {"assessments": 5, "audit_log": 9}
    # the same content gives byte-identical entries, whichever database it came from
    assert {k: v for k, v in second["entries"].items()} == first["entries"]

    back = f"sqlite:///{tmp_path / 'back.sqlite3'}"
    with open_store(back) as store:
        import_archive(store, tmp_path / "b.zip")
        assert snapshot(store) == before
        new = store.save_assessment(
            user="u", patient_label="after", model_id="m", model_version="v", input_hash="h", inputs={}, outputs={}
        )
        assert new == 6 > max(ids)  # ids continue where the source stood, gaps included
        store.record(action="open", user="u", assessment_id=new)
        assert [e.id for e in store.audit_log(limit=2)] == [11, 10]  # the save's entry, then ours
    rows_back, rows_src = table_rows(back), table_rows(src)
    assert rows_back["audit_log"][:9] == rows_src["audit_log"] and rows_back["blobs"] == rows_src["blobs"]
    assert rows_back["assessments"][:4] == rows_src["assessments"] and rows_back["users"] == rows_src["users"]


def test_empty_store_round_trips(tmp_path, empty_url):
    with open_store(f"sqlite:///{tmp_path / 'e.sqlite3'}") as store:
        manifest = export_archive(store, tmp_path / "empty.zip")
    assert manifest["counts"] == dict.fromkeys(TABLES, 0)
    with open_store(empty_url) as store:
        import_archive(store, tmp_path / "empty.zip")
        assert store.count_assessments() == 0 and store.audit_log() == []
        assert (
            store.save_assessment(
                user="u", patient_label="", model_id="m", model_version="v", input_hash="", inputs={}, outputs={}
            )
            == 1
        )


def test_import_keeps_the_audit_log_append_only_and_can_record_itself(archive, empty_url):
    path, before, _ = archive
    with open_store(empty_url) as store:
        import_archive(store, path, record_as="admin")
        log = store.audit_log(limit=100)
        assert log[1:] == before[2]  # the restored log, unchanged, then one entry for the restore
        assert UserStore(store).list() == before[3]
        assert (log[0].action, log[0].user, log[0].id) == ("restore", "admin", before[2][0].id + 1)
        assert "restored 4 assessments, 9 audit entries from backup.zip" == log[0].detail
    engine = create_engine(empty_url, poolclass=NullPool)
    try:
        for sql in ("UPDATE audit_log SET detail = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"):
                with engine.begin() as conn:
                    conn.execute(text(sql))
    finally:
        engine.dispose()


# -- refusals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["audit entry", "user"])
def test_import_refuses_a_non_empty_target(archive, empty_url, what):
    path, _, _ = archive
    with open_store(empty_url) as store:
        if what == "audit entry":  # even a single audit entry
            store.record(action="login", user="someone")
        else:
            UserStore(store).add("carol", "reviewer")
        table = "audit_log" if what == "audit entry" else "users"
        with pytest.raises(BackupError, match=rf"is not empty \(1 {table}\): import only into an empty database"):
            import_archive(store, path)
    assert counts(empty_url) == {t: int(t == table) for t in TABLES}


@pytest.mark.parametrize(
    "case",
    [
        "edited assessment",
        "edited blob",
        "edited audit log",
        "extra entry",
        "missing entry",
        "flipped byte",
        "forged consistent manifest",
    ],
)
def test_import_refuses_a_corrupted_or_tampered_archive_and_changes_nothing(archive, tmp_path, case):
    path, _, ids = archive
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(path) as z:  # the largest file: the shared X-ray
        blob = max((i for i in z.infolist() if i.filename.startswith("blobs/")), key=lambda i: i.file_size).filename
    first = f"assessments/{ids[0]:012d}.json"
    if case == "edited assessment":
        rewrite(path, bad, replace={first: lambda d: d.replace(b"STRASSE 0", b"STRASSE 9")})
        expected = f"checksum mismatch for entry {first}"
    elif case == "edited blob":
        rewrite(path, bad, replace={blob: lambda d: d[:-1] + bytes([d[-1] ^ 1])})
        expected = f"checksum mismatch for entry {blob}"
    elif case == "edited audit log":
        rewrite(path, bad, replace={"audit_log.jsonl": lambda d: d.replace(b'"nurse"', b'"nobody"', 1)})
        expected = "checksum mismatch for entry audit_log.jsonl"
    elif case == "extra entry":
        rewrite(path, bad, add={"assessments/000000000099.json": b"{}"})
        expected = "entry assessments/000000000099.json is not listed in manifest.json"
    elif case == "missing entry":
        rewrite(path, bad, drop=(first,))
        expected = f"entry {first} is listed in manifest.json but missing"
    elif case == "flipped byte":  # raw corruption of the file: the zip's own CRC catches it, named
        data = bytearray(path.read_bytes())
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(blob)
        data[info.header_offset + 30 + len(info.filename) + 1000] ^= 0xFF  # inside the stored blob's bytes
        bad.write_bytes(bytes(data))
        expected = f"entry {blob} is corrupted"
    else:  # checksums recomputed, but a blob no longer hashes to its name
        rewrite(path, bad, replace={blob: b"swapped image"}, fix_manifest=True)
        expected = f"entry {blob} does not hash to its name"
    target = f"sqlite:///{tmp_path / 't.sqlite3'}"
    with open_store(target) as store:
        with pytest.raises(BackupError, match=expected.replace("(", r"\(").replace(".", r"\.")):
            import_archive(store, bad)
    assert counts(target) == dict.fromkeys(TABLES, 0)
    if case != "forged consistent manifest":
        with pytest.raises(BackupError, match=expected.split(" is ")[0].replace(".", r"\.")):
            verify_archive(bad)


@pytest.mark.parametrize("failure", ["archive check", "database constraint"])
def test_a_failure_late_in_the_import_rolls_everything_back(archive, tmp_path, empty_url, failure):
    path, _, _ = archive
    bad = tmp_path / "late.zip"
    if failure == "archive check":
        # consistent checksums, but the last audit entry refers to an assessment the archive does not hold:
        # found only after the blobs and assessments were inserted
        rewrite(
            path,
            bad,
            fix_manifest=True,
            replace={"audit_log.jsonl": lambda d: d.replace(b'"assessment_id": null', b'"assessment_id": 77')},
        )
        expected = r"audit_log\.jsonl line 9: refers to assessment 77"
    else:  # the database itself refuses the last table's rows (a CHECK constraint on users.role)
        rewrite(
            path,
            bad,
            fix_manifest=True,
            replace={"tables/users.jsonl": lambda d: d.replace(b'"clinician"', b'"superuser"')},
        )
        expected = r"failed and was rolled back: .*ck_users_role"
    with open_store(empty_url) as store:
        with pytest.raises(BackupError, match=expected):
            import_archive(store, bad)
        assert store.count_assessments() == 0
    assert counts(empty_url) == dict.fromkeys(TABLES, 0)
    with open_store(empty_url) as store:  # and the target still takes a good archive afterwards
        import_archive(store, path)
        assert store.count_assessments() == 4


def test_archives_of_another_format_or_a_newer_schema_are_refused(archive, tmp_path):
    path, _, _ = archive

    def manifest_edit(**changes):
        def edit(data):
            m = json.loads(data)
            m.update(changes)
            return json.dumps(m).encode()

        return edit

    target = f"sqlite:///{tmp_path / 't.sqlite3'}"
    with open_store(target) as store:
        rewrite(path, tmp_path / "v2.zip", replace={"manifest.json": manifest_edit(format_version=2)})
        with pytest.raises(BackupError, match="backup format version 2; this app reads version 1"):
            import_archive(store, tmp_path / "v2.zip")
        rewrite(path, tmp_path / "future.zip", replace={"manifest.json": manifest_edit(schema_revision="0099")})
        with pytest.raises(BackupError, match=f"written at schema revision '0099', this app is at '{schema_head()}'"):
            import_archive(store, tmp_path / "future.zip")
        (tmp_path / "junk.zip").write_bytes(b"not a zip")
        with pytest.raises(BackupError, match="not a readable backup archive"):
            import_archive(store, tmp_path / "junk.zip")
        with pytest.raises(BackupError, match="no such backup file"):
            import_archive(store, tmp_path / "nope.zip")
    assert counts(target) == dict.fromkeys(TABLES, 0)


def test_export_is_atomic_and_never_overwrites_silently(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 's.sqlite3'}") as store:
        populate(store)
        out = tmp_path / "b.zip"
        out.write_bytes(b"precious")
        with pytest.raises(BackupError, match="already exists"):
            export_archive(store, out)
        assert out.read_bytes() == b"precious"
        manifest = export_archive(store, out, overwrite=True)
        assert manifest["archive_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
        assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
        with zipfile.ZipFile(out) as z:
            names = z.namelist()
            assert names[0] == "README.txt" and names[-1] == "manifest.json"
            doc = json.loads(z.read(names[1]))
            assert set(doc) == {
                "id",
                "created_at",
                "user",
                "patient_label",
                "model_id",
                "model_version",
                "input_hash",
                "pattern",
                "note",
                "outputs_size",
                "prev_hash",
                "entry_hash",
                "files",
                "summary",
                "inputs",
                "outputs",
            }  # the assessment chain's hashes (0004) travel too
            assert doc["created_at"].endswith("+00:00")
            assert f"blobs/{doc['files'][0]['sha256']}" in manifest["entries"]


# -- command line --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_command_line_export_verify_import(tmp_path, postgres_server):
    with open_store(f"sqlite:///{tmp_path / 'data' / 'mmnar.sqlite3'}") as store:
        populate(store)
        before = snapshot(store)
    env = dict(os.environ)
    env.pop("MMNAR_DATABASE_URL", None)

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "mmnar_app.store.backup", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    out = run("export", "--out", str(tmp_path / "cli.zip"), "--data-dir", str(tmp_path / "data"))
    assert out.returncode == 0, out.stderr
    exported = json.loads(out.stdout)
    assert exported["counts"]["assessments"] == 4
    assert exported["sha256"] == hashlib.sha256((tmp_path / "cli.zip").read_bytes()).hexdigest()
    assert run("verify", str(tmp_path / "cli.zip")).returncode == 0
    pg = pg_url(postgres_server)
    done = run("import", str(tmp_path / "cli.zip"), "--database-url", pg)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["assessments"] == 4
    with open_store(pg) as store:
        assert snapshot(store) == before
    again = run("import", str(tmp_path / "cli.zip"), "--database-url", pg)
    assert (
        again.returncode == 2 and again.stderr.startswith("error: the target database") and "not empty" in again.stderr
    )
    rewrite(tmp_path / "cli.zip", tmp_path / "bad.zip", replace={"blobs.jsonl": lambda d: d + b"\n"})
    bad = run("verify", str(tmp_path / "bad.zip"))
    assert bad.returncode == 2 and "checksum mismatch for entry blobs.jsonl" in bad.stderr
