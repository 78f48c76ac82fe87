"""OpenID Connect sign-in for real: the PyPI package oidc-provider-mock runs an OIDC provider on 127.0.0.1,
`streamlit run` gets an [auth] section pointing at it (a secrets.toml written here, passed with
--secrets.files), and Debian's Chromium (Playwright) goes through Streamlit's own st.login flow: the app's
Sign in button -> the provider's authorize page -> /oauth2callback -> signed in with the role from a claim;
a page the role may not open is denied; Sign out -> the provider's end-session page -> signed out. The
audit log then holds the sign-in, the denial and the sign-out. Screenshots go to test-output/auth/."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mmnar_app.browser_harness import (
    chromium_page,
    free_port,
    stop_process,
    streamlit_server,
    wait_for_text,
    wait_healthy,
    wait_idle,
)

from support.paths import ROOT

SHOTS = ROOT / "test-output" / "auth"
ALICE = {"sub": "alice", "email": "alice@example.org", "name": "Alice Example", "mmnar_role": "clinician"}


@pytest.fixture
def oidc_provider(tmp_path):
    port = free_port()
    log = open(tmp_path / "provider.log", "w")
    # plain HTTP on the loopback interface only: authlib refuses it unless told this is a test
    env = {**os.environ, "AUTHLIB_INSECURE_TRANSPORT": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oidc_provider_mock",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--user-claims",
            json.dumps(ALICE),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, 30, process, path="/.well-known/openid-configuration")
        yield base
    finally:
        stop_process(process)
        log.close()


@pytest.mark.slow
def test_oidc_sign_in_role_denial_and_sign_out_in_a_real_browser(tmp_path, oidc_provider):
    from mmnar_app.store import open_store

    app_port = free_port()
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f"""[auth]
redirect_uri = "http://127.0.0.1:{app_port}/oauth2callback"
cookie_secret = "{os.urandom(24).hex()}"
client_id = "mmnar-app"
client_secret = "{os.urandom(12).hex()}"
server_metadata_url = "{oidc_provider}/.well-known/openid-configuration"
""")
    SHOTS.mkdir(parents=True, exist_ok=True)
    env = {"AUTHLIB_INSECURE_TRANSPORT": "1", "MMNAR_OIDC_ROLE_CLAIM": "mmnar_role", "MMNAR_AUTH": "oidc"}
    with (
        streamlit_server(
            tmp_path / "data",
            SHOTS / "streamlit.log",
            extra_env=env,
            port=app_port,
            extra_args=["--secrets.files", str(secrets)],
        ) as (url, _, _),
        chromium_page() as page,
    ):
        try:
            page.goto(url)
            wait_for_text(page, "Sign in with your organisation account", 120)
            page.screenshot(path=str(SHOTS / "1_signed_out.png"))
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/oauth2/authorize**", timeout=30_000)  # the provider's own page
            page.screenshot(path=str(SHOTS / "2_provider.png"))
            page.get_by_role("button", name="alice").click()
            wait_for_text(page, "signed in as alice@example.org (clinician)", 60)
            wait_idle(page)
            page.screenshot(path=str(SHOTS / "3_signed_in.png"))
            assert "Start here: analyse a patient" in page.inner_text("body")
            page.goto(f"{url}/Admin")  # a new session: the identity cookie signs it in again
            wait_for_text(page, "Access denied", 60)
            page.screenshot(path=str(SHOTS / "4_denied.png"))
            page.goto(f"{url}/Patient")
            wait_for_text(page, "Available now", 120)
            wait_idle(page)
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url("**/oauth2/end_session**", timeout=30_000)  # the provider ends its session too
            page.get_by_role("button", name="End Session").click()
            wait_for_text(page, "Sign in with your organisation account", 60)
            page.screenshot(path=str(SHOTS / "5_signed_out_again.png"))
        except Exception:
            page.screenshot(path=str(SHOTS / "failure.png"))
            raise
    store = open_store(None, data_dir=tmp_path / "data")
    entries = [(e.user, e.action, e.detail) for e in reversed(store.audit_log(limit=100))]
    actions = [a for u, a, _ in entries if u == "alice@example.org"]
    assert actions[0] == "sign-in" and "denied" in actions and actions[-1] == "sign-out", entries
    assert any(a == "denied" and "page Admin" in d for _, a, d in entries)
