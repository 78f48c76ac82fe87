"""A hash chain over saved assessments, like the audit log's (chain.py).

Why: triggers refuse UPDATE / DELETE / REPLACE on assessments, but a database owner can drop them and
change a saved assessment with plain SQL; nothing recorded it (issue 18, case 7). Each assessment now holds
`prev_hash` (the assessment before it's `entry_hash`; 64 zeros for the first) and `entry_hash`, the SHA-256
of `prev_hash`, every stored column (outputs by the SHA-256 of their uncompressed JSON, so a backup that
re-compresses them keeps the hash) and its file links (role, name, media type, content SHA-256).
`verify_assessment_chain` names every assessment whose content or link does not match.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select, text

from .chain import CHAIN_LOCK_KEY, GENESIS, ChainReport, _at

FIELDS = (
    "created_at",
    "username",
    "patient_label",
    "model_id",
    "model_version",
    "input_hash",
    "pattern",
    "note",
    "summary_json",
    "inputs_json",
    "outputs_size",
)


def assessment_hash(
    prev_hash: str, values: Mapping[str, Any], outputs_json: bytes, files: Iterable[tuple[str, str, str, str]]
) -> str:
    """SHA-256 of the previous hash, the columns, the outputs' JSON and the (role, filename, media type,
    sha256) file links; not the id (ids are the chain's order)."""
    fields = [_at(values[name]) if name == "created_at" else values[name] for name in FIELDS]
    links = sorted([str(r), str(n), str(m), str(s)] for r, n, m, s in files)
    payload = json.dumps(
        [prev_hash, *fields, hashlib.sha256(outputs_json).hexdigest(), links], ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def next_assessment_hashes(
    conn, values: Mapping[str, Any], outputs_json: bytes, files: Iterable[tuple[str, str, str, str]]
) -> dict[str, str]:
    """prev_hash / entry_hash for an assessment inserted next in this write transaction (the same advisory
    lock as the audit chain orders writers on PostgreSQL; SQLite writers are one at a time already)."""
    dialect = conn.dialect if hasattr(conn, "dialect") else conn.get_bind().dialect
    if dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
    last = conn.execute(text("SELECT entry_hash FROM assessments ORDER BY id DESC LIMIT 1")).scalar()
    prev = last or GENESIS
    return {"prev_hash": prev, "entry_hash": assessment_hash(prev, values, outputs_json, files)}


def _links(conn) -> dict[int, list[tuple[str, str, str, str]]]:
    from .models import AssessmentFile

    f = AssessmentFile.__table__.c
    out: dict[int, list] = {}
    for row in conn.execute(select(f.assessment_id, f.role, f.filename, f.media_type, f.blob_sha256)):
        out.setdefault(int(row.assessment_id), []).append((row.role, row.filename, row.media_type, row.blob_sha256))
    return out


def rows_with_hashes(conn):
    """(row, outputs JSON bytes or None when unreadable, file links) for every assessment in id order,
    streamed (outputs can be megabytes each)."""
    from .models import AssessmentRow

    table = AssessmentRow.__table__
    links = _links(conn)
    result = conn.execute(select(table).order_by(table.c.id).execution_options(stream_results=True, yield_per=50))
    for row in result.mappings():
        try:
            outputs = zlib.decompress(bytes(row["outputs_zjson"]))
        except zlib.error:
            outputs = None
        yield row, outputs, links.get(int(row["id"]), [])


def verify_assessment_chain(conn, max_breaks: int = 20) -> ChainReport:
    """Walks the assessments in id order and reports every one whose link or content does not match."""
    report, expected = ChainReport(), GENESIS
    for row, outputs, files in rows_with_hashes(conn):
        report.entries += 1
        aid = row["id"]
        if row["prev_hash"] != expected:
            report.breaks.append(
                f"assessment {aid}: its previous-assessment hash does not match the assessment "
                "before it (an assessment was removed, inserted or changed before this one)"
            )
        if outputs is None:
            report.breaks.append(f"assessment {aid}: its outputs cannot be decompressed (changed after saving)")
            recomputed = None
        else:
            recomputed = assessment_hash(row["prev_hash"] or GENESIS, row, outputs, files)
            if row["entry_hash"] != recomputed:
                report.breaks.append(
                    f"assessment {aid}: its content or files do not match its hash (the assessment "
                    "was changed after it was saved)"
                )
        expected = row["entry_hash"] or recomputed or GENESIS
        if len(report.breaks) >= max_breaks:
            report.breaks.append(f"stopped after {max_breaks} breaks")
            break
    report.head = expected
    return report
