"""Local accounts (MMNAR_AUTH=local): argon2id hashes in the users table (SQLite and PostgreSQL), lockout
after repeated failures, disabled users, the accounts command, and the sign-in form of the app (AppTest):
wrong password, lockout, success, a user disabled mid-session, sign-out; every step audited."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from streamlit.testing.v1 import AppTest

from mmnar_app.store import StoreError, UserStore, open_store
from mmnar_app.store.backoff import BackoffPolicy
from mmnar_app.store.users import hash_password

from support.paths import ROOT

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


@pytest.mark.slow
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


POLICY = BackoffPolicy(free_attempts=3, cap=timedelta(minutes=5), base=timedelta(seconds=15))
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def attempt(users, name, password, seconds, client="ip:10.0.0.9"):
    """One sign-in at T0 + seconds: (status, seconds until the next attempt may be made or None)."""
    now = T0 + timedelta(seconds=seconds)
    result = users.authenticate(name, password, client=client, policy=POLICY, now=now)
    return result.status, None if result.retry_at is None else (result.retry_at - now).total_seconds()


@pytest.mark.slow
def test_backoff_doubles_after_the_free_attempts_is_capped_and_never_permanent(users):
    users.add("dr.lee", "clinician", PASSWORD)
    t, answers = 0.0, []
    for n in range(10):  # one wrong password as soon as each wait is over
        answers.append(attempt(users, "dr.lee", f"wrong {n}", t, client=f"ip:10.0.0.{n}"))
        t += answers[-1][1] or 1
    assert answers == [
        ("invalid", None),
        ("invalid", None),
        ("invalid", 15),
        ("invalid", 30),
        ("invalid", 60),
        ("invalid", 120),
        ("invalid", 240),
        ("invalid", 300),
        ("invalid", 300),
        ("invalid", 300),
    ]
    last = t - 300
    # during the wait even the right password is refused, unchecked and uncounted (the wait does not grow)
    assert attempt(users, "dr.lee", PASSWORD, last + 299, client="ip:10.9.9.9") == ("throttled", 1)
    during = T0 + timedelta(seconds=last + 1)  # the store's own clock is given, as to `authenticate`: T0 is fixed
    assert users.get("dr.lee").failed_attempts == 10 and users.get("dr.lee", now=during).locked(during)
    assert attempt(users, "dr.lee", PASSWORD, last + 300, client="ip:10.9.9.9") == ("ok", None)  # the cap, no more
    assert users.get("dr.lee").failed_attempts == 0  # success ends the name's back-off
    with pytest.raises(StoreError, match="at most 1:00:00"):
        BackoffPolicy(cap=timedelta(days=365))  # no setting makes a lock (near) permanent


@pytest.mark.slow
def test_unknown_and_real_names_get_the_same_answers_in_the_same_order(users):
    users.add("dr.lee", "clinician", PASSWORD)
    users.add("oidc.only@example.org", "reviewer")  # no local password
    script = [("pw 1", 0), ("pw 2", 1), ("pw 3", 2), ("pw 4", 3), (PASSWORD + "!", 10), ("pw 5", 18), ("pw 6", 30)]
    runs = {
        name: [attempt(users, name, pw, t, client=f"ip:{name}") for pw, t in script]
        for name in ("dr.lee", "nobody.here", "oidc.only@example.org", "\x00not a name")
    }
    assert runs["dr.lee"] == [
        ("invalid", None),
        ("invalid", None),
        ("invalid", 15),
        ("throttled", 14),
        ("throttled", 7),
        ("invalid", 30),
        ("throttled", 18),
    ]
    assert runs["nobody.here"] == runs["dr.lee"] == runs["oidc.only@example.org"] == runs["\x00not a name"]


@pytest.mark.slow
def test_every_attempt_verifies_exactly_one_argon2_hash(users, monkeypatch):
    from mmnar_app.store import users as users_module

    users.add("dr.lee", "clinician", PASSWORD)
    users.add("oidc.only@example.org", "reviewer")
    real = users_module._verify
    calls = []
    monkeypatch.setattr(users_module, "_verify", lambda h, pw: calls.append(h) or real(h, pw))
    cases = [
        ("nobody", "x" * 12, "A", "invalid"),
        ("dr.lee", "wrong password", "A", "invalid"),
        ("\x00", "x", "A", "invalid"),
        ("oidc.only@example.org", PASSWORD, "B", "invalid"),
        ("dr.lee", "wrong again", "C", "invalid"),
        ("dr.lee", "third wrong", "D", "invalid"),
        ("dr.lee", PASSWORD, "E", "throttled"),  # the name's back-off
        ("nobody", "y" * 2000, "A", "throttled"),
    ]  # the client's back-off
    dummy = users_module.dummy_hash()
    for name, password, client, status in cases:
        calls.clear()
        assert users.authenticate(name, password, client=f"session:{client}", policy=POLICY).status == status
        assert len(calls) == 1, (name, status, len(calls))
        assert calls[0] == (
            users.store._in_read(lambda s: s.get(users_module.UserRow, "dr.lee")).password_hash
            if (name, status) == ("dr.lee", "invalid")
            else dummy
        )
    # the dummy hash costs what a real one does: the same argon2id parameters as the hasher's
    assert not users_module.hasher().check_needs_rehash(dummy)
    assert dummy.split("$")[1:4] == users_module.hash_password(PASSWORD).split("$")[1:4]


def test_the_client_backs_off_across_names_and_others_are_not_held(users):
    users.add("dr.lee", "clinician", PASSWORD)
    for i, name in enumerate(("ann", "bob", "cyd")):  # one guess per name: password spraying
        assert attempt(users, name, "guess 123456", i, client="ip:203.0.113.7")[0] == "invalid"
    assert attempt(users, "dr.lee", PASSWORD, 4, client="ip:203.0.113.7") == ("throttled", 13)
    assert attempt(users, "dr.lee", PASSWORD, 4, client="ip:198.51.100.2") == ("ok", None)  # another client


def test_parallel_first_failures_of_one_name_are_all_counted(users):
    from concurrent.futures import ThreadPoolExecutor

    users.add("dr.lee", "clinician", PASSWORD)
    with ThreadPoolExecutor(4) as pool:
        statuses = list(
            pool.map(
                lambda n: (
                    users.authenticate(
                        "dr.lee", f"wrong {n}", client=f"ip:10.2.0.{n}", policy=BackoffPolicy(free_attempts=10)
                    ).status
                ),
                range(4),
            )
        )
    assert statuses == ["invalid"] * 4 and users.get("dr.lee").failed_attempts == 4


@pytest.mark.slow
def test_an_admin_unlock_ends_the_names_backoff_and_the_attacker_stays_slowed(users):
    users.add("ada", "admin", PASSWORD)
    for n in range(6):
        attempt(users, "ada", f"guess {n}", n * 400, client="ip:203.0.113.7")
    assert users.get("ada", now=T0 + timedelta(seconds=2001)).locked(T0 + timedelta(seconds=2001))
    users.unlock("ada")
    after = T0 + timedelta(seconds=2001)
    assert users.get("ada").failed_attempts == 0 and not users.get("ada", now=after).locked(after)
    assert attempt(users, "ada", PASSWORD, 2001, client="ip:10.0.0.1") == ("ok", None)
    assert attempt(users, "ada", "guess 7", 2002, client="ip:203.0.113.7")[0] == "throttled"  # the client's own wait


@pytest.mark.slow
def test_disabled_users_and_users_without_a_local_password_cannot_sign_in(users):
    users.add("dr.lee", "clinician", PASSWORD)
    users.set_disabled("dr.lee", True)
    assert users.authenticate("dr.lee", PASSWORD).status == "disabled"
    assert users.authenticate("dr.lee", "wrong password!").status == "invalid"  # disabled told only to the owner
    users.set_disabled("dr.lee", False)
    assert users.authenticate("dr.lee", PASSWORD).ok
    users.add("oidc.user@example.org", "reviewer")  # an OpenID Connect user's role, no password
    no_local = users.authenticate("oidc.user@example.org", "")
    assert no_local.status == "invalid" and no_local.reason.startswith("no local password")
    users.set_password("oidc.user@example.org", PASSWORD)
    assert users.authenticate("oidc.user@example.org", PASSWORD).ok
    assert hash_password(PASSWORD) != hash_password(PASSWORD)


@pytest.mark.slow
def test_accounts_command_adds_lists_disables_and_audits(tmp_path, monkeypatch, capsys):
    import io

    from mmnar_app import accounts

    data = tmp_path / "data"
    monkeypatch.setenv("MMNAR_DATA_DIR", str(data))
    monkeypatch.delenv("MMNAR_DATABASE_URL", raising=False)
    # the real command line once, the password on standard input (never an argument)
    done = subprocess.run(
        [sys.executable, "-m", "mmnar_app.accounts", "add", "Dr.Admin", "--role", "admin"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
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
    assert [line.split()[:3] for line in listing] == [
        ["dr.admin", "admin", "active"],
        ["dr.lee", "clinician", "disabled"],
        ["rev@example.org", "admin", "active"],
    ]
    store = open_store(None, data_dir=data)
    audit = [(e.action, e.detail) for e in reversed(store.audit_log())]
    assert ("user-add", "dr.lee as clinician") in audit and ("user-disable", "dr.lee") in audit
    assert ("user-change-role", "rev@example.org: reviewer -> admin") in audit
    assert all(e.user.startswith("cli:") for e in store.audit_log())


@pytest.mark.slow
def test_accounts_unlock_command_ends_a_backoff_and_is_audited(tmp_path, monkeypatch, capsys):
    from mmnar_app import accounts

    data = tmp_path / "data"
    monkeypatch.setenv("MMNAR_DATA_DIR", str(data))
    monkeypatch.delenv("MMNAR_DATABASE_URL", raising=False)
    with open_store(None, data_dir=data) as store:
        users = UserStore(store)
        users.add("ada", "admin", PASSWORD)
        for n in range(6):
            users.authenticate("ada", f"guess {n}", client="ip:203.0.113.7")
        assert users.get("ada").locked()
    assert accounts.main(["list"]) == 0 and "ada" in capsys.readouterr().out
    assert accounts.main(["unlock", "ada"]) == 0 and "ada: unlocked" in capsys.readouterr().out
    assert accounts.main(["unlock", "nobody"]) == 1 and "no user 'nobody'" in capsys.readouterr().err
    with open_store(None, data_dir=data) as store:
        assert not UserStore(store).get("ada").locked()
        assert UserStore(store).authenticate("ada", PASSWORD, client="ip:10.0.0.1").ok
        assert [(e.action, e.detail) for e in store.audit_log(action="user-unlock")] == [("user-unlock", "ada")]


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


@pytest.mark.slow
def test_sign_in_form_wrong_password_backoff_and_success(local_app):
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
    sign_in(app, "dr.lee", "still not it")  # the third failure of this session: its back-off starts
    assert errors(app).startswith(
        "Wrong user name or password. Too many failed sign-ins with this user name or "
        "from this connection: try again in 1"
    )
    sign_in(app, "dr.lee", PASSWORD)
    assert errors(app).startswith("Too many failed sign-ins")  # the right password does not help meanwhile
    app = sign_in(home(), "Dr.Lee", PASSWORD)  # another session (client), the name's back-off not started
    assert not app.error
    assert any("signed in as **dr.lee** (clinician) · local accounts" in c.value for c in app.caption)
    audit = [(e.user, e.action, e.detail) for e in reversed(local_app.audit_log())]
    failed = [(u, d) for u, a, d in audit if a == "sign-in-failed"]
    assert failed[0] == ("dr.lee", "local: wrong password")
    assert failed[1][0].startswith("unknown h:") and failed[1][1] == "local: unknown user"  # never the typed name
    assert failed[2][1].startswith("local: wrong password; back-off 1")
    assert failed[3][1].startswith("local: refused during a back-off; back-off ")
    assert audit[-1] == ("dr.lee", "sign-in", "local")


@pytest.mark.slow
def test_the_form_answers_a_real_and_an_unknown_name_alike(local_app):
    UserStore(local_app).add("dr.lee", "clinician", PASSWORD)
    seen = {}
    for name in ("dr.lee", "nobody.at.all"):
        app = home()  # a fresh session: its own client
        seen[name] = [errors(sign_in(app, name, f"wrong password {n}")).split(" try again")[0] for n in range(5)]
    assert seen["dr.lee"] == seen["nobody.at.all"]
    assert seen["dr.lee"][-1] == "Too many failed sign-ins with this user name or from this connection:"


@pytest.mark.parametrize(
    "name, value, accepted",
    [
        ("MMNAR_LOCKOUT_MINUTES", "0", "minutes from 0.1 to 60"),
        ("MMNAR_LOCKOUT_MINUTES", "forever", "minutes from"),
        ("MMNAR_LOCKOUT_MINUTES", "1440", "never a permanent lock"),
        ("MMNAR_LOCKOUT_ATTEMPTS", "0", "from 1 to 100"),
        ("MMNAR_SIGN_IN_CLIENT", "cookie", "use ip"),
    ],
)
def test_a_bad_backoff_setting_keeps_the_app_closed_with_its_name(local_app, monkeypatch, name, value, accepted):
    monkeypatch.setenv(name, value)
    app = home()
    assert f"{name}={value!r} is not accepted" in errors(app) and accepted in errors(app)
    assert not app.text_input  # no sign-in form


@pytest.mark.slow
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
