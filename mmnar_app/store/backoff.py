"""Sign-in back-off: after a few failures, each further failure doubles the wait, per user name and per
client, up to a cap (issue 18, case 8).

Why: the old lockout answered "locked" only for real accounts (so it revealed which names exist) and
anyone could keep any account locked, the last admin included. Here the state is kept for every name typed,
whether an account exists or not, so an unknown name and a real one back off alike; attempts during a
wait are refused without being counted, so no wait is ever longer than the cap after the last counted
failure, and nothing is permanent. Keys are SHA-256 digests of the kind and the name or client, never the
typed text; rows are forgotten an hour after their last failure.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, String, delete, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from .core import StoreError
from .models import Base, UTCDateTime

MAX_CAP = timedelta(hours=1)  # no setting may make a wait longer than this


class BackoffRow(Base):
    """One name or client with recent failures (migration 0005)."""

    __tablename__ = "sign_in_backoff"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256(kind, name or client)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # account | client
    failures: Mapped[int] = mapped_column(Integer, nullable=False)  # counted failures since the last reset
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


@dataclass(frozen=True)
class BackoffPolicy:
    """`free_attempts` failures cost nothing; failure n >= free_attempts then waits
    base x 2^(n - free_attempts), at most `cap`; a key with no failure for `forget_after` starts over."""

    free_attempts: int = 5
    cap: timedelta = timedelta(minutes=5)
    base: timedelta = timedelta(seconds=15)
    forget_after: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if (
            isinstance(self.free_attempts, bool)
            or not isinstance(self.free_attempts, int)
            or not 1 <= self.free_attempts <= 100
        ):
            raise StoreError(f"free sign-in attempts must be a whole number from 1 to 100, got {self.free_attempts!r}")
        if not timedelta(0) < self.cap <= MAX_CAP:
            raise StoreError(
                f"the longest sign-in back-off must be more than 0 and at most {MAX_CAP} (an admin "
                f"must never be locked out for long), got {self.cap}"
            )
        if not timedelta(0) < self.base <= self.cap:
            raise StoreError(f"the first back-off must be more than 0 and at most the cap {self.cap}, got {self.base}")
        if self.forget_after < self.cap:
            raise StoreError(f"forget_after ({self.forget_after}) must be at least the cap ({self.cap})")

    def wait(self, failures: int) -> timedelta:
        if failures < self.free_attempts:
            return timedelta(0)
        return min(self.cap, self.base * (2 ** min(failures - self.free_attempts, 30)))


def backoff_key(kind: str, value: str) -> str:
    return hashlib.sha256(f"mmnar-sign-in\0{kind}\0{value}".encode("utf-8", "surrogatepass")).hexdigest()


def blocked_until(session: Session, keys: list[str], now: datetime) -> datetime | None:
    """The latest end of a wait still running for any of `keys`, or None."""
    ends = session.scalars(
        select(BackoffRow.blocked_until).where(BackoffRow.key.in_(keys), BackoffRow.blocked_until > now)
    )
    return max(ends, default=None)


def record_failure(session: Session, key: str, kind: str, policy: BackoffPolicy, now: datetime) -> datetime | None:
    """Counts one failure for `key`; the end of the wait it starts, or None (still a free attempt)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # two first failures of one name at once must not collide on the key (PostgreSQL runs them in parallel)
    session.execute(
        insert(BackoffRow)
        .values(key=key, kind=kind, failures=0, last_failure_at=now, blocked_until=None)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    row = session.get(BackoffRow, key, with_for_update=True, populate_existing=True)
    if now - row.last_failure_at > policy.forget_after:
        row.failures = 0
    row.failures = int(row.failures) + 1
    row.last_failure_at = now
    wait = policy.wait(row.failures)
    row.blocked_until = now + wait if wait else None
    session.flush()
    return row.blocked_until


def clear(session: Session, key: str) -> None:
    session.execute(delete(BackoffRow).where(BackoffRow.key == key))


def forget_old(session: Session, policy: BackoffPolicy, now: datetime) -> None:
    """Drops keys whose last failure is older than `forget_after` (they would start over anyway)."""
    session.execute(delete(BackoffRow).where(BackoffRow.last_failure_at < now - policy.forget_after))


def account_states(session: Session, names: list[str]) -> dict[str, BackoffRow]:
    """The back-off rows of these account names, by name."""
    keys = {backoff_key("account", n): n for n in names}
    rows = session.scalars(select(BackoffRow).where(BackoffRow.key.in_(list(keys)))) if keys else []
    return {keys[r.key]: r for r in rows}
