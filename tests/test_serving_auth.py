"""Model server authentication (mmnar_core.serving.auth): static bearer tokens from a token file (stored as
HMAC digests), OIDC JWTs checked against a real provider's JWKS (oidc-provider-mock in a thread), roles per
endpoint (401 vs 403), bodies and logs that never hold a token, an open server that warns, and the app's
RemoteService sending MMNAR_INFERENCE_TOKEN."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.serving import ServeConfig, create_app
from mmnar_core.serving.auth import (
    ENDPOINT_PERMISSIONS,
    OPEN_PATHS,
    AuthConfigError,
    Authenticator,
    AuthFailure,
    OIDCVerifier,
    TokenStore,
)
from mmnar_lab.serving.testing import ServerThread, cached_predictor

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # authlib's, inside oidc-provider-mock

BUNDLE = DEMO_BUNDLE
# multipart fields without a file (httpx sends multipart when `files` is given)
PREDICT = [("structured", (None, json.dumps({"age": 71, "sex": "female"}))), ("patient_id", (None, "auth-test"))]
ROLES_BY_USER = {"carla": "clinician", "rita": "reviewer", "adam": "admin"}
# endpoint -> (method, path); who may use it
CALLS = {
    "predict": ("POST", "/predict"),
    "what_if": ("POST", "/what-if"),
    "explain": ("POST", "/explain"),
    "info": ("GET", "/info"),
    "stats": ("GET", "/stats"),
    "pattern_counts": ("GET", "/pattern-counts"),
}
ALLOWED = {
    "clinician": {"predict", "what_if", "explain", "info"},
    "reviewer": {"info", "pattern_counts"},
    "admin": {"info", "stats", "pattern_counts"},
}


@pytest.fixture(scope="module")
def predictor():
    return cached_predictor(BUNDLE)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "tokens.json"
    store = TokenStore.new(path)
    issued = {user: store.add(user, role)[0] for user, role in ROLES_BY_USER.items()}
    store.save()
    return path, issued


@pytest.fixture(scope="module")
def client(predictor, tokens):
    with TestClient(create_app(predictor, ServeConfig(auth_token_file=str(tokens[0])))) as test_client:
        yield test_client


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def call(client, what: str, headers: dict | None = None):
    method, path = CALLS[what]
    if method == "GET":
        return client.get(path, headers=headers)
    return client.post(path, files=PREDICT, headers=headers)


def assert_generic(response, status: int, *secrets_: str) -> None:
    """A generic JSON error: the status, one error on the Authorization field, no token, no reason."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and [e["field"] for e in body["errors"]] == ["Authorization"]
    text = response.text + json.dumps(dict(response.headers))
    for secret in secrets_:
        assert secret not in text and secret[-16:] not in text
    for reason in ("expired", "audience", "signature", "unknown", "revoked", "issuer", "kid"):
        assert reason not in body["errors"][0]["problem"]
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    else:
        assert "www-authenticate" not in response.headers


# ------------------------------------------------------------------------------------------------ token file
def test_token_file_holds_digests_only_and_the_command_manages_it(tmp_path, capsys):
    from mmnar_core.cli import main

    path = tmp_path / "tokens.json"
    assert main(["serve-token", "add", str(path), "--user", "carla", "--role", "clinician"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("mmnar_") and len(token) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token not in text and token[6:20] not in text
    document = json.loads(text)
    assert document["hash"] == "hmac-sha256" and document["tokens"][0]["user"] == "carla"
    store = TokenStore.load(path)
    assert store.verify(token).roles == {"clinician"} and store.verify(token + "x") is None
    other = TokenStore.new()  # another server: another key, another digest for the same token
    assert other.digest(token) != store.digest(token)
    assert main(["serve-token", "list", str(path)]) == 0
    token_id = document["tokens"][0]["id"]
    assert token_id in capsys.readouterr().out
    assert main(["serve-token", "revoke", str(path), token_id]) == 0
    assert TokenStore.load(path).verify(token) is None
    with pytest.raises(SystemExit):  # argparse: not a role
        main(["serve-token", "add", str(path), "--user", "x", "--role", "root"])


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "missing"),
        ("not json", "not valid JSON"),
        ('{"format": "other"}', "not a token file"),
        ('{"format": "mmnar-serve-tokens", "hash": "hmac-sha256", "key": "", "tokens": []}', "key"),
        (
            '{"format": "mmnar-serve-tokens", "hash": "hmac-sha256", "key": "' + "A" * 43 + '", "tokens": '
            '[{"id": "t", "user": "u", "role": "root", "digest": "' + "0" * 64 + '"}]}',
            "'root'",
        ),
    ],
)
def test_a_bad_token_file_fails_at_startup_naming_the_problem(tmp_path, predictor, content, words):
    path = tmp_path / "tokens.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(AuthConfigError, match=words):
        create_app(predictor, ServeConfig(auth_token_file=str(path)))
    from mmnar_core.cli import main

    assert main(["serve", str(BUNDLE), "--auth-token-file", str(path)]) == 2  # before any model is loaded


def test_bad_oidc_settings_are_refused():
    with pytest.raises(ValueError, match="go together"):
        ServeConfig(oidc_issuer="https://login.example.org")
    with pytest.raises(AuthConfigError, match="plain http"):
        OIDCVerifier("http://login.example.org", "api")
    with pytest.raises(AuthConfigError, match="not an http"):
        OIDCVerifier("ftp://login.example.org", "api")
    OIDCVerifier("http://127.0.0.1:9", "api")  # loopback: allowed for tests


# ------------------------------------------------------------------------------------------------ static tokens
def test_probes_are_open_and_everything_else_needs_a_token(client, tokens):
    _, issued = tokens
    assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
    for what in CALLS:
        assert_generic(call(client, what), 401)
    for path in ("/openapi.json", "/docs", "/no-such-path"):
        assert_generic(client.get(path), 401)
    assert client.get("/no-such-path", headers=bearer(issued["carla"])).status_code == 404
    schema = client.get("/openapi.json", headers=bearer(issued["rita"])).json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert "security" in schema["paths"]["/predict"]["post"] and "security" not in schema["paths"]["/health"]["get"]
    assert {"401", "403"} <= set(schema["paths"]["/info"]["get"]["responses"])


@pytest.mark.parametrize(
    "header",
    [
        "Bearer mmnar_not-a-real-token-0123456789abcdefghijklmnopqrstuv",
        "Bearer",
        "Bearer  ",
        "Basic dXNlcjpwYXNz",
        "bearer a b",
        "Token abc",
        "Bearer " + "a" * 20_000,
        "Bearer abc\u00e9",
        "Bearer a.b.c",
    ],
)
def test_wrong_or_malformed_tokens_get_the_same_401(client, header):
    response = client.get("/info", headers={"Authorization": header.encode("utf-8")})
    assert_generic(response, 401, header[7:] if len(header) > 20 else "\x00")


@pytest.mark.parametrize("user", list(ROLES_BY_USER))
def test_each_role_gets_its_endpoints_and_403_for_the_others(client, tokens, user):
    _, issued = tokens
    role = ROLES_BY_USER[user]
    for what in CALLS:
        response = call(client, what, bearer(issued[user]))
        if what in ALLOWED[role]:
            assert response.status_code == 200, (user, what, response.text)
        else:
            assert_generic(response, 403, issued[user])
    # a forbidden POST is refused before its body is read or parsed (a broken body still gets 403, not 400)
    if "predict" not in ALLOWED[role]:
        response = client.post(
            "/predict", content=b"\x00garbage", headers={**bearer(issued[user]), "content-type": "multipart/form-data"}
        )
        assert_generic(response, 403, issued[user])


def test_every_route_of_the_app_is_classified(client):
    from fastapi.routing import APIRoute

    docs = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
    for route in client.app.routes:
        assert route.path in OPEN_PATHS | set(ENDPOINT_PERMISSIONS) | docs, route.path
        if isinstance(route, APIRoute) and route.path not in OPEN_PATHS:
            assert route.path in ENDPOINT_PERMISSIONS, route.path


@pytest.mark.slow
def test_tokens_added_or_revoked_apply_without_a_restart(predictor, tmp_path):
    path = tmp_path / "tokens.json"
    store = TokenStore.new(path)
    first, entry = store.add("carla", "clinician")
    store.save()
    with TestClient(create_app(predictor, ServeConfig(auth_token_file=str(path)))) as client:
        assert client.get("/info", headers=bearer(first)).status_code == 200
        store.revoke(entry.id)
        second, _ = store.add("rita", "reviewer")
        store.save()
        time.sleep(1.1)  # the file is looked at at most once a second
        assert_generic(client.get("/info", headers=bearer(first)), 401, first)
        assert client.get("/info", headers=bearer(second)).status_code == 200
        path.write_text("broken")  # a broken edit keeps the tokens in force
        time.sleep(1.1)
        assert client.get("/info", headers=bearer(second)).status_code == 200


def test_no_token_in_bodies_or_logs_and_the_reason_is_logged(client, tokens, caplog, monkeypatch):
    _, issued = tokens
    wrong = "mmnar_" + "Z" * 43
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # our own handler: independent of what other tests did to logging config
    for name in ("mmnar_core.serving", "mmnar_core.serving.auth"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "disabled", False)
        monkeypatch.setattr(logger, "level", logging.DEBUG)
    monkeypatch.setattr(logging.getLogger("mmnar_core.serving.auth"), "propagate", True)
    logging.getLogger("mmnar_core.serving").addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG):
            responses = [
                client.get("/info", headers=bearer(wrong)),
                client.get("/stats", headers=bearer(issued["carla"])),
                client.get("/info", headers=bearer(issued["carla"])),
                client.get("/info"),
            ]
    finally:
        logging.getLogger("mmnar_core.serving").removeHandler(handler)
    logged = (
        caplog.text
        + " ".join(str(r.args) for r in caplog.records)
        + " "
        + " ".join(r.getMessage() + " " + str(r.args) for r in records)
    )
    for token in [wrong, *issued.values()]:
        assert token not in logged and token[6:22] not in logged
        for response in responses:
            assert token not in response.text
    assert "401 GET /info" in logged and "unknown token" in logged and "no Authorization header" in logged
    assert "403 GET /stats" in logged and "carla (clinician; token tok-" in logged


def test_an_open_server_warns_at_start(predictor, caplog):
    with caplog.at_level(logging.WARNING, logger="mmnar_core.serving"):
        with TestClient(create_app(predictor, ServeConfig())) as open_client:
            assert open_client.get("/stats").status_code == 200  # no token needed
    assert any("no authentication configured" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------ OIDC
@pytest.fixture(scope="module")
def insecure_transport():
    previous = os.environ.get("AUTHLIB_INSECURE_TRANSPORT")
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"  # the mock provider on plain http on the loopback
    yield
    if previous is None:
        os.environ.pop("AUTHLIB_INSECURE_TRANSPORT", None)
    else:
        os.environ["AUTHLIB_INSECURE_TRANSPORT"] = previous


def _provider(max_age: timedelta = timedelta(hours=1)):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # authlib.jose deprecation inside the mock
        from oidc_provider_mock import User, run_server_in_thread
    users = [
        User(sub="alice", claims={"email": "Alice@example.org", "roles": ["clinician"]}),
        User(sub="rob", claims={"email": "rob@example.org", "roles": "mmnar-reviewers"}),
        User(sub="nora", claims={"email": "nora@example.org"}),
    ]
    return run_server_in_thread(user_claims=users, access_token_max_age=max_age)


@pytest.fixture(scope="module")
def provider(insecure_transport):
    with _provider() as server:
        yield f"http://localhost:{server.server_port}"


def provider_token(issuer: str, sub: str, client_id: str = "mmnar-api") -> str:
    """A JWT signed by the provider (the mock issues opaque access tokens, so its ID token stands in for the
    JWT access token a real provider issues for an API audience: same signature, iss, aud and exp checks)."""
    redirect = "http://127.0.0.1/callback"
    answer = httpx.post(
        f"{issuer}/oauth2/authorize",
        data={"sub": sub},
        params={
            "client_id": client_id,
            "redirect_uri": redirect,
            "response_type": "code",
            "scope": "openid email",
            "state": "s",
        },
    )
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    token = httpx.post(
        f"{issuer}/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "client_id": client_id,
            "client_secret": "secret",
        },
    )
    return token.json()["id_token"]


@pytest.fixture(scope="module")
def oidc_client(predictor, provider):
    config = ServeConfig(
        oidc_issuer=provider, oidc_audience="mmnar-api", oidc_role_map="mmnar-reviewers=reviewer", oidc_leeway_s=0
    )
    with TestClient(create_app(predictor, config)) as test_client:
        yield test_client


def test_oidc_valid_tokens_and_roles_from_the_claim(oidc_client, provider):
    alice = provider_token(provider, "alice")
    assert oidc_client.get("/info", headers=bearer(alice)).status_code == 200
    assert oidc_client.post("/predict", files=PREDICT, headers=bearer(alice)).status_code == 200
    assert_generic(oidc_client.get("/stats", headers=bearer(alice)), 403, alice)
    rob = provider_token(provider, "rob")  # role through the role map
    assert oidc_client.get("/info", headers=bearer(rob)).status_code == 200
    assert_generic(oidc_client.post("/predict", files=PREDICT, headers=bearer(rob)), 403, rob)
    nora = provider_token(provider, "nora")  # signed in, but no role for this server
    assert_generic(oidc_client.get("/info", headers=bearer(nora)), 403, nora)
    assert_generic(oidc_client.get("/openapi.json", headers=bearer(nora)), 403, nora)


def _unsigned(claims: dict, header: dict) -> str:
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part(header)}.{part(claims)}.{part({'sig': 1})[:20]}"


def test_oidc_refuses_wrong_audience_other_issuer_forgeries_and_logs_why(
    oidc_client, provider, insecure_transport, caplog
):
    wrong_audience = provider_token(provider, "alice", client_id="another-app")
    with _provider() as other:  # another provider: another key, another issuer
        foreign = provider_token(f"http://localhost:{other.server_port}", "alice")
    alice = provider_token(provider, "alice")
    head, claims, signature = alice.split(".")
    payload = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    tampered = ".".join(
        [
            head,
            base64.urlsafe_b64encode(json.dumps({**payload, "roles": ["admin"]}).encode()).decode().rstrip("="),
            signature,
        ]
    )
    none_alg = _unsigned({**payload, "roles": ["admin"]}, {"alg": "none", "typ": "JWT"})
    hs256 = _unsigned(payload, {"alg": "HS256", "typ": "JWT"})
    cases = {
        "wrong audience": wrong_audience,
        "bad signature": foreign,
        "tampered": tampered,
        "none": none_alg,
        "hs256": hs256,
    }
    with caplog.at_level(logging.WARNING, logger="mmnar_core.serving.auth"):
        for token in cases.values():
            assert_generic(oidc_client.get("/info", headers=bearer(token)), 401, token, token.split(".")[-1])
    logged = caplog.text
    assert "wrong audience" in logged and "bad signature" in logged
    for token in cases.values():
        assert token not in logged and token.split(".")[-1][:16] not in logged


@pytest.mark.slow
def test_oidc_expired_token(predictor, insecure_transport):
    with _provider(max_age=timedelta(seconds=1)) as server:
        issuer = f"http://localhost:{server.server_port}"
        config = ServeConfig(oidc_issuer=issuer, oidc_audience="mmnar-api", oidc_leeway_s=0)
        with TestClient(create_app(predictor, config)) as test_client:
            token = provider_token(issuer, "alice")
            first = test_client.get("/info", headers=bearer(token))
            time.sleep(2.2)
            assert_generic(test_client.get("/info", headers=bearer(token)), 401, token)
            assert first.status_code in (200, 401)  # issued with 1 s to live: valid only if this machine was quick


def test_oidc_keys_come_only_from_the_issuers_origin():
    fetched = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200, json={"issuer": "https://login.example.org", "jwks_uri": "https://attacker.example.net/jwks"}
            )
        return httpx.Response(200, json={"keys": []})

    verifier = OIDCVerifier("https://login.example.org", "api", transport=httpx.MockTransport(handler))
    with pytest.raises(AuthFailure, match="not on the issuer's origin"):
        verifier.verify(_unsigned({"sub": "x"}, {"alg": "RS256"}))
    assert fetched == ["https://login.example.org/.well-known/openid-configuration"]
    auth = Authenticator(oidc=verifier)
    with pytest.raises(AuthFailure, match="OIDC access tokens only"):
        auth.authenticate("Bearer mmnar_static-token-but-no-token-file")


# ------------------------------------------------------------------------------------------------ the app's client
def test_remote_service_sends_the_token_from_the_environment(predictor, tokens, monkeypatch):
    from mmnar_app.remote import RemoteService, RemoteServiceError

    path, issued = tokens
    monkeypatch.delenv("MMNAR_INFERENCE_TOKEN", raising=False)
    with ServerThread(create_app(predictor, ServeConfig(auth_token_file=str(path)))) as server:
        with pytest.raises(RemoteServiceError) as missing:
            RemoteService(server.url)
        assert missing.value.status == 401 and "MMNAR_INFERENCE_TOKEN" in str(missing.value)
        monkeypatch.setenv("MMNAR_INFERENCE_TOKEN", "mmnar_" + "W" * 43)
        with pytest.raises(RemoteServiceError) as wrong:
            RemoteService(server.url)
        assert wrong.value.status == 401 and "W" * 20 not in str(wrong.value)
        monkeypatch.setenv("MMNAR_INFERENCE_TOKEN", issued["rita"])
        reviewer = RemoteService(server.url)  # GET /info: allowed
        from mmnar_core.schema import PatientRecord

        with pytest.raises(RemoteServiceError) as forbidden:
            reviewer.predict(PatientRecord("p", structured={"age": 71.0}))
        assert forbidden.value.status == 403 and issued["rita"] not in str(forbidden.value)
        monkeypatch.setenv("MMNAR_INFERENCE_TOKEN", issued["carla"])
        clinician = RemoteService(server.url)
        assert clinician.predict(PatientRecord("p", structured={"age": 71.0}))["risks"]
