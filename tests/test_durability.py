"""Durability of the store under faults: SQLite settings, one transaction per save, and SIGKILL mid-save.

The kill tests run a real child process that opens the store and saves large assessments (multi-MB
outputs and images) in a loop, kill it with SIGKILL at varied moments (at random, inside a save's
transaction, right as it commits), reopen the store in this process and check that the database is
consistent: every save is whole or absent, the audit log agrees with the assessments, every file link
points at a blob whose bytes hash to its name, and every save the child saw return is still there.
"""

from __future__ import annotations

import hashlib
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

import mmnar_app.store.core as store_core
from mmnar_app.store import StoreError, open_store

ROOT = Path(__file__).resolve().parents[1]

# Deterministic payload of save number i, shared by the child (exec'd there) and the checks here.
PAYLOAD = r"""
import base64, hashlib, random

def payload(i):
    rng = random.Random(i)
    return dict(
        user="kill-test", patient_label=f"kill {i}", model_id="mmnar-kill", model_version="v1",
        input_hash=hashlib.sha256(str(i).encode()).hexdigest(), pattern="EHR+CXR", note=f"save {i}",
        inputs={"i": i, "age": rng.randint(18, 99), "labs": [rng.random() for _ in range(50)]},
        outputs={"i": i, "heatmap_png_b64": base64.b64encode(rng.randbytes(1_500_000)).decode(),
                 "risks": {"readmission_30d": rng.random()}},
        files={"cxr": ("cxr.png", "image/png", rng.randbytes(3_000_000)),
               "ct": ("ct.dcm", "application/dicom", rng.randbytes(1_500_000)),
               "shared": ("logo.png", "image/png", b"same bytes in every save" * 100)},
        summary={"readmission_30d": rng.random()})
"""
_ns: dict = {}
exec(PAYLOAD, _ns)
payload = _ns["payload"]

CHILD = (
    PAYLOAD
    + r"""
import sys
from sqlalchemy import event
from mmnar_app.store import open_store

url, i = sys.argv[1], int(sys.argv[2])
store = open_store(url)

def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

@event.listens_for(store._engine, "begin")
def _began(conn):
    if conn.get_execution_options().get("mmnar_write"):
        say(f"tx {i}")

@event.listens_for(store._engine, "commit")
def _committing(conn):  # fires just before COMMIT is sent
    say(f"commit {i}")

say("ready")
while True:
    kw = payload(i)
    say(f"start {i}")
    aid = store.save_assessment(**kw)
    say(f"done {i} {aid}")
    i += 1
"""
)

ROLES = {"cxr", "ct", "shared"}


# -- SQLite settings -----------------------------------------------------------------------------------


def _pragmas(conn) -> dict:
    return {
        name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
        for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")
    }


def test_sqlite_runs_in_wal_mode_with_busy_timeout_on_every_connection(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    try:
        with store._engine.connect() as a, store._engine.connect() as b:  # two pooled connections
            for conn in (a, b):
                assert _pragmas(conn) == {
                    "journal_mode": "wal",
                    "busy_timeout": 10_000,
                    "synchronous": 2,
                    "foreign_keys": 1,
                }
        store.save_assessment(**_small(0))
        assert (tmp_path / "db.sqlite3-wal").exists()
    finally:
        store.close()
    # WAL is persistent in the file: a plain sqlite3 connection sees it too
    raw = sqlite3.connect(tmp_path / "db.sqlite3")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def _small(i: int) -> dict:
    return dict(
        user="u",
        patient_label=f"p{i}",
        model_id="m",
        model_version="v",
        input_hash=str(i),
        inputs={"i": i},
        outputs={"i": i},
    )


def _hold_write_lock(path: Path, seconds: float, locked: threading.Event) -> threading.Thread:
    def run():
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "INSERT INTO audit_log (at, username, action, model_version, input_hash, detail) "
            "VALUES ('2025-01-01 00:00:00.000000', 'locker', 'lock', '', '', '')"
        )
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_sqlite_writers_wait_for_the_lock_and_readers_are_never_blocked(tmp_path):
    path = tmp_path / "db.sqlite3"
    store = open_store(f"sqlite:///{path}")
    try:
        first = store.save_assessment(**_small(0))
        locked = threading.Event()
        holder = _hold_write_lock(path, 1.0, locked)
        assert locked.wait(10)
        start = time.monotonic()
        assert [s.id for s in store.list_assessments()] == [first]  # WAL: the reader does not wait
        assert store.get_assessment(first).inputs == {"i": 0}
        assert time.monotonic() - start < 0.5
        second = store.save_assessment(**_small(1))  # queues on the busy timeout instead of failing
        waited = time.monotonic() - start
        holder.join()
        assert 0.7 <= waited < 10, waited
        assert second == first + 1
        assert [e.action for e in store.audit_log()] == ["save", "lock", "save"]
    finally:
        store.close()


def test_sqlite_lock_held_past_the_busy_timeout_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(store_core, "SQLITE_BUSY_TIMEOUT_S", 0.3)
    path = tmp_path / "db.sqlite3"
    store = open_store(f"sqlite:///{path}")
    try:
        with store._engine.connect() as conn:
            assert _pragmas(conn)["busy_timeout"] == 300
        locked = threading.Event()
        holder = _hold_write_lock(path, 1.5, locked)
        assert locked.wait(10)
        start = time.monotonic()
        with pytest.raises(StoreError, match=r"stayed locked by another connection \(waited up to 0\.3 s\)"):
            store.save_assessment(**_small(0))
        assert 0.25 <= time.monotonic() - start < 1.4
        holder.join()
        assert store.count_assessments() == 0
        store.save_assessment(**_small(0))
        assert store.count_assessments() == 1
    finally:
        store.close()


# -- one transaction per save ----------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mmnar.sqlite3'}"
    return request.getfixturevalue("postgres_server").url(f"d_{uuid.uuid4().hex[:16]}")


def test_a_save_is_exactly_one_transaction(db_url):
    store = open_store(db_url)
    log: list[str] = []
    engine = store._engine
    listeners = [
        (engine, "begin", lambda conn: log.append("<begin>")),
        (engine, "commit", lambda conn: log.append("<commit>")),
        (engine, "rollback", lambda conn: log.append("<rollback>")),
        (engine, "before_cursor_execute", lambda conn, cur, stmt, *a: log.append(" ".join(stmt.split()[:3]).upper())),
    ]
    for target, name, fn in listeners:
        event.listen(target, name, fn)
    try:
        kw = payload(1)
        store.save_assessment(**kw)
    finally:
        for target, name, fn in listeners:
            event.remove(target, name, fn)
        store.close()
    assert log.count("<begin>") == 1 and log.count("<commit>") == 1 and "<rollback>" not in log, log
    if db_url.startswith("sqlite"):  # the store's own begin listener takes the write lock up front
        assert log.count("BEGIN IMMEDIATE") == 1 and set(log[:2]) == {"<begin>", "BEGIN IMMEDIATE"}, log
        log.remove("BEGIN IMMEDIATE")
    assert log[0] == "<begin>" and log[-1] == "<commit>", log  # nothing runs outside the one transaction
    inside = log[1:-1]
    writes = [s for s in inside if s.startswith(("INSERT", "UPDATE", "DELETE"))]
    assert [w.split()[2] for w in writes] == [
        "BLOBS",
        "BLOBS",
        "BLOBS",
        "ASSESSMENTS",
        "ASSESSMENT_FILES",
        "AUDIT_LOG",
    ], writes


# -- SIGKILL mid-save ----------------------------------------------------------------------------------


class Child:
    """The saving child process; its stdout lines arrive on a queue with their arrival time."""

    def __init__(self, url: str, first: int, log: Path):
        self.stderr = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(first)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self.log = log
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().strip())
        self.lines.put(None)

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        found = 0
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"child never printed {prefix!r} x{count}; saw {self.seen[-5:]}") from None
            if line is None:
                raise AssertionError(
                    f"child exited ({self.proc.wait()}) before {prefix!r}: "
                    f"{self.log.read_text(errors='replace')[-2000:]}"
                )
            self.seen.append(line)
            if line.startswith(prefix):
                found += 1
                if found == count:
                    return

    def kill(self) -> None:
        assert self.proc.poll() is None, f"child died on its own: {self.log.read_text(errors='replace')[-2000:]}"
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL
        while True:  # drain what it wrote before dying (the pipe keeps it)
            line = self.lines.get(timeout=30)
            if line is None:
                break
            self.seen.append(line)
        self.stderr.close()

    def progress(self) -> tuple[set[int], int | None, str]:
        """(numbers whose save returned, the number in progress at the kill or None, phase of that save)."""
        done = {int(line.split()[1]) for line in self.seen if line.startswith("done ")}
        last = self.seen[-1]
        word, _, number = last.partition(" ")
        if word == "done" or word == "ready":
            return done, None, "between saves"
        phase = {"start": "before its transaction", "tx": "inside its transaction", "commit": "while committing"}[word]
        return done, int(number), phase


def check_invariants(url: str) -> dict[int, int]:
    """Consistency of the whole database; returns save number -> assessment id."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalars().all() == ["ok"]
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            assessments = dict(conn.execute(text("SELECT id, created_at FROM assessments")).all())
            saves = conn.execute(text("SELECT assessment_id, at FROM audit_log WHERE action = 'save'")).all()
            # an assessment row exists iff its "save" audit entry exists, exactly one, written with it
            assert sorted(a for a, _ in saves) == sorted(assessments)
            assert all(at == assessments[a] for a, at in saves)
            links = conn.execute(text("SELECT assessment_id, role, blob_sha256 FROM assessment_files")).all()
            roles: dict[int, set] = {}
            for aid, role, _ in links:
                roles.setdefault(aid, set()).add(role)
            assert {a: roles.get(a, set()) for a in assessments} == {a: ROLES for a in assessments}  # whole saves
            blobs = {}
            for sha, size, data in conn.execute(text("SELECT sha256, size, data FROM blobs")):
                data = bytes(data)
                assert hashlib.sha256(data).hexdigest() == sha and len(data) == size, f"blob {sha} corrupted"
                blobs[sha] = size
            assert {sha for _, _, sha in links} == set(blobs)  # every link resolves, no blob left by a partial save
            numbers = {}
            for aid, label in conn.execute(text("SELECT id, patient_label FROM assessments")):
                numbers[int(label.split()[1])] = aid
            assert len(numbers) == len(assessments)
            return numbers
    finally:
        engine.dispose()


def check_content(url: str, numbers: dict[int, int], which: set[int]) -> None:
    with open_store(url) as store:
        for i in sorted(which):
            got, want = store.get_assessment(numbers[i]), payload(i)
            assert (got.inputs, got.outputs, got.summary, got.note) == (
                want["inputs"],
                want["outputs"],
                want["summary"],
                want["note"],
            )
            assert {r: (f.filename, f.media_type, f.data) for r, f in got.files.items()} == want["files"]


def wait_for_backends_to_go(url: str, timeout: float = 20) -> None:
    """After killing a PostgreSQL client, wait until its server backend has finished (commit or rollback)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with engine.connect() as conn:
                others = conn.execute(
                    text(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid()"
                    )
                ).scalar()
            if not others:
                return
            assert time.monotonic() < deadline, "a killed client's backend is still running"
            time.sleep(0.05)
    finally:
        engine.dispose()


STRATEGIES = ["random", "in-transaction", "at-commit"]


def run_kill_rounds(url: str, tmp_path: Path, rounds: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    open_store(url).close()  # created and migrated before the first child
    results, next_number, present_before = [], 0, set()
    for r in range(rounds):
        strategy = STRATEGIES[r % len(STRATEGIES)]
        child = Child(url, next_number, tmp_path / f"child-{r}.log")
        child.wait_for("ready")
        if strategy == "random":
            time.sleep(rng.uniform(0.05, 1.0))
        elif strategy == "in-transaction":
            child.wait_for("tx", rng.randint(1, 3))
            time.sleep(rng.uniform(0.0, 0.03))
        else:
            child.wait_for("commit", rng.randint(1, 3))
        child.kill()
        done, pending, phase = child.progress()
        if url.startswith("postgresql"):
            wait_for_backends_to_go(url)
        numbers = check_invariants(url)
        assert done <= set(numbers), f"round {r}: saves {sorted(done - set(numbers))} returned but are gone"
        started = {int(line.split()[1]) for line in child.seen if line.startswith("start ")}
        assert set(numbers) - present_before <= started, "an assessment appeared that was never saved"
        new = set(numbers) - present_before
        check_content(url, numbers, new)  # every surviving save is exactly what was saved
        outcome = None if pending is None else ("committed (whole)" if pending in numbers else "rolled back (absent)")
        results.append(
            {
                "round": r,
                "strategy": strategy,
                "saves_returned": len(done),
                "kill_landed": phase,
                "interrupted_save": outcome,
            }
        )
        present_before = set(numbers)
        next_number = max(started | {next_number - 1}) + 1
    with open_store(url) as store:  # the store works normally afterwards
        aid = store.save_assessment(**payload(next_number))
        assert store.get_assessment(aid).files["cxr"].data == payload(next_number)["files"]["cxr"][2]
        assert len(store.audit_log(action="save", limit=10_000)) == store.count_assessments()
    check_invariants(url)
    return results


def _report(backend: str, seed: int, results: list[dict]) -> None:
    mid = [x for x in results if x["kill_landed"] != "between saves"]
    print(
        f"\n{backend}: seed {seed}, {len(results)} kills, {len(mid)} mid-save; "
        f"{sum(x['interrupted_save'] == 'rolled back (absent)' for x in results)} rolled back, "
        f"{sum(x['interrupted_save'] == 'committed (whole)' for x in results)} committed without the child "
        "seeing it return"
    )
    for x in results:
        print("  ", x)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.slow
def test_sigkill_during_saves_leaves_a_consistent_database(backend, tmp_path, request):
    seed = int(os.environ.get("MMNAR_KILL_SEED") or random.SystemRandom().randrange(10**6))
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'kill.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").url(f"k_{uuid.uuid4().hex[:16]}")
    results = run_kill_rounds(url, tmp_path, rounds=9, seed=seed)
    _report(backend, seed, results)
    mid = [x for x in results if x["kill_landed"] != "between saves"]
    assert len(mid) >= 6, f"seed {seed}: too few kills landed during a save: {results}"
    in_tx = [x for x in results if x["kill_landed"] in ("inside its transaction", "while committing")]
    assert len(in_tx) >= 3, f"seed {seed}: too few kills landed inside a transaction: {results}"
    assert any(x["interrupted_save"] == "rolled back (absent)" for x in in_tx), results
