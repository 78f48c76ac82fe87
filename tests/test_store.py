"""The app's persistence layer (mmnar_app.store) on SQLite and on a real PostgreSQL 15 server."""

from __future__ import annotations

import base64
import json
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from mmnar_app.store import (
    Assessment,
    AssessmentSummary,
    Store,
    StoreError,
    default_database_url,
    open_store,
    schema_head,
)
from mmnar_app.store.models import Base, Blob

from support.store import raw_engine, sample

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("blobs", "assessments", "assessment_files", "audit_log")


# -- fixtures and helpers ----------------------------------------------------------------------------


def table_counts(url: str) -> dict[str, int]:
    engine = raw_engine(url)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in TABLES}
    finally:
        engine.dispose()


def canonical(value) -> str:
    """Exact comparison including float repr, int vs float and NaN."""
    return json.dumps(value, sort_keys=True, allow_nan=True)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- schema and migrations ---------------------------------------------------------------------------


def test_migrations_create_the_schema_and_are_idempotent(db_url):
    for _ in range(3):
        open_store(db_url).close()
    engine = raw_engine(db_url)
    try:
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == {
                *TABLES,
                "users",
                "sign_in_backoff",
                "pattern_counts",
                "alembic_version",
            }  # 0002, 0005, 0006
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [schema_head()]
            if conn.dialect.name == "sqlite":
                triggers = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars()
                assert set(triggers) == {
                    "audit_log_no_update",
                    "audit_log_no_delete",
                    "audit_log_no_replace",
                    "blobs_keep_first",
                    "blobs_no_update",
                    "blobs_no_delete",
                } | {
                    f"{t}_no_{op}"
                    for t in ("assessments", "assessment_files")
                    for op in ("update", "delete", "replace")
                }
                assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            else:
                triggers = conn.execute(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).scalars()
                assert set(triggers) == {
                    f"{t}_no_{op}"
                    for t in ("audit_log", "assessments", "assessment_files", "blobs")
                    for op in ("update_delete", "truncate")
                }
                column = inspect(conn).get_columns("assessments")
                assert {c["name"]: c for c in column}["created_at"]["type"].timezone is True
            # the hand-written migration and the declarative models describe the same schema
            from alembic.autogenerate import compare_metadata
            from alembic.runtime.migration import MigrationContext

            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


def test_newer_schema_revision_is_refused_with_a_clear_error(db_url):
    open_store(db_url).close()
    engine = raw_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"9999_future.*newer than this app.*upgrade the app"):
        open_store(db_url)


# -- round trip --------------------------------------------------------------------------------------


def test_save_list_get_round_trip_is_exact(store):
    rng = random.Random(0)
    heatmap = base64.b64encode(rng.randbytes(1_500_000)).decode()  # ~2 MB of JSON, like real explanations
    inputs = {
        "age": 71,
        "weight": 80.0,
        "tiny": 5e-324,
        "third": 1 / 3,
        "big": 10**30,
        "neg0": -0.0,
        "flag": True,
        "missing": None,
        "name": 'Zoë Ångström 患者 🩺 "quoted" \\ \n tab\t',
        "lone": "\ud800",
        "nested": {"labs": [{"k": "hb", "v": [12.1, None, 13.0]}], "empty": {}, "emptylist": []},
    }
    outputs = {
        "risks": {"readmission_30d": 0.123456789012345678, "icu": 1e-17},
        "heatmap_png_b64": heatmap,
        "grid": [[rng.random() for _ in range(64)] for _ in range(64)],
        "nan": float("nan"),
        "inf": float("inf"),
    }
    files = {
        "cxr": ("xray é.jpg", "image/jpeg", rng.randbytes(200_000)),
        "notes": ("n.txt", "text/plain", b""),
        "report": ("r.pdf", "application/pdf", bytearray(b"%PDF-1.7\x00\xff")),
    }
    before = datetime.now(UTC)
    aid = store.save_assessment(
        user="dr.ünal",
        patient_label="Mme Élodie Martin",
        model_id="mmnar-demo",
        model_version="abc123 (v1)",
        input_hash="f" * 64,
        inputs=inputs,
        outputs=outputs,
        files=files,
        pattern="EHR+CXR+NOTE",
        summary={"readmission_30d": 0.12, "n": 3},
        note="follow-up ✓",
    )
    assert isinstance(aid, int)

    [row] = store.list_assessments()
    assert isinstance(row, AssessmentSummary) and row.id == aid
    assert (row.user, row.patient_label, row.model_id, row.model_version, row.input_hash, row.pattern, row.note) == (
        "dr.ünal",
        "Mme Élodie Martin",
        "mmnar-demo",
        "abc123 (v1)",
        "f" * 64,
        "EHR+CXR+NOTE",
        "follow-up ✓",
    )
    assert row.summary == {"readmission_30d": 0.12, "n": 3}
    assert row.created_at.tzinfo is not None and row.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= row.created_at <= datetime.now(UTC) + timedelta(seconds=1)

    got = store.get_assessment(aid)
    assert isinstance(got, Assessment)
    assert canonical(got.inputs) == canonical(inputs) and canonical(got.outputs) == canonical(outputs)
    assert math.isnan(got.outputs["nan"]) and got.inputs["lone"] == "\ud800"
    assert type(got.inputs["weight"]) is float and type(got.inputs["big"]) is int
    assert got.outputs["heatmap_png_b64"] == heatmap
    assert got.created_at == row.created_at and got.summary == row.summary
    assert set(got.files) == set(files)
    for role, (filename, media_type, data) in files.items():
        f = got.files[role]
        assert (f.role, f.filename, f.media_type) == (role, filename, media_type)
        assert (f.data, f.size) == (bytes(data), len(data))
        assert isinstance(f.data, bytes) and len(f.sha256) == 64
    assert store.count_assessments() == 1
    [entry] = store.audit_log()
    assert (entry.action, entry.user, entry.model_version, entry.input_hash, entry.assessment_id) == (
        "save",
        "dr.ünal",
        "abc123 (v1)",
        "f" * 64,
        aid,
    )
    assert entry.at == got.created_at


def test_blobs_are_content_addressed_and_stored_once(store, db_url):
    image = bytes(range(256)) * 100
    a = store.save_assessment(
        **sample(1), files={"cxr": ("a.jpg", "image/jpeg", image), "copy": ("same.jpg", "image/jpeg", image)}
    )
    b = store.save_assessment(
        **sample(2), files={"cxr": ("b.jpeg", "image/jpeg", image), "notes": ("n.txt", "text/plain", b"other")}
    )
    counts = table_counts(db_url)
    assert counts["blobs"] == 2 and counts["assessment_files"] == 4
    ga, gb = store.get_assessment(a), store.get_assessment(b)
    assert ga.files["cxr"].sha256 == ga.files["copy"].sha256 == gb.files["cxr"].sha256
    assert (ga.files["copy"].filename, gb.files["cxr"].filename) == ("same.jpg", "b.jpeg")
    assert gb.files["cxr"].data == image and gb.files["notes"].data == b"other"


# -- atomicity ---------------------------------------------------------------------------------------


def test_a_failing_save_leaves_no_rows_at_all(store, db_url, monkeypatch):
    files = {"cxr": ("x.jpg", "image/jpeg", b"new bytes never stored")}
    with pytest.raises(StoreError, match=r"outputs\['probs'\] is a object"):
        store.save_assessment(**sample(outputs={"probs": object()}), files=files)
    with pytest.raises(StoreError, match=r"outputs\['a'\]\[1\] is a tuple"):
        store.save_assessment(**sample(outputs={"a": [0, (1, 2)]}), files=files)
    with pytest.raises(StoreError, match="key 3 is a int"):
        store.save_assessment(**sample(inputs={3: "x"}), files=files)
    assert table_counts(db_url) == dict.fromkeys(TABLES, 0)

    seen = {}

    def failing_audit(self, session, entry):  # everything else of the save is already inserted by now
        seen["blobs"] = session.query(Blob).count()
        seen["assessment_id"] = entry.assessment_id
        raise RuntimeError("injected failure")

    monkeypatch.setattr(Store, "_write_audit", failing_audit)
    with pytest.raises(RuntimeError, match="injected"):
        store.save_assessment(**sample(), files=files)
    assert seen["blobs"] == 1 and seen["assessment_id"] is not None
    assert table_counts(db_url) == dict.fromkeys(TABLES, 0)
    assert store.list_assessments() == [] and store.count_assessments() == 0

    monkeypatch.undo()
    aid = store.save_assessment(**sample(), files=files)
    assert store.get_assessment(aid).files["cxr"].data == b"new bytes never stored"
    assert table_counts(db_url) == {"blobs": 1, "assessments": 1, "assessment_files": 1, "audit_log": 1}


def test_audit_log_is_append_only_in_the_database(store, db_url):
    aid = store.save_assessment(**sample())
    store.record(
        action="open",
        user="nurse",
        model_version="demo (v1)",
        input_hash="ab",
        assessment_id=aid,
        detail="history page",
    )
    store.record(action="export", user="nurse")
    before = store.audit_log()
    assert [e.action for e in before] == ["export", "open", "save"]
    assert before[1].detail == "history page" and before[0].assessment_id is None
    statements = [
        "UPDATE audit_log SET detail = 'tampered'",
        "UPDATE audit_log SET username = 'x' WHERE id = 1",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE action = 'export'",
    ]
    if store.backend == "postgresql":
        statements.append("TRUNCATE audit_log")
    engine = raw_engine(db_url)
    try:
        for sql in statements:
            with pytest.raises(DBAPIError, match="append-only"):
                with engine.begin() as conn:
                    conn.execute(text(sql))
    finally:
        engine.dispose()
    assert store.audit_log() == before
    assert [e.action for e in store.audit_log(user="nurse")] == ["export", "open"]
    assert [e.user for e in store.audit_log(action="save")] == ["dr.house"]
    assert len(store.audit_log(limit=1)) == 1
    with pytest.raises(StoreError, match="no assessment with id 4242"):
        store.record(action="open", user="nurse", assessment_id=4242)
    assert store.audit_log() == before


# -- concurrency and restart ---------------------------------------------------------------------------


def test_two_threads_saving_at_once_all_succeed(store):
    n, barrier, ids, errors = 20, threading.Barrier(3), {"a": [], "b": []}, []
    shared = b"same image in every save" * 1000

    def saver(tag):
        try:
            barrier.wait()
            for i in range(n):
                ids[tag].append(
                    store.save_assessment(
                        **sample(i, user=f"user-{tag}", patient_label=f"{tag}-{i}"),
                        files={
                            "cxr": ("s.jpg", "image/jpeg", shared),
                            "own": ("o.bin", "application/octet-stream", f"{tag}{i}".encode()),
                        },
                    )
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader():
        barrier.wait()
        for _ in range(10):
            store.list_assessments(limit=5)
            store.audit_log(limit=5)

    threads = [threading.Thread(target=saver, args=(t,)) for t in ids] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    all_ids = ids["a"] + ids["b"]
    assert len(set(all_ids)) == 2 * n and store.count_assessments() == 2 * n
    assert len(store.audit_log(action="save")) == 2 * n
    got = store.get_assessment(ids["b"][7])
    assert got.patient_label == "b-7" and got.files["own"].data == b"b7" and got.files["cxr"].data == shared
    assert {s.patient_label for s in store.list_assessments(user="user-a")} == {f"a-{i}" for i in range(n)}


WORKER = r"""
import json, pathlib, sys, time
from mmnar_app.store import open_store
url, tag, go = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
deadline = time.time() + 30
while not go.exists() and time.time() < deadline:
    time.sleep(0.002)
store = open_store(url)  # both processes create/migrate the same new database at once
ids = [store.save_assessment(user=tag, patient_label=f"{tag}-{i}", model_id="m", model_version="v",
                             input_hash=str(i), inputs={"i": i}, outputs={"tag": tag, "i": i},
                             files={"cxr": ("s.png", "image/png", b"shared"),
                                    "own": ("o", "x/y", f"{tag}{i}".encode())})
       for i in range(20)]
store.close()
print(json.dumps(ids))
"""


def test_two_processes_opening_and_saving_at_once_all_succeed(db_url, tmp_path):
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db_url, tag, str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("p1", "p2")
    ]
    time.sleep(0.8)  # both have imported sqlalchemy by now (or are about to): release them together
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    for p, (_out, err) in zip(procs, results):
        assert p.returncode == 0, err
    ids = [i for out, _ in results for i in json.loads(out)]
    assert len(set(ids)) == 40
    with open_store(db_url) as store:
        assert store.count_assessments() == 40
        assert len(store.audit_log(action="save")) == 40
        assert store.get_assessment(ids[-1]).files["own"].data == b"p219"
    assert table_counts(db_url)["blobs"] == 41


def test_restart_loses_nothing_and_reopens_identically(db_url):
    store = open_store(db_url)
    ids = [
        store.save_assessment(
            **sample(i, note=f"note {i}"), files={"cxr": (f"{i}.jpg", "image/jpeg", os.urandom(1000))}
        )
        for i in range(3)
    ]
    store.record(action="open", user="dr.house", assessment_id=ids[0])
    before = ([store.get_assessment(i) for i in ids], store.list_assessments(), store.audit_log())
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.count_assessments()

    reopened = open_store(db_url)
    try:
        after = ([reopened.get_assessment(i) for i in ids], reopened.list_assessments(), reopened.audit_log())
        assert after == before
        assert reopened.count_assessments() == 3
        assert reopened.save_assessment(**sample(9)) > max(ids)
    finally:
        reopened.close()


# -- history -----------------------------------------------------------------------------------------


def test_history_search_and_filters(store):
    def save(**kw):
        aid = store.save_assessment(**sample(**kw))
        time.sleep(0.002)
        return aid

    a = save(user="alice", patient_label="ÉLODIE Martin", pattern="EHR", note="sepsis?")
    b = save(user="bob", patient_label="John 100% Smith", pattern="EHR+CXR", model_id="other")
    t_mid = datetime.now(UTC)
    time.sleep(0.002)
    c = save(user="alice", patient_label="Straße 5", pattern="EHR+CXR", note="Discussed with Élodie's GP")
    d = save(user="carol", patient_label="anon_1", pattern="", note="")

    def ids(**kw):
        return [s.id for s in store.list_assessments(**kw)]

    assert ids() == [d, c, b, a]  # newest first
    assert ids(search="élodie") == [c, a] and ids(search="ELODIE") == []  # accents matter, case does not
    assert ids(search="STRASSE") == [c] and ids(search="sepsis") == [a]
    assert ids(search="100%") == [b] and ids(search="%") == [b] and ids(search="anon_") == [d]
    assert ids(search="_1") == [d] and ids(search="") == [d, c, b, a] and ids(search="nobody") == []
    assert ids(user="alice") == [c, a] and ids(user="ALICE") == []
    assert ids(pattern="EHR+CXR") == [c, b] and ids(pattern="") == [d]
    assert ids(model_id="other") == [b]
    assert ids(since=t_mid) == [d, c] and ids(until=t_mid) == [b, a]
    assert ids(since=t_mid.replace(tzinfo=None)) == [d, c]  # naive = UTC
    assert ids(since=t_mid.astimezone(timezone(timedelta(hours=5)))) == [d, c]
    assert ids(since=t_mid + timedelta(days=1)) == [] and ids(until=t_mid - timedelta(days=1)) == []
    assert ids(user="alice", search="gp", since=t_mid, pattern="EHR+CXR") == [c]
    assert ids(limit=2) == [d, c] and ids(limit=2, offset=2) == [b, a] and ids(limit=0) == []
    with pytest.raises(StoreError, match="limit"):
        store.list_assessments(limit=-1)
    with pytest.raises(StoreError, match="since must be a datetime"):
        store.list_assessments(since="2024-01-01")


# -- configuration and errors --------------------------------------------------------------------------


def test_default_database_url(monkeypatch, tmp_path):
    monkeypatch.setenv("MMNAR_DATABASE_URL", "postgresql+psycopg://u:p@db.example:5432/mmnar")
    assert default_database_url(tmp_path / "ignored") == "postgresql+psycopg://u:p@db.example:5432/mmnar"
    monkeypatch.setenv("MMNAR_DATABASE_URL", "")
    assert default_database_url(tmp_path / "arg" / "d") == f"sqlite:///{tmp_path / 'arg' / 'd' / 'mmnar.sqlite3'}"
    assert (tmp_path / "arg" / "d").is_dir()
    monkeypatch.setenv("MMNAR_DATA_DIR", str(tmp_path / "env"))
    assert default_database_url() == f"sqlite:///{tmp_path / 'env' / 'mmnar.sqlite3'}"
    monkeypatch.delenv("MMNAR_DATA_DIR")
    monkeypatch.delenv("MMNAR_DATABASE_URL")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_database_url() == f"sqlite:///{tmp_path / 'home' / '.local' / 'share' / 'mmnar' / 'mmnar.sqlite3'}"
    with open_store(data_dir=tmp_path / "with space") as store:  # open_store(None) uses the same default
        store.save_assessment(**sample())
        assert store.backend == "sqlite" and store.url.endswith("with space/mmnar.sqlite3")
    assert (tmp_path / "with space" / "mmnar.sqlite3").is_file()


def test_bad_urls_and_unreachable_databases_give_clear_errors(tmp_path):
    with pytest.raises(StoreError, match="invalid database URL 'not a url'"):
        open_store("not a url")
    with pytest.raises(StoreError, match="unsupported database 'mysql'") as err:
        open_store("mysql://me:hunter2@db/x")
    assert "hunter2" not in str(err.value)
    with pytest.raises(StoreError, match="in-memory SQLite"):
        open_store("sqlite://")
    with pytest.raises(StoreError, match="unsupported PostgreSQL driver"):
        open_store("postgresql+asyncpg://u@h/db")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(StoreError, match="cannot create the data directory"):
        open_store(f"sqlite:///{tmp_path / 'a_file' / 'db.sqlite3'}")
    port = closed_port()
    start = time.monotonic()
    with pytest.raises(StoreError, match=rf"cannot reach PostgreSQL at 127\.0\.0\.1:{port} \(database 'mmnar'") as err:
        open_store(f"postgresql://clinician:hunter2@127.0.0.1:{port}/mmnar")
    assert "hunter2" not in str(err.value) and time.monotonic() - start < 10


def test_postgres_database_is_created_and_password_is_masked(postgres_server):
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = f"postgresql://postgres:s3cret@127.0.0.1:{postgres_server.port}/{name}"  # trust auth: any password
    with open_store(url) as store:
        assert store.backend == "postgresql"
        assert "s3cret" not in repr(store) and "s3cret" not in str(store) and "s3cret" not in store.url
        assert store.url == f"postgresql+psycopg://postgres:***@127.0.0.1:{postgres_server.port}/{name}"
        store.save_assessment(**sample())
    with open_store(url) as store:
        assert store.count_assessments() == 1


def test_bad_calls_raise_store_errors(store):
    with pytest.raises(StoreError, match="no assessment with id 12345"):
        store.get_assessment(12345)
    with pytest.raises(StoreError, match="user must not be empty"):
        store.save_assessment(**sample(user=" "))
    with pytest.raises(StoreError, match="must be \\(filename, media_type, bytes\\)"):
        store.save_assessment(**sample(), files={"cxr": b"raw bytes"})
    with pytest.raises(StoreError, match="content must be bytes"):
        store.save_assessment(**sample(), files={"cxr": ("a", "b", "text")})
    with pytest.raises(StoreError, match="outputs must be a dict"):
        store.save_assessment(**sample(outputs=[1]))
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(StoreError, match="circular"):
        store.save_assessment(**sample(outputs=loop))
    with pytest.raises(StoreError, match="NUL"):
        store.save_assessment(**sample(note="a\x00b"))
    with pytest.raises(StoreError, match="action must not be empty"):
        store.record(action="", user="u")
    assert store.count_assessments() == 0 and store.audit_log() == []


# -- pattern counts (migration 0006, the Model card's ordering-policy drift) ---------------------------


def test_pattern_counts_count_per_model_and_hold_no_patient_data(store, db_url):
    from mmnar_app.store import count_pattern, pattern_counts

    assert pattern_counts(store, "mmnar-demo").counts == {} and pattern_counts(store, "mmnar-demo").n == 0
    store.save_assessment(**sample(7, patient_label="Ada Lovelace"))
    for pattern in (5, 5, 3, 5, 15):
        count_pattern(store, "mmnar-demo", pattern)
    count_pattern(store, "other-model", 5)
    counts = pattern_counts(store, "mmnar-demo")
    assert counts.counts == {3: 1, 5: 3, 15: 1} and counts.n == 5
    assert counts.first_seen.tzinfo is not None and counts.first_seen <= counts.last_seen
    assert pattern_counts(store, "other-model").counts == {5: 1}
    engine = raw_engine(db_url)
    try:
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("pattern_counts")}
            rows = [tuple(map(str, r)) for r in conn.execute(text("SELECT * FROM pattern_counts"))]
    finally:
        engine.dispose()
    assert columns == {"model_id", "pattern", "count", "first_seen", "last_seen"}  # no patient id, label, input
    assert len(rows) == 4 and not any("Ada" in cell or f"{7:064x}" in cell for row in rows for cell in row)


def test_pattern_counts_from_many_threads_all_count(store):
    from mmnar_app.store import count_pattern, pattern_counts

    errors = []

    def worker(pattern: int) -> None:
        try:
            for _ in range(15):
                count_pattern(store, "mmnar-demo", pattern)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(p,)) for p in (1, 1, 5, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and pattern_counts(store, "mmnar-demo").counts == {1: 30, 5: 30}


def test_pattern_counts_refuse_bad_input_and_write_nothing(store):
    from mmnar_app.store import count_pattern, pattern_counts

    for model_id, pattern, words in (
        ("", 1, "model_id must not be empty"),
        ("m", -1, "pattern must be a pattern id"),
        ("m", True, "pattern must be a pattern id"),
        ("m", "3", "pattern must be"),
        ("m", 1 << 30, "pattern must be"),
        ("m" * 256, 1, "longer than 255"),
    ):
        with pytest.raises(StoreError, match=words):
            count_pattern(store, model_id, pattern)
    assert pattern_counts(store, "m").counts == {}


def test_migration_0006_is_additive(db_url):
    """A database at 0005 with a saved assessment upgrades to 0006 with the assessment unchanged."""
    from alembic import command

    from mmnar_app.store import count_pattern, pattern_counts
    from mmnar_app.store.core import alembic_config

    with open_store(db_url) as store:
        saved = store.save_assessment(**sample(3))
        before = store.get_assessment(saved)
    engine = raw_engine(db_url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005")
        with engine.connect() as conn:
            assert "pattern_counts" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()
    with open_store(db_url) as store:
        assert store.get_assessment(saved) == before and store.count_assessments() == 1
        count_pattern(store, "mmnar-demo", 1)
        assert pattern_counts(store, "mmnar-demo").counts == {1: 1}
