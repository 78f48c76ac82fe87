"""SQLAlchemy 2.x declarative models of the store.

They describe the schema for queries and for ``alembic revision --autogenerate`` comparisons; the
schema itself is created and changed only by the Alembic migrations in ``migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text, TypeDecorator
from sqlalchemy import DateTime as _DateTime
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGSERIAL.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes in and out (timestamptz on PostgreSQL, naive UTC text on SQLite).

    Naive datetimes given as parameters are taken to be UTC already.
    """

    impl = _DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Blob(Base):
    """Uploaded file contents, content-addressed by SHA-256 and stored once."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class AssessmentRow(Base):
    __tablename__ = "assessments"
    __table_args__ = (
        Index("ix_assessments_created_at", "created_at"),
        Index("ix_assessments_username", "username"),
        Index("ix_assessments_model_id", "model_id"),
        Index("ix_assessments_pattern", "pattern"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    username: Mapped[str] = mapped_column(String(255), nullable=False)
    patient_label: Mapped[str] = mapped_column(Text, nullable=False)
    model_id: Mapped[str] = mapped_column(String(255), nullable=False)
    model_version: Mapped[str] = mapped_column(String(255), nullable=False)
    input_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    pattern: Mapped[str] = mapped_column(String(255), nullable=False)
    note: Mapped[str] = mapped_column(Text, nullable=False)
    # NFKC + casefold of patient_label and note, so search is case-insensitive for any script on both backends
    search_text: Mapped[str] = mapped_column(Text, nullable=False)
    summary_json: Mapped[str] = mapped_column(Text, nullable=False)
    inputs_json: Mapped[str] = mapped_column(Text, nullable=False)
    outputs_zjson: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # zlib(JSON)
    outputs_size: Mapped[int] = mapped_column(BigInteger, nullable=False)  # uncompressed JSON bytes
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # entry_hash of the one before
    entry_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # assessment_chain.py (0004)


class AssessmentFile(Base):
    __tablename__ = "assessment_files"
    __table_args__ = (Index("ix_assessment_files_blob_sha256", "blob_sha256"),)

    assessment_id: Mapped[int] = mapped_column(BigId, ForeignKey("assessments.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(255), primary_key=True)
    filename: Mapped[str] = mapped_column(Text, nullable=False)
    media_type: Mapped[str] = mapped_column(String(255), nullable=False)
    blob_sha256: Mapped[str] = mapped_column(String(64), ForeignKey("blobs.sha256"), nullable=False)


class AuditRow(Base):
    """Append-only: database triggers reject UPDATE, DELETE and any insert that would replace a row (and
    TRUNCATE on PostgreSQL); prev_hash / entry_hash chain the entries (mmnar_app.store.chain)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_username", "username"),
        Index("ix_audit_log_action", "action"),
        Index("ix_audit_log_assessment_id", "assessment_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    username: Mapped[str] = mapped_column(String(255), nullable=False)
    action: Mapped[str] = mapped_column(String(255), nullable=False)
    model_version: Mapped[str] = mapped_column(String(255), nullable=False)
    input_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    assessment_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("assessments.id"), nullable=True)
    detail: Mapped[str] = mapped_column(Text, nullable=False)
    prev_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # entry_hash of the entry before
    entry_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)  # of prev_hash and this entry
