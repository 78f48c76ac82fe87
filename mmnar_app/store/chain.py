"""A hash chain over the audit log: each entry holds the hash of the one before it.

Why: triggers stop UPDATE, DELETE and REPLACE from the app's connections, but whoever owns the database
can drop them. With the chain, an entry changed, removed or slipped in anywhere breaks every later link,
and `verify_chain` (``python -m mmnar_app.store.verify``) names the first broken entry. Keep the reported
head hash somewhere else (a ticket, a log server): a log rewritten from the start with a new chain then
no longer ends in it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text

GENESIS = "0" * 64  # the "previous hash" of the first entry
CHAIN_LOCK_KEY = 0x6D6D6E6163  # pg_advisory_xact_lock key: one chain writer at a time on PostgreSQL
FIELDS = ("at", "username", "action", "model_version", "input_hash", "assessment_id", "detail")


def _at(value: datetime) -> str:
    if value.tzinfo is None:  # the store keeps naive UTC on SQLite
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(prev_hash: str, values: Mapping[str, Any]) -> str:
    """SHA-256 of the previous hash and the entry's fields (not its id: ids are the chain's order)."""
    fields = [_at(values["at"]) if name == "at" else values[name] for name in FIELDS]
    payload = json.dumps([prev_hash, *fields], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def chain_values(conn, values: Mapping[str, Any]) -> dict[str, str]:
    """prev_hash and entry_hash for a new entry appended in this write transaction (`conn`: a Session or
    a Connection). On PostgreSQL an advisory lock orders chain writers; SQLite writers are already one at a
    time (BEGIN IMMEDIATE)."""
    dialect = conn.dialect if hasattr(conn, "dialect") else conn.get_bind().dialect  # a Connection or a Session
    if dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    last = conn.execute(text("SELECT entry_hash FROM audit_log ORDER BY id DESC LIMIT 1")).scalar()
    prev = last or GENESIS
    return {"prev_hash": prev, "entry_hash": entry_hash(prev, values)}


@dataclass
class ChainReport:
    """What verify_chain found: the number of entries, the last hash, and each break (empty when intact)."""

    entries: int = 0
    head: str = GENESIS
    breaks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    def to_dict(self) -> dict:
        return {"ok": self.ok, "entries": self.entries, "head": self.head, "breaks": self.breaks}


def verify_chain(conn, max_breaks: int = 20) -> ChainReport:
    """Walks the audit log in id order and reports every entry whose link or content does not match."""
    from .models import AuditRow

    table = AuditRow.__table__
    report, expected = ChainReport(), GENESIS
    for row in conn.execute(select(table).order_by(table.c.id)).mappings():
        report.entries += 1
        values = {name: row[name] for name in FIELDS}
        if row["prev_hash"] != expected:
            report.breaks.append(
                f"audit entry {row['id']}: its previous-entry hash does not match the entry before "
                "it (an entry was removed, inserted or changed before this one)"
            )
        recomputed = entry_hash(row["prev_hash"] or GENESIS, values)
        if row["entry_hash"] != recomputed:
            report.breaks.append(
                f"audit entry {row['id']}: its content does not match its hash (the entry was "
                "changed after it was written)"
            )
        expected = row["entry_hash"] or recomputed
        if len(report.breaks) >= max_breaks:
            report.breaks.append(f"stopped after {max_breaks} breaks")
            break
    report.head = expected
    return report
