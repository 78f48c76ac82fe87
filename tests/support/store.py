"""Stores on both backends (a fixture plugin, see tests/conftest.py): `db_url` is parametrised over SQLite
and the session's PostgreSQL server, `store` is the store opened on it; `sample` is the keyword arguments of
one assessment and `raw_engine` an engine that bypasses the store."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from mmnar_app.store import open_store


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """URL of a database that does not exist yet (open_store creates it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data dir' / 'mmnar.sqlite3'}"
    server = request.getfixturevalue("postgres_server")
    return server.url(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def store(db_url):
    s = open_store(db_url)
    yield s
    s.close()


def raw_engine(url: str):
    return create_engine(url, poolclass=NullPool)


def sample(i: int = 0, **over) -> dict:
    """Keyword arguments of Store.save_assessment for assessment number `i`, with `over` replacing some."""
    kw = dict(
        user="dr.house",
        patient_label=f"Patient {i}",
        model_id="mmnar-demo",
        model_version="demo (v1)",
        input_hash=f"{i:064x}",
        inputs={"age": 60 + i, "labs": {"hb": 12.5}},
        outputs={"risk": 0.1 * i},
        pattern="EHR+CXR",
        summary={"readmission_30d": 0.1 * i},
        note="",
    )
    kw.update(over)
    return kw
