"""How many patients the app analysed with each availability pattern, per model (table ``pattern_counts``,
migration 0006), for the Model card's ordering-policy drift check (mmnar_core.drift, docs/app.md).

Why counts only: the drift check needs the local mix of patterns, not the patients. A row holds a model id,
a pattern id (bit m = modality m present, mmnar_core.patterns), a count and when the first and the last
such patient were analysed: no patient id, label, input or input hash, so the table tells nobody who was
seen. Each count is one upsert in its own transaction (INSERT ... ON CONFLICT DO UPDATE count + 1), so two
sessions counting at once both count, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from mmnar_core.patterns import MAX_MODALITIES

from .core import Store, StoreError, _now, _text
from .models import Base, UTCDateTime


class PatternCountRow(Base):
    """Patients analysed with one pattern under one model (migration 0006)."""

    __tablename__ = "pattern_counts"
    __table_args__ = (
        CheckConstraint("pattern >= 0", name="ck_pattern_counts_pattern"),
        CheckConstraint("count >= 0", name="ck_pattern_counts_count"),
    )

    model_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    pattern: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


@dataclass(frozen=True)
class PatternCounts:
    """The counts of one model: {pattern id: patients}, and when the first and last were analysed."""

    model_id: str
    counts: dict[int, int]
    first_seen: datetime | None
    last_seen: datetime | None

    @property
    def n(self) -> int:
        return sum(self.counts.values())


def _pattern(pattern) -> int:
    if isinstance(pattern, bool) or not isinstance(pattern, int) or not 0 <= pattern < (1 << MAX_MODALITIES):
        raise StoreError(
            f"pattern must be a pattern id, a whole number from 0 to {(1 << MAX_MODALITIES) - 1}, got {pattern!r}"
        )
    return pattern


def count_pattern(store: Store, model_id: str, pattern: int) -> None:
    """One more patient analysed with `pattern` by model `model_id` (its own transaction)."""
    store._check_open()
    _text("model_id", model_id, required=True, max_len=255)
    pattern = _pattern(pattern)
    if store.backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert

    def work(session: Session) -> None:
        now = _now()
        statement = insert(PatternCountRow).values(
            model_id=model_id, pattern=pattern, count=1, first_seen=now, last_seen=now
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["model_id", "pattern"],
                set_={"count": PatternCountRow.count + 1, "last_seen": statement.excluded.last_seen},
            )
        )

    store._in_write("count the pattern", work)


def pattern_counts(store: Store, model_id: str) -> PatternCounts:
    """The counts of `model_id` (empty when it analysed nobody here yet)."""
    _text("model_id", model_id, required=True, max_len=255)
    rows = store._in_read(
        lambda s: list(
            s.execute(
                select(
                    PatternCountRow.pattern,
                    PatternCountRow.count,
                    PatternCountRow.first_seen,
                    PatternCountRow.last_seen,
                )
                .where(PatternCountRow.model_id == model_id)
                .order_by(PatternCountRow.pattern)
            )
        )
    )
    return PatternCounts(
        model_id,
        {int(r.pattern): int(r.count) for r in rows},
        min((r.first_seen for r in rows), default=None),
        max((r.last_seen for r in rows), default=None),
    )
