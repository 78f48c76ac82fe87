"""Users of the clinician app in the store's database (table ``users``, migration 0002).

One row per user: a role (clinician, reviewer or admin), a disabled flag and, for local accounts, an
argon2id password hash (salted; never the password) with the lockout state (consecutive failures and
a locked-until time). Users who sign in through OpenID Connect may have a row without a password hash:
it maps them to a role (and can disable them in the app).

`UserStore(store)` works on an open `Store` and reuses its engine and transactions, so user changes have
the same guarantees (one transaction each, writers queue on SQLite, retried on PostgreSQL deadlocks).
Passwords and hashes never appear in messages, `repr` or logs.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Boolean, CheckConstraint, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from .core import Store, StoreError, _now
from .models import Base, UTCDateTime

from mmnar_core.roles import ROLES  # noqa: E402  (one definition for app, store and server)
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
    """Outcome of `UserStore.authenticate`. status: ok | invalid (unknown user or wrong password, not told
    apart to the user) | locked | disabled | no-password. `locked_until` for locked (also when this very
    attempt locked the account: `just_locked`)."""

    status: str
    username: str
    user: User | None = None
    locked_until: datetime | None = None
    just_locked: bool = False
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
        raise StoreError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters "
                         "(a few unrelated words are easy to remember)")
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


def _waste_time(password: str) -> None:
    """Verify against a dummy hash so an unknown user takes as long as a wrong password."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hasher().hash("dummy password that matches nothing")
    _verify(_dummy_hash, password)


def _user(row: UserRow) -> User:
    return User(username=row.username, role=row.role, has_password=row.password_hash is not None,
                disabled=bool(row.disabled), failed_attempts=int(row.failed_attempts), locked_until=row.locked_until,
                created_at=row.created_at, updated_at=row.updated_at, last_sign_in_at=row.last_sign_in_at)


class UserStore:
    """Users in the database of an open `Store` (shares its engine and transaction helpers)."""

    def __init__(self, store: Store):
        self.store = store

    def __repr__(self) -> str:
        return f"UserStore({self.store.url!r})"

    # -- reading ----------------------------------------------------------------------------------------
    def get(self, username: str) -> User | None:
        name = normalize_username(username)
        row = self.store._in_read(lambda s: s.get(UserRow, name))
        return None if row is None else _user(row)

    def list(self) -> list[User]:
        rows = self.store._in_read(lambda s: list(s.scalars(select(UserRow).order_by(UserRow.username))))
        return [_user(r) for r in rows]

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
            row = UserRow(username=name, role=role, password_hash=password_hash, disabled=False, failed_attempts=0,
                          locked_until=None, created_at=now, updated_at=now, last_sign_in_at=None)
            session.add(row)
            session.flush()
            return _user(row)

        return self.store._in_write("add the user", work)

    def _change(self, username: str, what: str, change) -> User:
        name = normalize_username(username)

        def work(session: Session) -> User:
            row = session.get(UserRow, name, with_for_update=True)
            if row is None:
                raise StoreError(f"no user {name!r}")
            change(row)
            row.updated_at = _now()
            session.flush()
            return _user(row)

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

        return self._change(username, "set the password", change)

    def set_disabled(self, username: str, disabled: bool) -> User:
        return self._change(username, "disable the user" if disabled else "enable the user",
                            lambda r: setattr(r, "disabled", bool(disabled)))

    def unlock(self, username: str) -> User:
        def change(row: UserRow) -> None:
            row.failed_attempts = 0
            row.locked_until = None

        return self._change(username, "unlock the user", change)

    # -- signing in -------------------------------------------------------------------------------------
    def authenticate(self, username: str, password: str, *, max_attempts: int = 5,
                     lockout: timedelta = timedelta(minutes=15), now: datetime | None = None) -> SignIn:
        """Check a local sign-in. `max_attempts` consecutive failures lock the account for `lockout`;
        while locked the password is not even checked. Success resets the failure count."""
        if max_attempts < 1:
            raise StoreError("max_attempts must be at least 1")
        try:
            name = normalize_username(username)
        except StoreError:
            _waste_time(password if isinstance(password, str) else "")
            return SignIn("invalid", str(username))
        if not isinstance(password, str) or len(password) > MAX_PASSWORD_LENGTH:
            password = ""
        clock = now or _now()
        row = self.store._in_read(lambda s: s.get(UserRow, name))
        if row is None:
            _waste_time(password)
            return SignIn("invalid", name)
        if row.locked_until is not None and row.locked_until > clock:
            return SignIn("locked", name, _user(row), locked_until=row.locked_until, known_user=True)
        if row.password_hash is None:
            _waste_time(password)
            return SignIn("no-password", name, _user(row), known_user=True)
        good = _verify(row.password_hash, password)  # slow on purpose: outside the write transaction
        rehash = hasher().hash(password) if good and hasher().check_needs_rehash(row.password_hash) else None

        def work(session: Session) -> SignIn:
            current = session.get(UserRow, name, with_for_update=True)
            if current is None:
                return SignIn("invalid", name)
            if current.locked_until is not None and current.locked_until > clock:
                return SignIn("locked", name, _user(current), locked_until=current.locked_until, known_user=True)
            if not good:
                current.failed_attempts = int(current.failed_attempts) + 1
                if current.failed_attempts >= max_attempts:
                    current.locked_until = clock + lockout
                    current.failed_attempts = 0
                    session.flush()
                    return SignIn("locked", name, _user(current), locked_until=current.locked_until,
                                  just_locked=True, known_user=True)
                session.flush()
                return SignIn("invalid", name, _user(current), known_user=True)
            current.failed_attempts = 0
            current.locked_until = None
            if current.disabled:
                session.flush()
                return SignIn("disabled", name, _user(current), known_user=True)
            if rehash is not None:
                current.password_hash = rehash
            current.last_sign_in_at = clock
            session.flush()
            return SignIn("ok", name, _user(current), known_user=True)

        return self.store._in_write("record the sign-in", work)


def lockout_remaining(until: datetime, now: datetime | None = None) -> str:
    seconds = max(0, int((until - (now or datetime.now(timezone.utc))).total_seconds()))
    minutes = (seconds + 59) // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
