"""Sign-in back-off per user name and per client (mmnar_app.store.backoff): one row per SHA-256 key of a
name or client with recent failures, for unknown names as for real accounts (so a back-off does not reveal
which names exist). The users table's failed_attempts / locked_until (0002) stay, no longer written.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)  # timestamptz on PostgreSQL; naive UTC text on SQLite


def upgrade() -> None:
    op.create_table(
        "sign_in_backoff",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", UTC, nullable=False),
        sa.Column("blocked_until", UTC, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("sign_in_backoff")
