"""Pattern counts (mmnar_app.store.pattern_counts): how many patients the app analysed with each availability
pattern, per model, for the Model card's ordering-policy drift check (mmnar_core.drift). Counts and two
timestamps only: no patient id, label, input or hash. Additive: no existing table changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC = sa.DateTime(timezone=True)  # timestamptz on PostgreSQL; naive UTC text on SQLite


def upgrade() -> None:
    op.create_table(
        "pattern_counts",
        sa.Column("model_id", sa.String(255), primary_key=True),
        sa.Column("pattern", sa.Integer(), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", UTC, nullable=False),
        sa.Column("last_seen", UTC, nullable=False),
        sa.CheckConstraint("pattern >= 0", name="ck_pattern_counts_pattern"),
        sa.CheckConstraint("count >= 0", name="ck_pattern_counts_count"),
    )


def downgrade() -> None:
    op.drop_table("pattern_counts")
