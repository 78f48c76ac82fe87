"""A populated store and its backup archive (a fixture plugin, see tests/conftest.py): `populate` fills a
store with every kind of content, `snapshot` is what the app sees of it, `counts` the rows per table, and
the `archive` fixture is a SQLite store's export with its snapshot and assessment ids."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from mmnar_app.store import Store, UserStore, open_store
from mmnar_app.store.backup import export_archive

TABLES = ("blobs", "assessments", "assessment_files", "audit_log", "users", "pattern_counts")


def populate(store: Store) -> list[int]:
    """Assessments, shared and empty files, tricky values and audit entries of every kind."""
    rng = random.Random(7)
    shared = rng.randbytes(300_000)
    ids = []
    for i in range(4):
        inputs = {
            "i": i,
            "third": 1 / 3,
            "tiny": 5e-324,
            "big": 10**30,
            "neg0": -0.0,
            "lone": "\ud800",
            "text": 'Zoë 患者 🩺 "q" \\ \n\t',
            "nested": {"a": [1, None, True, {"b": []}]},
        }
        outputs = {
            "heatmap_png_b64": base64.b64encode(rng.randbytes(400_000)).decode(),
            "nan": float("nan"),
            "inf": float("-inf"),
            "risks": [rng.random() for _ in range(100)],
        }
        files = {
            "cxr": (f"x {i}.jpg", "image/jpeg", shared),
            "own": (f"o{i}.bin", "application/octet-stream", rng.randbytes(50_000 + i)),
        }
        if i == 2:
            files["empty"] = ("empty.txt", "text/plain", b"")
        ids.append(
            store.save_assessment(
                user=f"dr.ü{i % 2}",
                patient_label=f"Mme Élodie {i}",
                model_id="mmnar-x",
                model_version="abc (v1)",
                input_hash=f"{i:064x}",
                inputs=inputs,
                outputs=outputs,
                files=files if i != 3 else None,
                pattern="EHR+CXR" if i else "",
                summary={"r": 0.1 * i},
                note=f"STRASSE {i}",
            )
        )
        store.record(action="open", user="nurse", model_version="abc (v1)", assessment_id=ids[-1], detail=f"#{i}")
    store.record(action="export", user="nurse", detail="no assessment")
    users = UserStore(store)  # the other tables of the schema (users, migration 0002) go into backups too
    users.add("alice", "admin")
    users.add("bob", "clinician")
    users.set_disabled("bob", True)
    from mmnar_app.store import count_pattern

    for pattern in (5, 5, 3):  # the drift counts (migration 0006) are kept too
        count_pattern(store, "abc", pattern)
    return ids


def snapshot(store: Store) -> tuple:
    """What the app sees: every assessment in full, the history and the whole audit log."""
    summaries = store.list_assessments(limit=10_000)
    full = []
    for s in summaries:
        a = store.get_assessment(s.id)
        full.append(
            (
                a.id,
                a.created_at,
                a.user,
                a.patient_label,
                a.note,
                json.dumps(a.inputs, allow_nan=True),
                json.dumps(a.outputs, allow_nan=True),
                a.summary,
                {r: (f.filename, f.media_type, f.sha256, f.data) for r, f in a.files.items()},
            )
        )
    return full, summaries, store.audit_log(limit=10_000), UserStore(store).list()


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in TABLES}
    finally:
        engine.dispose()


@pytest.fixture
def archive(tmp_path) -> tuple[Path, tuple, list[int]]:
    """A SQLite store with content, its archive and what the app saw before the export."""
    with open_store(f"sqlite:///{tmp_path / 'src' / 'mmnar.sqlite3'}") as store:
        ids = populate(store)
        seen = snapshot(store)
        export_archive(store, tmp_path / "backup.zip")
    return tmp_path / "backup.zip", seen, ids
