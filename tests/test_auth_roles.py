"""Roles, checked on the server by every page (AppTest). The signed-in user is the one Streamlit's st.user
gives the page: AppTest.user (Streamlit's own test API for st.user) with an [auth] section in AppTest.secrets
puts the app in OpenID Connect mode exactly as a signed-in browser session would; nothing of the app's own
is injected. Role matrix for every page, denied cases audited; clinicians see only their own
assessments (also when asking for another's by id); roles from the database win over the claim; a
disabled row or no role is refused; a broken [auth] section keeps the app closed; the Admin page
manages users and exports the audit log as CSV; the local demo user has every role."""

from __future__ import annotations

import csv
import io

import pytest
from streamlit.testing.v1 import AppTest

from mmnar_app.store import UserStore

from support.app_auth import AUTH, page, person

PAGES = {
    "Home.py": "Home",
    "pages/1_Patient.py": "Patient",
    "pages/2_Model_card.py": "Model card",
    "pages/3_History.py": "History",
    "pages/4_Admin.py": "Admin",
}
ALLOWED = {
    "clinician": {"Home", "Patient", "Model card", "History"},
    "reviewer": {"Home", "Model card", "History"},
    "admin": {"Home", "Model card", "Admin"},
}
CONTENT = {
    "Home": "Predicts",
    "Patient": "Available now",
    "Model card": "Evaluated on the",
    "History": "Search",
    "Admin": "Users",
}
FAST_DEMO = "Demo 06"


def text(app: AppTest) -> str:
    parts = [m.value for m in app.markdown] + [e.value for e in app.error] + [i.value for i in app.info]
    parts += [c.value for c in app.caption if "signed in as" not in c.value]
    parts += [t.label for t in app.text_input] + [str(t.label) for t in app.tabs]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("role", ["clinician", "reviewer", "admin"])
@pytest.mark.parametrize("path", list(PAGES))
def test_role_matrix_every_page(env, role, path):
    name = PAGES[path]
    user = f"{role}@example.org"
    app = page(path, person(user, "staff", f"mmnar-{role}s"))
    shown = text(app)
    assert any(f"signed in as **{user}** ({role}) · OpenID Connect" in c.value for c in app.caption)
    denials = [e for e in env.audit_log(action="denied") if e.user == user]
    if name in ALLOWED[role]:
        assert "Access denied" not in shown and CONTENT[name] in shown, shown
        assert not denials
    else:
        assert "Access denied" in shown and f"Your role ({role})" in shown
        assert CONTENT[name] not in shown.replace("Access denied", "")  # nothing of the page itself
        assert len(denials) == 1 and denials[0].detail.startswith(f"page {name}: needs ")
        assert denials[0].model_version  # with the model version, like every audit entry


@pytest.mark.parametrize("path", list(PAGES))
def test_signed_out_and_role_less_users_see_no_page(env, path):
    app = page(path, {"is_logged_in": False})
    assert "Sign in with your organisation account" in text(app) and app.button(key="mmnar_oidc_sign_in")
    assert CONTENT[PAGES[path]] not in text(app).replace("Sign in", "")
    app = page(path, person("visitor@example.org", "staff"))  # signed in, but no role for this app
    assert "has no role in this app" in text(app)
    denied = env.audit_log(action="denied", user="visitor@example.org")
    assert denied[0].detail == "oidc: account has no role in this app"


def test_database_role_wins_over_the_claim_and_a_disabled_row_locks_out(env):
    users = UserStore(env)
    users.add("Dana@Example.org", "reviewer")  # an OIDC user's role set by an admin (no password)
    app = page("pages/1_Patient.py", person("dana@example.org", "mmnar-clinicians"))
    assert "Access denied" in text(app) and "Your role (reviewer)" in text(app)
    users.set_disabled("dana@example.org", True)
    app = page("Home.py", person("dana@example.org", "mmnar-clinicians"))
    assert "is disabled in this app" in text(app)
    assert [e.action for e in env.audit_log(user="dana@example.org")][:2] == ["denied", "sign-in"]


def test_sign_in_and_sign_out_are_audited_once_per_session(env):
    app = page("Home.py", person("carl@example.org", "mmnar-clinicians"))
    app.run()
    app.switch_page("pages/2_Model_card.py").run()
    assert [e.action for e in env.audit_log(user="carl@example.org")] == ["sign-in"]
    app.button(key="mmnar_sign_out").click().run()
    assert [e.action for e in env.audit_log(user="carl@example.org")] == ["sign-out", "sign-in"]
    assert app.user == {"is_logged_in": False}  # st.logout() ran


def test_a_broken_auth_section_keeps_the_app_closed(env, monkeypatch):
    broken = {k: v for k, v in AUTH.items() if k not in ("cookie_secret", "client_secret")}
    app = page("pages/1_Patient.py", person("x@example.org", "mmnar-clinicians"), auth=broken)
    assert "incomplete: missing cookie_secret, client_secret" in text(app)
    assert "analyse" not in [b.key for b in app.button]
    assert "not-a-real-secret" not in text(app)
    monkeypatch.setenv("MMNAR_AUTH", "oidc")
    app = page("Home.py", person("x@example.org", "mmnar-clinicians"), auth=None)
    assert "MMNAR_AUTH=oidc but Streamlit's secrets have no [auth] section" in text(app)
    monkeypatch.setenv("MMNAR_AUTH", "ldap")
    assert "is not a sign-in mode" in text(page("Home.py", None, auth=None))


def _save_as(monkeypatch, user: str) -> int:
    """An assessment saved through the Patient page of the local demo (MMNAR_USER=user)."""
    monkeypatch.setenv("MMNAR_USER", user)
    app = page("pages/1_Patient.py", None, auth=None)
    box = app.selectbox(key="patient_choice")
    box.set_value(next(o for o in box.options if o.startswith(FAST_DEMO))).run()
    app.button(key="analyse").click().run()
    app.button(key="save").click().run()
    assert not app.exception, app.exception
    return app.session_state["last_saved"]


@pytest.mark.slow
def test_clinicians_see_their_own_assessments_reviewers_all(env, monkeypatch):
    mine, theirs = _save_as(monkeypatch, "carol@example.org"), _save_as(monkeypatch, "dave@example.org")
    carol = page("pages/3_History.py", person("carol@example.org", "mmnar-clinicians"))
    assert list(carol.dataframe[0].value["id"]) == [mine]
    assert carol.text_input(key="h_user_own").value == "carol@example.org"
    audit = next(d.value for d in carol.dataframe if "action" in d.value.columns)
    assert set(audit["user"]) == {"carol@example.org"}
    reviewer = page("pages/3_History.py", person("rita@example.org", "mmnar-reviewers"))
    assert set(reviewer.dataframe[0].value["id"]) == {mine, theirs}
    reviewer.selectbox(key="h_open").set_value(theirs).run()
    assert not reviewer.exception and reviewer.metric  # reviewers read everything
    # asking for another clinician's assessment by id is refused on the server, and audited
    probe = AppTest.from_string(
        f"""
import streamlit as st
from mmnar_app import history
from mmnar_app.store import open_store
history.load(open_store(None), {theirs}, "carol@example.org", "v", own_only=True)
st.write("loaded")
""",
        default_timeout=60,
    )
    probe.run()
    assert "Access denied" in probe.error[0].value and not [m for m in probe.markdown if m.value == "loaded"]
    denied = env.audit_log(action="denied", user="carol@example.org")[0]
    assert denied.assessment_id == theirs and "saved by another user" in denied.detail


def test_admin_page_manages_users_and_exports_the_audit_log(env):
    from mmnar_app import admin

    users = UserStore(env)
    app = page("pages/4_Admin.py", person("ada@example.org", "mmnar-admins"))
    app.text_input(key="add_name").input("New.Clinician@example.org")
    app.selectbox(key="add_role").set_value("clinician")
    next(b for b in app.button if b.label == "Add user").click().run()
    assert "Added new.clinician@example.org as clinician." in [s.value for s in app.success]
    assert not users.get("new.clinician@example.org").has_password  # an OIDC user: a role, no password
    app.selectbox(key="change_user").set_value("new.clinician@example.org")
    app.radio(key="change_action").set_value("change role")
    app.selectbox(key="change_role").set_value("reviewer")
    next(b for b in app.button if b.label == "Apply").click().run()
    assert users.get("new.clinician@example.org").role == "reviewer"
    rows = app.dataframe[0].value
    assert list(rows["user"]) == ["new.clinician@example.org"] and rows["sign-in"][0] == "OpenID Connect only"
    assert app.get("download_button")  # the CSV export (its data is built and audited on click)
    # the last admin cannot be disabled or demoted, nor an admin's own account by themselves
    users.add("ada@example.org", "admin")
    with pytest.raises(ValueError, match="your own account"):
        admin.change_user(users, env, "ada@example.org", "v", "ada@example.org", "disable")
    users.add("bob@example.org", "admin")
    admin.change_user(users, env, "ada@example.org", "v", "bob@example.org", "disable")  # fine: ada is still admin
    with pytest.raises(ValueError, match="last active admin"):
        admin.change_user(users, env, "bob@example.org", "v", "ada@example.org", "change role", role="reviewer")
    document = admin.export_audit_csv(env, "ada@example.org", "demo (v1)")
    rows = list(csv.DictReader(io.StringIO(document)))
    assert list(rows[0]) == admin.AUDIT_COLUMNS
    assert [r["action"] for r in rows][:2] == ["sign-in", "user-add"] and rows[-1]["action"] == "export"
    assert rows[-1]["detail"] == "audit log csv" and rows[-1]["user"] == "ada@example.org"
    assert rows[0]["at_utc"].endswith("+00:00") and int(rows[0]["id"]) < int(rows[-1]["id"])
    assert admin._cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"  # no spreadsheet formulas from the log


@pytest.mark.slow
def test_local_demo_user_has_every_role_and_says_so(env, monkeypatch):
    monkeypatch.setenv("MMNAR_USER", "demo-user")
    for path in PAGES:
        app = page(path, None, auth=None)
        assert "Access denied" not in text(app), path
        caption = next(c.value for c in app.caption if "signed in as" in c.value)
        assert "local single-user mode, signed in as **demo-user** (no sign-in configured)" in caption
        assert "acts as clinician, reviewer and admin" in caption
    assert "Local single-user demo" in text(page("pages/4_Admin.py", None, auth=None))


def test_an_unreadable_secrets_file_keeps_the_app_closed(tmp_path, monkeypatch):
    from streamlit import config
    from streamlit.runtime.secrets import secrets_singleton

    from mmnar_app import auth

    monkeypatch.delenv("MMNAR_AUTH", raising=False)
    secrets = tmp_path / "secrets.toml"
    original = config.get_option
    monkeypatch.setattr(config, "get_option", lambda key: [str(secrets)] if key == "secrets.files" else original(key))
    try:
        secrets.write_text("[auth\nredirect_uri = ")  # a TOML error: Streamlit would just log it
        secrets_singleton._reset()
        mode, problem = auth.resolve_mode(auth.AuthSettings.from_env())
        assert mode == "oidc" and "could not be read" in problem  # never the open demo
        secrets.write_text("[auth]\n" + "".join(f'{k} = "{v}"\n' for k, v in AUTH.items()))
        secrets_singleton._reset()
        assert auth.resolve_mode(auth.AuthSettings.from_env()) == ("oidc", None)
        secrets.unlink()
        secrets_singleton._reset()
        assert auth.resolve_mode(auth.AuthSettings.from_env()) == ("demo", None)
    finally:
        secrets_singleton._reset()
