"""Integrity: no write may replace a row of the audit log or of a saved assessment, and a hash chain over the
audit log.

SQLite: INSERT OR REPLACE / REPLACE INTO delete the old row without firing DELETE triggers (unless
recursive_triggers is on), so a BEFORE INSERT trigger refuses any insert whose key already exists (an
upsert's DO UPDATE is refused the same way); assessments and their file links get the audit log's
no-UPDATE / no-DELETE triggers; a blob (content-addressed) keeps its first bytes: a second insert of the same
hash is skipped. PostgreSQL has no REPLACE; an upsert's DO UPDATE fires the UPDATE triggers, which now also
guard assessments, assessment_files and blobs (with TRUNCATE).

The chain: audit_log gets prev_hash and entry_hash (mmnar_app.store.chain); existing entries are chained
here, in id order, with the append-only trigger lifted for that one UPDATE.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_KEYS = {
    "audit_log": ("id",),
    "assessments": ("id",),
    "assessment_files": ("assessment_id", "role"),
    "blobs": ("sha256",),
}
GUARDED = ("assessments", "assessment_files", "blobs")  # audit_log's UPDATE / DELETE triggers come from 0001
_REPLACE = "a row with this key exists (INSERT OR REPLACE, REPLACE INTO and upserts are not allowed)"


def _exists(table: str) -> str:
    keys = " AND ".join(f"{k} = NEW.{k}" for k in _KEYS[table])
    return f"EXISTS (SELECT 1 FROM {table} WHERE {keys})"


def _sqlite_triggers() -> list[str]:
    statements = []
    for table in ("audit_log", "assessments", "assessment_files"):
        statements.append(f"""CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} WHEN {_exists(table)}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: {_REPLACE}'); END""")
    statements.append(f"""CREATE TRIGGER blobs_keep_first BEFORE INSERT ON blobs WHEN {_exists("blobs")}
        BEGIN SELECT RAISE(IGNORE); END""")
    for table in GUARDED:
        for operation in ("UPDATE", "DELETE"):
            statements.append(f"""CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table}
                BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} is not allowed'); END""")
    return statements


POSTGRES_FUNCTION = """CREATE OR REPLACE FUNCTION mmnar_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'restrict_violation';
    END
    $$"""


def _postgres_triggers() -> list[str]:
    statements = [POSTGRES_FUNCTION]
    for table in GUARDED:
        statements.append(f"""CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION mmnar_append_only()""")
        statements.append(f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION mmnar_append_only()""")
    return statements


def _chain_existing_entries(dialect: str) -> None:
    from mmnar_app.store.chain import GENESIS, entry_hash
    from mmnar_app.store.models import AuditRow

    bind = op.get_bind()
    table = AuditRow.__table__
    rows = bind.execute(sa.select(table).order_by(table.c.id)).mappings().all()
    if not rows:
        return
    lift, restore = {
        "sqlite": (
            ["DROP TRIGGER audit_log_no_update"],
            [
                """CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
                       BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed'); END"""
            ],
        ),
        "postgresql": (
            ["ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete"],
            ["ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete"],
        ),
    }.get(dialect, ([], []))
    for statement in lift:
        op.execute(statement)
    prev = GENESIS
    for row in rows:
        digest = entry_hash(prev, row)
        bind.execute(table.update().where(table.c.id == row["id"]).values(prev_hash=prev, entry_hash=digest))
        prev = digest
    for statement in restore:
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("entry_hash", sa.String(64), nullable=True))
    _chain_existing_entries(dialect)
    for statement in {"sqlite": _sqlite_triggers(), "postgresql": _postgres_triggers()}.get(dialect, []):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in ("audit_log", "assessments", "assessment_files"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
        op.execute("DROP TRIGGER IF EXISTS blobs_keep_first")
        for table in GUARDED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        op.execute("ALTER TABLE audit_log DROP COLUMN entry_hash")  # SQLite >= 3.35; keeps the table's triggers
        op.execute("ALTER TABLE audit_log DROP COLUMN prev_hash")
    elif dialect == "postgresql":
        for table in GUARDED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS mmnar_append_only()")
        op.drop_column("audit_log", "entry_hash")
        op.drop_column("audit_log", "prev_hash")
