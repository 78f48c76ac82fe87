"""Bearer-token authentication and roles for the model server (docs/serving.md, "Authentication").

Two kinds of token, either or both configured in `ServeConfig`:

- **static tokens** (`auth_token_file`, CLI `--auth-token-file FILE`): a JSON file of tokens, each mapped to a
  user and one role, written by `python -m mmnar_core serve-token add FILE --user U --role R` (which prints
  the token once). The file holds no token: only HMAC-SHA256(key, token) under a random 256-bit key kept
  in the same file (see `TokenStore` for why a keyed fast hash is right here and argon2 is not);
- **OIDC access tokens** (`oidc_issuer` + `oidc_audience`): JWTs signed by the issuer, checked against the
  issuer's JWKS (fetched from the issuer's own discovery document, on the issuer's own origin only), with
  `iss`, `aud` and `exp` required; the roles come from a claim (`oidc_role_claim`, default `roles`).

`BearerAuthMiddleware` guards every path but /health and /ready: no, a malformed, an unknown, an expired
or a badly signed token -> 401 with `WWW-Authenticate: Bearer`; a valid token whose role may not use the
endpoint -> 403. Both bodies are one generic message; the reason goes to the server log, never the token.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from mmnar_core.atomic_write import write_text_atomic
from mmnar_core.roles import ROLES, USER_CLAIMS, RoleMapError, parse_role_map, roles_from_claims, username_from_claims

log = logging.getLogger("mmnar_core.serving.auth")

# what each role may do; a principal with several roles (an OIDC claim may give several) has their union
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "clinician": frozenset({"predict", "what_if", "explain", "info"}),
    "reviewer": frozenset({"info", "pattern_counts"}),
    "admin": frozenset({"info", "stats", "pattern_counts"}),
}
OPEN_PATHS = frozenset({"/health", "/ready"})  # probes: never need a token
ENDPOINT_PERMISSIONS = {
    "/predict": "predict",
    "/what-if": "what_if",
    "/explain": "explain",
    "/info": "info",
    "/stats": "stats",
    "/pattern-counts": "pattern_counts",
}
DOC_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})  # any role
TOKEN_FILE_FORMAT = "mmnar-serve-tokens"
TOKEN_PREFIX = "mmnar_"
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MAX_TOKEN_CHARS = 16_384
_B64TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token
GENERIC_401 = "authentication required: a valid bearer token is missing"
GENERIC_403 = "this token may not use this endpoint"
ACCEPTED_401 = "an Authorization: Bearer <token> header with a valid token (docs/serving.md#authentication)"
ACCEPTED_403 = "a token whose role may use this endpoint (docs/serving.md#authentication)"


class AuthConfigError(ValueError):
    """The authentication settings or the token file are unusable (raised at startup, naming the problem)."""


class AuthFailure(Exception):
    """A request's credentials were refused. `reason` is for the server log only (never the token)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Principal:
    user: str
    roles: frozenset[str]
    source: str  # 'token' (static token file) or 'oidc'
    token_id: str | None = None  # the static token's id (for the log; not secret)

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset().union(*(ROLE_PERMISSIONS.get(role, frozenset()) for role in self.roles))

    def can(self, permission: str | None) -> bool:
        """`permission` None: any principal with at least one role (the API docs, unknown paths -> 404)."""
        if permission is None:
            return bool(self.roles & set(ROLES))
        return permission in self.permissions

    def describe(self) -> str:
        roles = ",".join(r for r in ROLES if r in self.roles) or "no role"
        return f"{self.user} ({roles}; {self.source}{' ' + self.token_id if self.token_id else ''})"


def permission_for(path: str) -> str | None:
    """The permission an endpoint needs; None for the docs and for paths that are not endpoints."""
    return ENDPOINT_PERMISSIONS.get(path.rstrip("/") or "/")


# ------------------------------------------------------------------------------------------------ static tokens
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class TokenEntry:
    id: str
    user: str
    role: str
    digest: str  # hex HMAC-SHA256(key, token)
    created: str = ""

    def to_dict(self) -> dict:
        return {"id": self.id, "user": self.user, "role": self.role, "digest": self.digest, "created": self.created}


@dataclass
class TokenStore:
    """The server's static bearer tokens: `digest = HMAC-SHA256(key, token)` per token, `key` 32 random bytes.

    Why not argon2 (as for the app's passwords)? A slow, salted hash protects *low-entropy* secrets from
    guessing. These tokens are 256-bit random strings (`secrets.token_urlsafe(32)`): nobody can guess one
    or invert a SHA-256 of one, however fast the hash. A keyed hash still means the file holds no usable
    credential, a digest from one server says nothing on another (the key is per file, i.e. per server),
    and the check costs microseconds per request, where argon2 (64 MiB, ~50 ms) on every request would let
    anyone exhaust the server with bogus tokens. Digests are compared with `hmac.compare_digest`, all of
    them, so the time taken does not depend on which (if any) matched.
    """

    path: Path | None
    key: bytes
    entries: list[TokenEntry] = field(default_factory=list)

    @classmethod
    def new(cls, path: str | Path | None = None) -> TokenStore:
        return cls(Path(path) if path else None, secrets.token_bytes(32), [])

    @classmethod
    def load(cls, path: str | Path) -> TokenStore:
        path = Path(path)
        where = f"token file {path}"
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AuthConfigError(
                f"{where}: missing; create it with `python -m mmnar_core serve-token add {path} "
                "--user NAME --role clinician`"
            ) from None
        except (OSError, UnicodeDecodeError, ValueError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not valid JSON"
            raise AuthConfigError(f"{where}: cannot be read ({reason})") from None
        if not (isinstance(document, dict) and document.get("format") == TOKEN_FILE_FORMAT):
            raise AuthConfigError(
                f"{where}: not a token file (format {TOKEN_FILE_FORMAT!r}); create one with "
                "`python -m mmnar_core serve-token add`"
            )
        if document.get("hash") != "hmac-sha256":
            raise AuthConfigError(f"{where}: unknown hash {document.get('hash')!r}; accepted: hmac-sha256")
        try:
            key = _unb64(str(document.get("key", "")))
        except ValueError:
            key = b""
        if len(key) < 16:
            raise AuthConfigError(f"{where}: the key is missing or shorter than 16 bytes")
        entries, problems, seen = [], [], set()
        tokens = document.get("tokens")
        if not isinstance(tokens, list):
            raise AuthConfigError(f"{where}: 'tokens' is not a list")
        for i, item in enumerate(tokens):
            if not isinstance(item, dict):
                problems.append(f"tokens[{i}] is not an object")
                continue
            missing = [k for k in ("id", "user", "role", "digest") if not isinstance(item.get(k), str) or not item[k]]
            if missing:
                problems.append(f"tokens[{i}] has no {', '.join(missing)}")
                continue
            if item["role"] not in ROLES:
                problems.append(f"tokens[{i}] ({item['id']}) has role {item['role']!r}; accepted: {', '.join(ROLES)}")
            if not re.fullmatch(r"[0-9a-f]{64}", item["digest"]):
                problems.append(f"tokens[{i}] ({item['id']}) has a digest that is not 64 hex digits")
            if item["id"] in seen:
                problems.append(f"tokens[{i}]: id {item['id']!r} appears twice")
            seen.add(item["id"])
            entries.append(
                TokenEntry(item["id"], item["user"], item["role"], item["digest"], str(item.get("created", "")))
            )
        if problems:
            raise AuthConfigError(f"{where}: " + "; ".join(problems))
        if os.name == "posix" and path.stat().st_mode & 0o077:
            log.warning("%s can be read by other users (mode %o); chmod 600 it", where, path.stat().st_mode & 0o777)
        return cls(path, key, entries)

    def digest(self, token: str) -> str:
        return hmac.new(self.key, token.encode("utf-8"), hashlib.sha256).hexdigest()

    def verify(self, token: str) -> Principal | None:
        digest = self.digest(token)
        found = None
        for entry in self.entries:  # every entry, constant-time comparisons
            if hmac.compare_digest(entry.digest, digest) and found is None:
                found = entry
        if found is None:
            return None
        return Principal(found.user, frozenset({found.role}), "token", found.id)

    def add(self, user: str, role: str) -> tuple[str, TokenEntry]:
        """A new token for `user` with `role`: (the token, shown once; its entry, which holds only the digest)."""
        if role not in ROLES:
            raise AuthConfigError(f"role {role!r} is not accepted; accepted: {', '.join(ROLES)}")
        if not user or not user.strip():
            raise AuthConfigError("the user name is empty")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        taken = {e.id for e in self.entries}
        token_id = f"tok-{secrets.token_hex(4)}"
        while token_id in taken:
            token_id = f"tok-{secrets.token_hex(4)}"
        entry = TokenEntry(
            token_id, user.strip(), role, self.digest(token), datetime.now(UTC).isoformat(timespec="seconds")
        )
        self.entries.append(entry)
        return token, entry

    def revoke(self, token_id: str) -> TokenEntry:
        for entry in self.entries:
            if entry.id == token_id:
                self.entries.remove(entry)
                return entry
        raise AuthConfigError(f"no token with id {token_id!r} in {self.path}; see `serve-token list`")

    def save(self) -> Path:
        """Atomically, with mode 0600."""
        if self.path is None:
            raise AuthConfigError("this token store has no file")
        document = {
            "format": TOKEN_FILE_FORMAT,
            "version": 1,
            "hash": "hmac-sha256",
            "key": _b64(self.key),
            "tokens": [e.to_dict() for e in self.entries],
        }
        write_text_atomic(self.path, json.dumps(document, indent=2) + "\n", mode=0o600)
        return self.path


# ------------------------------------------------------------------------------------------------ OIDC
def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _role_map(text) -> dict[str, str]:
    try:
        return parse_role_map(text)
    except RoleMapError as error:
        raise AuthConfigError(str(error)) from None


class OIDCVerifier:
    """Validates JWT access tokens of one issuer for one audience.

    The issuer must be https (plain http only on a loopback address, for tests). Its discovery document
    (`<issuer>/.well-known/openid-configuration`) must name the same issuer, and its `jwks_uri` must be on
    the issuer's own origin: keys are never fetched from anywhere a token or a document points to. The
    JWKS is cached for `jwks_max_age_s` and fetched again, at most once per `min_refresh_s`, when a token
    names a key id it does not hold (key rotation). Only asymmetric algorithms are accepted (never `none`
    nor HS*, which would let a public key act as a shared secret)."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        role_claim: str = "roles",
        role_map: Mapping[str, str] | None = None,
        user_claims: Iterable[str] = USER_CLAIMS,
        leeway_s: float = 30.0,
        jwks_max_age_s: float = 3600.0,
        min_refresh_s: float = 30.0,
        timeout_s: float = 5.0,
        transport=None,
    ):
        issuer = (issuer or "").strip()
        scheme, host, _ = _origin(issuer)
        if scheme not in ("https", "http") or not host:
            raise AuthConfigError(
                f"OIDC issuer {issuer!r} is not an http(s) URL; accepted: e.g. https://login.example.org/realms/clinic"
            )
        if scheme == "http" and not _is_loopback(host):
            raise AuthConfigError(
                f"OIDC issuer {issuer!r} uses plain http; accepted: an https issuer (http only on "
                "a loopback address, for tests)"
            )
        if not (audience or "").strip():
            raise AuthConfigError("the OIDC audience is empty; accepted: the API's client id / audience")
        self.issuer = issuer.rstrip("/")
        self.audience = audience.strip()
        self.role_claim = role_claim
        self.role_map = dict(role_map or {})
        self.user_claims = tuple(user_claims)
        self.leeway_s = leeway_s
        self.jwks_max_age_s = jwks_max_age_s
        self.min_refresh_s = min_refresh_s
        self.timeout_s = timeout_s
        self.transport = transport
        self._keys = None
        self._fetched_at = 0.0
        self._attempted_at = -1e9
        self._lock = threading.Lock()

    def _get(self, client, url: str) -> dict:
        response = client.get(url)
        if response.status_code != 200:
            raise AuthFailure(f"the identity provider answered {response.status_code} to GET {url}")
        try:
            document = response.json()
        except ValueError:
            raise AuthFailure(f"the identity provider's {url} is not JSON") from None
        if not isinstance(document, dict):
            raise AuthFailure(f"the identity provider's {url} is not a JSON object")
        return document

    def fetch_keys(self):
        """Discovery document -> jwks_uri (same origin as the issuer) -> the key set."""
        import httpx
        from joserfc.jwk import KeySet

        with httpx.Client(timeout=self.timeout_s, follow_redirects=False, transport=self.transport) as client:
            try:
                discovery = self._get(client, f"{self.issuer}/.well-known/openid-configuration")
                if str(discovery.get("issuer", "")).rstrip("/") != self.issuer:
                    raise AuthFailure("the discovery document names another issuer")
                jwks_uri = discovery.get("jwks_uri")
                if not isinstance(jwks_uri, str) or _origin(jwks_uri) != _origin(self.issuer):
                    raise AuthFailure("the discovery document's jwks_uri is not on the issuer's origin; not fetched")
                jwks = self._get(client, jwks_uri)
            except httpx.HTTPError as error:
                raise AuthFailure(
                    f"the identity provider {self.issuer} cannot be reached ({type(error).__name__})"
                ) from None
        try:
            keys = KeySet.import_key_set(jwks)
        except Exception as error:  # a malformed JWKS: joserfc raises several types
            raise AuthFailure(f"the identity provider's JWKS cannot be read ({type(error).__name__})") from None
        return keys

    def _key_set(self, refresh: bool = False):
        with self._lock:
            now = time.monotonic()
            stale = self._keys is None or now - self._fetched_at > self.jwks_max_age_s
            if (refresh or stale) and now - self._attempted_at >= (
                self.min_refresh_s if self._keys is not None else 1.0
            ):
                self._attempted_at = now
                try:
                    self._keys = self.fetch_keys()
                    self._fetched_at = now
                except AuthFailure:
                    if self._keys is None:
                        raise
                    log.warning("refreshing the OIDC keys of %s failed; the cached keys are kept", self.issuer)
            if self._keys is None:
                raise AuthFailure("the identity provider's keys are not available yet")
            return self._keys

    def verify(self, token: str) -> Principal:
        from joserfc import errors, jwt

        try:
            decoded = jwt.decode(token, self._key_set(), algorithms=list(ASYMMETRIC_ALGORITHMS))
        except errors.InvalidKeyIdError:
            try:  # a key the cached set does not have: perhaps rotated
                decoded = jwt.decode(token, self._key_set(refresh=True), algorithms=list(ASYMMETRIC_ALGORITHMS))
            except errors.JoseError as error:
                raise AuthFailure(_jose_reason(error)) from None
        except errors.JoseError as error:
            raise AuthFailure(_jose_reason(error)) from None
        except (ValueError, TypeError, KeyError):  # malformed headers or keys outside joserfc's own errors
            raise AuthFailure("malformed token") from None
        claims = decoded.claims
        registry = jwt.JWTClaimsRegistry(
            leeway=int(self.leeway_s),
            iss={"essential": True, "value": self.issuer},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except errors.ExpiredTokenError:
            raise AuthFailure("token expired") from None
        except errors.JoseError as error:
            raise AuthFailure(_jose_reason(error)) from None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise AuthFailure("wrong audience")
        user = username_from_claims(claims, self.user_claims) or ""
        return Principal(user, frozenset(roles_from_claims(claims, self.role_claim, self.role_map)), "oidc")


def _jose_reason(error) -> str:
    """A fixed description per joserfc error class: their messages can hold token content (a kid, a claim)."""
    from joserfc import errors

    reasons = (
        (errors.ExpiredTokenError, "token expired"),
        (errors.BadSignatureError, "bad signature"),
        (errors.InvalidKeyIdError, "unknown signing key"),
        (errors.MissingClaimError, "a required claim is missing"),
        (errors.InvalidClaimError, "a claim has a wrong value (issuer, not-before or issued-at)"),
        (errors.UnsupportedAlgorithmError, "algorithm not accepted"),
        (errors.MissingAlgorithmError, "algorithm not accepted"),
        (errors.DecodeError, "malformed token"),
    )
    for kind, reason in reasons:
        if isinstance(error, kind):
            return reason
    return f"token refused ({type(error).__name__})"


# ------------------------------------------------------------------------------------------------ both
class Authenticator:
    """`authenticate(header)` -> Principal, or AuthFailure. JWT-shaped tokens go to OIDC, others to the file."""

    def __init__(self, tokens: TokenStore | None = None, oidc: OIDCVerifier | None = None):
        if tokens is None and oidc is None:
            raise AuthConfigError("an Authenticator needs a token file or an OIDC issuer")
        self.tokens = tokens
        self.oidc = oidc
        self._token_stamp = self._stamp()
        self._checked_at = time.monotonic()
        self._reload_lock = threading.Lock()

    def _stamp(self):
        if self.tokens is None or self.tokens.path is None:
            return None
        try:
            info = self.tokens.path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _reload_tokens(self) -> None:
        """Tokens added or revoked with `serve-token` apply without a restart (the file is re-read when it
        changes, checked at most once a second). A file that became unreadable keeps the previous tokens."""
        now = time.monotonic()
        if self.tokens is None or self.tokens.path is None or now - self._checked_at < 1.0:
            return
        with self._reload_lock:
            self._checked_at = now
            stamp = self._stamp()
            if stamp == self._token_stamp or stamp is None:
                return
            try:
                self.tokens = TokenStore.load(self.tokens.path)
                log.info("token file %s re-read: %d token(s)", self.tokens.path, len(self.tokens.entries))
            except AuthConfigError as error:
                log.error("%s; the previous tokens stay in use", error)
            self._token_stamp = stamp

    @classmethod
    def from_config(cls, config) -> Authenticator | None:
        """From a ServeConfig; None when no authentication is configured (the server is open)."""
        tokens = TokenStore.load(config.auth_token_file) if config.auth_token_file else None
        oidc = None
        if config.oidc_issuer:
            oidc = OIDCVerifier(
                config.oidc_issuer,
                config.oidc_audience or "",
                role_claim=config.oidc_role_claim,
                role_map=_role_map(config.oidc_role_map),
                leeway_s=config.oidc_leeway_s,
            )
        if tokens is None and oidc is None:
            return None
        return cls(tokens, oidc)

    def describe(self) -> str:
        parts = []
        if self.tokens is not None:
            parts.append(f"{len(self.tokens.entries)} static token(s) from {self.tokens.path}")
        if self.oidc is not None:
            parts.append(
                f"OIDC access tokens of {self.oidc.issuer} for audience {self.oidc.audience} "
                f"(roles from claim {self.oidc.role_claim!r})"
            )
        return "; ".join(parts)

    def authenticate(self, header: str | bytes | None) -> Principal:
        if header is None:
            raise AuthFailure("no Authorization header")
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer":
            raise AuthFailure("the Authorization header is not a Bearer token")
        if not token or len(token) > MAX_TOKEN_CHARS or not _B64TOKEN.match(token):
            raise AuthFailure("malformed bearer token")
        if token.count(".") == 2 and self.oidc is not None:
            return self.oidc.verify(token)
        if self.tokens is not None:
            self._reload_tokens()
            principal = self.tokens.verify(token)
            if principal is not None:
                return principal
            raise AuthFailure("unknown token")
        raise AuthFailure("not a JWT (this server accepts OIDC access tokens only)")


class BearerAuthMiddleware:
    """ASGI middleware: every path but OPEN_PATHS needs a bearer token; 401 / 403 as JSON error bodies."""

    def __init__(self, app, authenticator: Authenticator, open_paths: Iterable[str] = OPEN_PATHS):
        self.app = app
        self.authenticator = authenticator
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        from starlette.concurrency import run_in_threadpool

        header = None
        for name, value in scope.get("headers") or ():
            if name == b"authorization":
                header = value
                break
        method, path = scope.get("method", "?"), scope["path"]
        client = (scope.get("client") or ("?",))[0]
        try:  # in a thread: an OIDC key refresh does network I/O
            principal = await run_in_threadpool(self.authenticator.authenticate, header)
        except AuthFailure as failure:
            log.warning("401 %s %s from %s: %s", method, _safe(path), client, failure.reason)
            await _deny(send, 401, GENERIC_401, ACCEPTED_401, {"WWW-Authenticate": 'Bearer realm="mmnar"'})
            return
        permission = permission_for(path)
        if not principal.can(permission):
            log.warning(
                "403 %s %s from %s: %s may not use it (needs %s)",
                method,
                _safe(path),
                client,
                principal.describe(),
                permission or "any role",
            )
            await _deny(send, 403, GENERIC_403, ACCEPTED_403, None)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _safe(path: str) -> str:
    """A request path for the log: printable and short (it is the client's text)."""
    text = "".join(c if c.isprintable() else "?" for c in path)
    return text if len(text) <= 100 else text[:100] + "..."


async def _deny(send, status: int, problem: str, accepted: str, headers: dict | None) -> None:
    body = json.dumps(
        {
            "errors": [
                {
                    "field": "Authorization",
                    "problem": problem,
                    "accepted": accepted,
                    "feature": None,
                    "message": f"Authorization: {problem}. Accepted: {accepted}",
                    "status": status,
                }
            ],
            "status": status,
        }
    ).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------------------------ command
def register_token_command(subparsers) -> None:
    """`python -m mmnar_core serve-token {add,list,revoke} FILE`: manage the server's static tokens."""
    parser = subparsers.add_parser(
        "serve-token",
        help="manage the model server's bearer tokens (add prints a new token once)",
        description="The token file of `serve --auth-token-file FILE` holds, per token, its id, user, role and an "
        "HMAC-SHA256 digest under the file's random key; never the token. See docs/serving.md#authentication.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="create a token for a user and a role; prints the token once")
    add.add_argument("file", metavar="FILE")
    add.add_argument("--user", required=True)
    add.add_argument("--role", required=True, choices=ROLES)
    listing = actions.add_parser("list", help="list the tokens (id, user, role, created)")
    listing.add_argument("file", metavar="FILE")
    revoke = actions.add_parser("revoke", help="remove a token by id")
    revoke.add_argument("file", metavar="FILE")
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    parser.set_defaults(func=run_token_command)


def run_token_command(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if args.action == "add":
        store = TokenStore.load(path) if path.exists() else TokenStore.new(path)
        token, entry = store.add(args.user, args.role)
        store.save()
        print(
            f"# token {entry.id} for {entry.user} ({entry.role}); shown once, store it as a secret "
            f"(clients: MMNAR_INFERENCE_TOKEN)"
        )
        print(token)
        return 0
    store = TokenStore.load(path)
    if args.action == "list":
        for entry in store.entries:
            print(f"{entry.id}\t{entry.user}\t{entry.role}\t{entry.created}")
        return 0
    entry = store.revoke(args.token_id)
    store.save()
    print(f"revoked {entry.id} ({entry.user}, {entry.role}); a running server stops accepting it within a second")
    return 0
