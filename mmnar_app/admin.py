"""The Admin page's logic: user rows, user changes with their safety rules and audit entries, and the
audit log as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from mmnar_app.store import StoreError
from mmnar_app.store.users import User, UserStore

AUDIT_COLUMNS = ["id", "at_utc", "user", "action", "model_version", "input_hash", "assessment_id", "detail"]
USER_ACTIONS = ("change role", "disable", "enable", "unlock", "set password")


def _cell(value) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def audit_csv(entries) -> str:
    """Audit entries (any order) as CSV, oldest first, times in ISO 8601 UTC."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(AUDIT_COLUMNS)
    for e in sorted(entries, key=lambda e: e.id):
        writer.writerow(
            [
                e.id,
                e.at.astimezone(UTC).isoformat(timespec="seconds"),
                _cell(e.user),
                _cell(e.action),
                _cell(e.model_version),
                _cell(e.input_hash),
                "" if e.assessment_id is None else e.assessment_id,
                _cell(e.detail),
            ]
        )
    return out.getvalue()


def export_audit_csv(db, user: str, model_version: str, limit: int = 10_000_000) -> str:
    """The whole audit log as CSV; the export itself is audited first (so it is in the file)."""
    db.record(action="export", user=user, model_version=model_version, detail="audit log csv")
    return audit_csv(db.audit_log(limit=limit))


def user_rows(users: list[User], now: datetime | None = None) -> list[dict]:
    now = now or datetime.now(UTC)
    return [
        {
            "user": u.username,
            "role": u.role,
            "status": "disabled" if u.disabled else ("locked" if u.locked(now) else "active"),
            "sign-in": "local password" if u.has_password else "OpenID Connect only",
            "locked until (UTC)": f"{u.locked_until:%Y-%m-%d %H:%M}" if u.locked(now) else "",
            "last sign-in (UTC)": f"{u.last_sign_in_at:%Y-%m-%d %H:%M}" if u.last_sign_in_at else "",
            "created (UTC)": f"{u.created_at:%Y-%m-%d %H:%M}",
        }
        for u in users
    ]


def add_user(
    users: UserStore, db, admin: str, model_version: str, username: str, role: str, password: str | None
) -> User:
    user = users.add(username, role, password or None)
    db.record(
        action="user-add",
        user=admin,
        model_version=model_version,
        detail=f"{user.username} as {user.role}" + ("" if user.has_password else " (no local password)"),
    )
    return user


def change_user(
    users: UserStore,
    db,
    admin: str,
    model_version: str,
    username: str,
    action: str,
    role: str | None = None,
    password: str | None = None,
) -> User:
    """One change by an admin, audited; refuses to lock the last admin out or an admin out of their own account."""
    target = users.get(username)
    if target is None:
        raise StoreError(f"no user {username!r}")
    removes_admin = (
        target.role == "admin"
        and not target.disabled
        and (action == "disable" or (action == "change role" and role != "admin"))
    )
    if removes_admin and target.username == admin:
        raise StoreError("you cannot disable your own account or take away your own admin role: ask another admin")
    if removes_admin and users.count_admins() <= 1:
        raise StoreError(f"{target.username} is the last active admin: make someone else admin first")
    if action == "change role":
        user, detail = users.set_role(target.username, role), f"{target.username}: {target.role} -> {role}"
    elif action == "disable":
        user, detail = users.set_disabled(target.username, True), target.username
    elif action == "enable":
        user, detail = users.set_disabled(target.username, False), target.username
    elif action == "unlock":
        user, detail = users.unlock(target.username), target.username
    elif action == "set password":
        user, detail = users.set_password(target.username, password), target.username
    else:
        raise StoreError(f"unknown action {action!r}")
    db.record(action="user-" + action.replace(" ", "-"), user=admin, model_version=model_version, detail=detail)
    return user
