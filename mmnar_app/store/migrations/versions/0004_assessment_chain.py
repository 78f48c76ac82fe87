"""A hash chain over saved assessments (mmnar_app.store.assessment_chain), like the audit log's (0003).

assessments gets prev_hash and entry_hash. Every assessment saved before this revision is chained here, in
id order, with the no-UPDATE trigger of 0003 lifted for that one back-fill and put back unchanged; no row is
added, removed or otherwise changed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SQLITE_NO_UPDATE = """CREATE TRIGGER assessments_no_update BEFORE UPDATE ON assessments
    BEGIN SELECT RAISE(ABORT, 'assessments is append-only: UPDATE is not allowed'); END"""
_LIFT = {
    "sqlite": (["DROP TRIGGER assessments_no_update"], [_SQLITE_NO_UPDATE]),
    "postgresql": (
        ["ALTER TABLE assessments DISABLE TRIGGER assessments_no_update_delete"],
        ["ALTER TABLE assessments ENABLE TRIGGER assessments_no_update_delete"],
    ),
}


def _chain_existing_assessments(dialect: str) -> None:
    from mmnar_app.store.assessment_chain import assessment_hash, rows_with_hashes
    from mmnar_app.store.chain import GENESIS

    bind = op.get_bind()
    hashes, prev = [], GENESIS
    for row, outputs, files in rows_with_hashes(bind):
        # a row whose outputs are already damaged is chained all the same (verify reports it): never block
        # the upgrade, never drop a row
        digest = assessment_hash(prev, row, b"" if outputs is None else outputs, files)
        hashes.append((row["id"], prev, digest))
        prev = digest
    if not hashes:
        return
    lift, restore = _LIFT.get(dialect, ([], []))
    for statement in lift:
        op.execute(statement)
    update = sa.text("UPDATE assessments SET prev_hash = :prev, entry_hash = :digest WHERE id = :id")
    for start in range(0, len(hashes), 1000):
        bind.execute(update, [{"id": i, "prev": p, "digest": d} for i, p, d in hashes[start : start + 1000]])
    for statement in restore:
        op.execute(statement)


def upgrade() -> None:
    op.add_column("assessments", sa.Column("prev_hash", sa.String(64), nullable=True))
    op.add_column("assessments", sa.Column("entry_hash", sa.String(64), nullable=True))
    _chain_existing_assessments(op.get_bind().dialect.name)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":  # SQLite >= 3.35; keeps the table's triggers
        op.execute("ALTER TABLE assessments DROP COLUMN entry_hash")
        op.execute("ALTER TABLE assessments DROP COLUMN prev_hash")
    else:
        op.drop_column("assessments", "entry_hash")
        op.drop_column("assessments", "prev_hash")
