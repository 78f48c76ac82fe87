"""App pages as a signed-in user sees them (a fixture plugin, see tests/conftest.py): `env` is a data folder
and the environment of OpenID Connect mode with the role claim mapped, yielding the store; `page` runs
one page with Streamlit's AppTest as `user` (a `person`) under the [auth] section `AUTH`."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from mmnar_app.store import open_store

from support.paths import ROOT

AUTH = {
    "redirect_uri": "http://127.0.0.1:8501/oauth2callback",
    "cookie_secret": "s" * 32,
    "client_id": "mmnar",
    "client_secret": "not-a-real-secret",
    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
}


@pytest.fixture
def env(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("MMNAR_DATA_DIR", str(data))
    monkeypatch.setenv("MMNAR_OIDC_ROLE_CLAIM", "groups")
    monkeypatch.setenv("MMNAR_OIDC_ROLE_MAP", "mmnar-clinicians=clinician,mmnar-reviewers=reviewer,mmnar-admins=admin")
    monkeypatch.delenv("MMNAR_AUTH", raising=False)
    monkeypatch.delenv("MMNAR_DATABASE_URL", raising=False)
    store = open_store(None, data_dir=data)
    yield store
    store.close()


def page(path: str, user: dict | None, auth: dict | None = AUTH) -> AppTest:
    app = AppTest.from_file(str(ROOT / "app" / path), default_timeout=180)
    if auth is not None:
        app.secrets["auth"] = auth
    if user is not None:
        app.user = user
    app.run()
    assert not app.exception, app.exception
    return app


def person(email: str, *groups: str) -> dict:
    return {"is_logged_in": True, "email": email, "name": email.split("@")[0].title(), "groups": list(groups)}
