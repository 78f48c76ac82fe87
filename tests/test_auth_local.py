"""Local accounts (MMNAR_AUTH=local): argon2id hashes in the users table (SQLite and PostgreSQL), lockout
after repeated failures, disabled users, the accounts command, and the sign-in form of the app (AppTest):
wrong password, lockout, success, a user disabled mid-session, sign-out; every step audited."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from postgres_server import postgres_server  # noqa: F401  (session fixture)
from streamlit.testing.v1 import AppTest

from conftest import ROOT
from mmnar_app.store import StoreError, UserStore, open_store
from mmnar_app.store.users import hash_password

PASSWORD = "correct horse battery staple"


@pytest.fixture(params=["sqlite", "postgresql"])
def users(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'users.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_server").url(f"u_{uuid.uuid4().hex[:12]}")
    store = open_store(url)
    yield UserStore(store)
    store.close()


def test_passwords_are_salted_argon2id_hashes_never_plain_text(users):
    users.add("Dr.Lee@Example.org", "clinician", PASSWORD)
    users.add("dr.kim", "reviewer", PASSWORD)
    from sqlalchemy import text

    with users.store._engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT username, password_hash FROM users")).all())
    assert set(stored) == {"dr.lee@example.org", "dr.kim"}  # user names are case-insensitive
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in stored.values())
    assert stored["dr.lee@example.org"] != stored["dr.kim"]  # same password, different salt
    assert PASSWORD not in repr(users.get("dr.kim")) and "argon2" not in repr(users.get("dr.kim"))
    assert users.authenticate("DR.LEE@example.org", PASSWORD).ok
    assert users.authenticate("dr.lee@example.org", PASSWORD + "x").status == "invalid"
    assert users.authenticate("nobody", PASSWORD).status == "invalid"  # same answer as a wrong password
    with pytest.raises(StoreError, match="too short"):
        users.add("dr.short", "clinician", "short")
    with pytest.raises(StoreError, match="unknown role"):
        users.add("dr.boss", "boss", PASSWORD)
    with pytest.raises(StoreError, match="already exists"):
        users.add("DR.KIM", "admin", PASSWORD)


def test_lockout_after_repeated_failures_for_the_configured_period(users):
    users.add("dr.lee", "clinician", PASSWORD)
    lockout = timedelta(minutes=10)
    first = users.authenticate("dr.lee", "wrong password 1", max_attempts=3, lockout=lockout)
    assert first.status == "invalid" and first.user.failed_attempts == 1
    assert users.authenticate("dr.lee", "wrong password 2", max_attempts=3, lockout=lockout).status == "invalid"
    third = users.authenticate("dr.lee", "wrong password 3", max_attempts=3, lockout=lockout)
    assert third.status == "locked" and third.just_locked
    until = third.locked_until
    # while locked even the right password is refused (and not checked)
    assert users.authenticate("dr.lee", PASSWORD, max_attempts=3, lockout=lockout).status == "locked"
    assert users.get("dr.lee").locked()
    assert users.authenticate("dr.lee", PASSWORD, max_attempts=3, lockout=lockout,
                              now=until + timedelta(seconds=1)).ok  # the period is over
    after = users.get("dr.lee")
    assert after.failed_attempts == 0 and after.last_sign_in_at is not None
    # a success resets the count; an admin can unlock early
    for attempt in range(3):
        users.authenticate("dr.lee", f"wrong again {attempt}", max_attempts=3, lockout=lockout)
    assert users.get("dr.lee").locked()
    users.unlock("dr.lee")
    assert users.authenticate("dr.lee", PASSWORD, max_attempts=3, lockout=lockout).ok


def test_disabled_users_and_users_without_a_local_password_cannot_sign_in(users):
    users.add("dr.lee", "clinician", PASSWORD)
    users.set_disabled("dr.lee", True)
    assert users.authenticate("dr.lee", PASSWORD).status == "disabled"
    assert users.authenticate("dr.lee", "wrong password!").status == "invalid"  # disabled told only to the owner
    users.set_disabled("dr.lee", False)
    assert users.authenticate("dr.lee", PASSWORD).ok
    users.add("oidc.user@example.org", "reviewer")  # an OpenID Connect user's role, no password
    assert users.authenticate("oidc.user@example.org", "").status == "no-password"
    users.set_password("oidc.user@example.org", PASSWORD)
    assert users.authenticate("oidc.user@example.org", PASSWORD).ok
    assert hash_password(PASSWORD) != hash_password(PASSWORD)


def test_accounts_command_adds_lists_disables_and_audits(tmp_path, monkeypatch, capsys):
    import io

    from mmnar_app import accounts

    data = tmp_path / "data"
    monkeypatch.setenv("MMNAR_DATA_DIR", str(data))
    monkeypatch.delenv("MMNAR_DATABASE_URL", raising=False)
    # the real command line once, the password on standard input (never an argument)
    done = subprocess.run([sys.executable, "-m", "mmnar_app.accounts", "add", "Dr.Admin", "--role", "admin"],
                          input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "added dr.admin as admin" in done.stdout and PASSWORD not in done.stdout + done.stderr
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert accounts.main(["add", "dr.lee", "--role", "clinician"]) == 0
    assert accounts.main(["add", "rev@example.org", "--role", "reviewer", "--no-password"]) == 0
    assert accounts.main(["disable", "dr.lee"]) == 0
    assert accounts.main(["set-role", "rev@example.org", "admin"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert accounts.main(["set-password", "dr.lee"]) == 1
    assert accounts.main(["list"]) == 0
    out = capsys.readouterr()
    assert "too short" in out.err
    listing = out.out.splitlines()[-3:]
    assert [line.split()[:3] for line in listing] == [["dr.admin", "admin", "active"],
                                                      ["dr.lee", "clinician", "disabled"],
                                                      ["rev@example.org", "admin", "active"]]
    store = open_store(None, data_dir=data)
    audit = [(e.action, e.detail) for e in reversed(store.audit_log())]
    assert ("user-add", "dr.lee as clinician") in audit and ("user-disable", "dr.lee") in audit
    assert ("user-change-role", "rev@example.org: reviewer -> admin") in audit
    assert all(e.user.startswith("cli:") for e in store.audit_log())


# ------------------------------------------------------------------ the sign-in form (AppTest)
@pytest.fixture
def local_app(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("MMNAR_DATA_DIR", str(data))
    monkeypatch.setenv("MMNAR_AUTH", "local")
    monkeypatch.setenv("MMNAR_LOCKOUT_ATTEMPTS", "3")
    monkeypatch.setenv("MMNAR_LOCKOUT_MINUTES", "5")
    monkeypatch.delenv("MMNAR_DATABASE_URL", raising=False)
    store = open_store(None, data_dir=data)
    yield store
    store.close()


def home() -> AppTest:
    app = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=180)
    app.run()
    assert not app.exception, app.exception
    return app


def sign_in(app: AppTest, user: str, password: str) -> AppTest:
    app.text_input(key="signin_user").input(user)
    app.text_input(key="signin_password").input(password)
    next(b for b in app.button if b.label == "Sign in").click().run()
    assert not app.exception, app.exception
    return app


def errors(app: AppTest) -> str:
    return "\n".join(e.value for e in app.error)


def test_sign_in_form_wrong_password_lockout_and_success(local_app):
    users = UserStore(local_app)
    app = home()
    assert "No accounts exist yet" in app.warning[-1].value  # the bootstrap hint
    users.add("dr.lee", "clinician", PASSWORD)
    app = home()
    assert [t.label for t in app.text_input] == ["User name", "Password"] and not app.get("page_link")
    sign_in(app, "dr.lee", "not the password")
    assert errors(app) == "Wrong user name or password."
    sign_in(app, "somebody", "not the password")
    assert errors(app) == "Wrong user name or password."
    sign_in(app, "dr.lee", "not the password")
    sign_in(app, "dr.lee", "still not it")
    assert "locked for 5 minutes" in errors(app)
    sign_in(app, "dr.lee", PASSWORD)
    assert "locked" in errors(app)  # the right password does not help while locked
    users.unlock("dr.lee")
    sign_in(app, "Dr.Lee", PASSWORD)
    assert not app.error
    assert any("signed in as **dr.lee** (clinician) · local accounts" in c.value for c in app.caption)
    audit = [(e.user, e.action, e.detail) for e in reversed(local_app.audit_log())]
    failed = [(u, d) for u, a, d in audit if a == "sign-in-failed"]
    assert failed[0] == ("dr.lee", "local: wrong password")
    assert failed[1][0].startswith("unknown h:") and failed[1][1] == "local: unknown user"  # never the typed name
    assert "locked for 5 min after 3 failures" in failed[3][1] and failed[4][1] == "local: account locked"
    assert audit[-1] == ("dr.lee", "sign-in", "local")


def test_disabled_mid_session_signs_out_and_sign_out_clears_the_session(local_app):
    users = UserStore(local_app)
    users.add("dr.lee", "clinician", PASSWORD)
    app = sign_in(home(), "dr.lee", PASSWORD)
    app.switch_page("pages/1_Patient.py").run()
    assert not app.exception and app.button(key="analyse")
    users.set_disabled("dr.lee", True)
    app.run()
    assert "disabled or removed" in app.warning[-1].value and app.text_input(key="signin_user")
    assert "patient_choice" not in app.session_state  # nothing of the session's patient is kept
    sign_in(app, "dr.lee", PASSWORD)
    assert errors(app) == "This account is disabled. Ask an administrator."
    users.set_disabled("dr.lee", False)
    sign_in(app, "dr.lee", PASSWORD)
    app.button(key="mmnar_sign_out").click().run()
    assert app.text_input(key="signin_user") and "_mmnar_signed_in_user" not in app.session_state
    actions = [(e.action, e.detail) for e in reversed(local_app.audit_log())]
    assert ("denied", "session ended: account disabled or removed") in actions
    assert ("sign-in-failed", "local: account disabled") in actions and actions[-1] == ("sign-out", "local")
