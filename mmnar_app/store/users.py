"""Users of the clinician app in the store's database (table ``users``, migration 0002).

One row per user: a role (clinician, reviewer or admin), a disabled flag and, for local accounts, an
argon2id password hash (salted; never the password). Users who sign in through OpenID Connect may have a
row without a password hash: it maps them to a role (and can disable them in the app). Failed sign-ins
back off per user name and per client in ``sign_in_backoff`` (backoff.py), for unknown names too; the
``failed_attempts`` / ``locked_until`` columns of 0002 are no longer written (`User` shows the back-off).

`UserStore(store)` works on an open `Store` and reuses its engine and transactions, so user changes have
the same guarantees (one transaction each, writers queue on SQLite, retried on PostgreSQL deadlocks).
Passwords and hashes never appear in messages, `repr` or logs.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Boolean, CheckConstraint, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from mmnar_core.roles import ROLES  # noqa: E402  (one definition for app, store and server)

from .backoff import BackoffPolicy, account_states, backoff_key, blocked_until, clear, forget_old, record_failure
from .core import Store, StoreError, _now
from .models import Base, UTCDateTime

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
USERNAME_MAX = 255


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('clinician', 'reviewer', 'admin')", name="ck_users_role"),)

    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False)
    failed_attempts: Mapped[int] = mapped_column(Integer, nullable=False)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


@dataclass(frozen=True)
class User:
    username: str
    role: str
    has_password: bool
    disabled: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime
    last_sign_in_at: datetime | None

    def locked(self, now: datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or _now())


@dataclass(frozen=True)
class SignIn:
    """Outcome of `UserStore.authenticate`. status: ok | invalid (unknown user, wrong password or no local
    password: not told apart to the user) | throttled (a back-off is running for this name or this client:
    the same for a real and an unknown name) | disabled (told only with the right password). `retry_at`:
    when the next attempt may be made (throttled, or the back-off this failure started). `reason` and
    `known_user` are for the audit log only."""

    status: str
    username: str
    user: User | None = None
    retry_at: datetime | None = None
    reason: str = ""
    known_user: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def normalize_username(username: str) -> str:
    """NFKC, trimmed, lower case (e-mail addresses and user names compare case-insensitively)."""
    if not isinstance(username, str):
        raise StoreError(f"user name must be a str, got {type(username).__name__}")
    name = unicodedata.normalize("NFKC", username).strip().lower()
    if not name:
        raise StoreError("user name must not be empty")
    if len(name) > USERNAME_MAX:
        raise StoreError(f"user name is longer than {USERNAME_MAX} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise StoreError("user name contains control or invisible characters")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise StoreError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> None:
    if not isinstance(password, str):
        raise StoreError("the password must be text")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StoreError(
            f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters "
            "(a few unrelated words are easy to remember)"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise StoreError(f"the password is longer than {MAX_PASSWORD_LENGTH} characters")
    if password != password.strip():
        raise StoreError("the password starts or ends with a space (usually a copy-and-paste mistake)")


_hasher = None
_dummy_hash: str | None = None


def hasher():
    """argon2id with argon2-cffi's defaults (RFC 9106 low-memory profile: t=3, m=64 MiB, p=4), random salt."""
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher

        _hasher = PasswordHasher()
    return _hasher


def hash_password(password: str) -> str:
    check_password(password)
    return hasher().hash(password)


def _verify(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def dummy_hash() -> str:
    """A hash with the hasher's own parameters that no password matches: verified for an unknown name, an
    account without a local password and an attempt during a back-off, so every attempt does the same
    argon2 work (one verification) whatever the account."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hasher().hash("dummy password that matches nothing")
    return _dummy_hash


def _user(row: UserRow, backoff=None, now: datetime | None = None) -> User:
    blocked = backoff.blocked_until if backoff is not None else None
    return User(
        username=row.username,
        role=row.role,
        has_password=row.password_hash is not None,
        disabled=bool(row.disabled),
        failed_attempts=int(backoff.failures) if backoff is not None else 0,
        locked_until=blocked if blocked is not None and blocked > (now or _now()) else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_sign_in_at=row.last_sign_in_at,
    )


class UserStore:
    """Users in the database of an open `Store` (shares its engine and transaction helpers)."""

    def __init__(self, store: Store):
        self.store = store

    def __repr__(self) -> str:
        return f"UserStore({self.store.url!r})"

    # -- reading ----------------------------------------------------------------------------------------
    def get(self, username: str, now: datetime | None = None) -> User | None:
        """The account as it stands at `now` (default: the clock; its back-off shows only while it runs)."""
        name = normalize_username(username)
        row, states = self.store._in_read(lambda s: (s.get(UserRow, name), account_states(s, [name])))
        return None if row is None else _user(row, states.get(name), now)

    def list(self) -> list[User]:
        def work(session: Session):
            rows = list(session.scalars(select(UserRow).order_by(UserRow.username)))
            return rows, account_states(session, [r.username for r in rows])

        rows, states = self.store._in_read(work)
        return [_user(r, states.get(r.username)) for r in rows]

    def count_admins(self) -> int:
        return sum(1 for u in self.list() if u.role == "admin" and not u.disabled)

    # -- changing ---------------------------------------------------------------------------------------
    def add(self, username: str, role: str, password: str | None = None) -> User:
        """A new user; `password` None makes a row without local password (an OIDC user's role)."""
        name, role = normalize_username(username), check_role(role)
        password_hash = hash_password(password) if password is not None else None

        def work(session: Session) -> User:
            if session.get(UserRow, name) is not None:
                raise StoreError(f"user {name!r} already exists")
            now = _now()
            row = UserRow(
                username=name,
                role=role,
                password_hash=password_hash,
                disabled=False,
                failed_attempts=0,
                locked_until=None,
                created_at=now,
                updated_at=now,
                last_sign_in_at=None,
            )
            session.add(row)
            session.flush()
            return _user(row)

        return self.store._in_write("add the user", work)

    def _change(self, username: str, what: str, change, *, reset_backoff: bool = False) -> User:
        name = normalize_username(username)

        def work(session: Session) -> User:
            row = session.get(UserRow, name, with_for_update=True)
            if row is None:
                raise StoreError(f"no user {name!r}")
            change(row)
            row.updated_at = _now()
            if reset_backoff:
                clear(session, backoff_key("account", name))
            session.flush()
            return _user(row, account_states(session, [name]).get(name))

        return self.store._in_write(what, work)

    def set_role(self, username: str, role: str) -> User:
        role = check_role(role)
        return self._change(username, "change the role", lambda r: setattr(r, "role", role))

    def set_password(self, username: str, password: str | None) -> User:
        """A new password (also unlocks); None removes the local password."""
        password_hash = hash_password(password) if password is not None else None

        def change(row: UserRow) -> None:
            row.password_hash = password_hash
            row.failed_attempts = 0
            row.locked_until = None

        return self._change(username, "set the password", change, reset_backoff=True)

    def set_disabled(self, username: str, disabled: bool) -> User:
        return self._change(
            username,
            "disable the user" if disabled else "enable the user",
            lambda r: setattr(r, "disabled", bool(disabled)),
        )

    def unlock(self, username: str) -> User:
        """Ends the user name's back-off now (an admin's unlock; the clients' own back-offs keep running)."""

        def change(row: UserRow) -> None:
            row.failed_attempts = 0
            row.locked_until = None

        return self._change(username, "unlock the user", change, reset_backoff=True)

    # -- signing in -------------------------------------------------------------------------------------
    def authenticate(
        self,
        username: str,
        password: str,
        *,
        client: str | None = None,
        policy: BackoffPolicy | None = None,
        now: datetime | None = None,
    ) -> SignIn:
        """Check a local sign-in from `client` (an address or a session id). Every call verifies exactly one
        argon2 hash (the account's, else the dummy one). Failures count for the typed name (existing or
        not) and for the client; during a back-off of either the attempt is refused unchecked and uncounted.
        Success ends the name's back-off, not the client's."""
        policy = policy or BackoffPolicy()
        try:
            name = normalize_username(username)
        except StoreError:
            name = None
        shown = name or str(username)[:USERNAME_MAX]
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            password = ""
        clock = now or _now()
        keys = [backoff_key("account", name if name is not None else "invalid\0" + shown)]
        if client:
            keys.append(backoff_key("client", client))

        def read(session: Session):
            return (session.get(UserRow, name) if name is not None else None), blocked_until(session, keys, clock)

        row, until = self.store._in_read(read)
        if until is not None:
            _verify(dummy_hash(), password)
            return SignIn(
                "throttled", shown, retry_at=until, reason="refused during a back-off", known_user=row is not None
            )
        stored = row.password_hash if row is not None else None
        good = _verify(stored or dummy_hash(), password) and stored is not None  # slow: outside the transaction
        rehash = hasher().hash(password) if good and hasher().check_needs_rehash(stored) else None

        def work(session: Session) -> SignIn:
            current = session.get(UserRow, name, with_for_update=True) if name is not None else None
            running = blocked_until(session, keys, clock)  # a parallel attempt may have started one meanwhile
            if running is not None:
                return SignIn(
                    "throttled",
                    shown,
                    retry_at=running,
                    reason="refused during a back-off",
                    known_user=current is not None,
                )
            if good and current is not None and current.password_hash == stored:
                clear(session, keys[0])
                if current.disabled:
                    return SignIn("disabled", name, _user(current), reason="account disabled", known_user=True)
                if rehash is not None:
                    current.password_hash = rehash
                current.last_sign_in_at = clock
                session.flush()
                return SignIn("ok", name, _user(current), known_user=True)
            ends = [record_failure(session, keys[0], "account", policy, clock)]
            if client:
                ends.append(record_failure(session, keys[1], "client", policy, clock))
            forget_old(session, policy, clock)
            reason = (
                "unknown user"
                if current is None
                else "no local password (an OpenID Connect user)"
                if current.password_hash is None
                else "wrong password"
            )
            user = None if current is None else _user(current, account_states(session, [name]).get(name), clock)
            return SignIn(
                "invalid",
                shown,
                user,
                retry_at=max((e for e in ends if e), default=None),
                reason=reason,
                known_user=current is not None,
            )

        return self.store._in_write("record the sign-in", work)


def lockout_remaining(until: datetime, now: datetime | None = None) -> str:
    """'45 seconds' or '3 minutes' (rounded up) until `until`."""
    seconds = max(1, math.ceil((until - (now or datetime.now(UTC))).total_seconds()))
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = (seconds + 59) // 60
    return f"{minutes} minutes"
