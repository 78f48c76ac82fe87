"""Who is using the app and what they may do: sign-in (OpenID Connect, local accounts or the local demo),
roles, the server-side check every page makes, and the audit entries for sign-in, sign-out and denials.

Modes (``MMNAR_AUTH``; see docs/auth.md):

- ``oidc`` (also chosen automatically when Streamlit's secrets have an ``[auth]`` section): Streamlit's
  built-in ``st.login`` / ``st.user`` / ``st.logout`` against the organisation's OpenID Connect provider.
  The user name comes from a claim (``MMNAR_OIDC_USER_CLAIM``, default ``email``); the role from the
  ``users`` table when the user has a row there (an admin sets it on the Admin page or with
  ``python -m mmnar_app.accounts``; a disabled row locks the user out), else from a claim
  (``MMNAR_OIDC_ROLE_CLAIM``, values equal to a role name or mapped by ``MMNAR_OIDC_ROLE_MAP``).
- ``local``: accounts in the database (argon2id hashes), a sign-in form; after ``MMNAR_LOCKOUT_ATTEMPTS``
  failures an exponential back-off per user name and per client, at most ``MMNAR_LOCKOUT_MINUTES``
  (store/backoff.py), the same for unknown names as for real ones.
- ``none`` (the default without ``[auth]``): the local single-user demo; the one user (``MMNAR_USER``)
  acts as clinician, reviewer and admin, and every page says so.

The signed-in identity lives only on the server: in ``st.user`` (Streamlit's signed identity cookie) for
OIDC and in this session's state, written only after a successful password check, for local accounts.
No query parameter, widget or environment variable of a running app can set it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import streamlit as st

from mmnar_app.logging_setup import get_logger, phi_hash
from mmnar_app.plain_text import plain
from mmnar_core.roles import ROLES, USER_CLAIMS, RoleMapError, parse_role_map, roles_from_claims, username_from_claims

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "clinician": frozenset({"analyse", "history:own"}),
    "reviewer": frozenset({"history:all"}),
    "admin": frozenset({"admin"}),
}
PERMISSION_TEXT = {
    "analyse": "analysing and saving patients (clinicians)",
    "history": "saved assessments (clinicians see their own, reviewers all)",
    "admin": "user management and the audit log export (admins)",
}
MODE_NAMES = {"demo": "local single-user demo", "local": "local accounts", "oidc": "OpenID Connect"}
_SESSION_USER = "_mmnar_signed_in_user"  # local mode: written only after a successful password check
_SESSION_AUDITED = "_mmnar_sign_in_audited"
_SESSION_CLIENT = "_mmnar_sign_in_client"  # a random id per browser session, when there is no address

log = get_logger("mmnar_app.auth")


class AuthSettingsError(ValueError):
    """A sign-in setting that cannot be used (the app stays closed and shows this message)."""


CLIENT_KEYS = ("ip", "session")


@dataclass(frozen=True)
class AuthSettings:
    mode: str  # auto | none | local | oidc
    lockout_attempts: int  # failures before the back-off starts
    lockout_minutes: float  # the longest back-off
    oidc_provider: str | None
    user_claim: str
    role_claim: str | None
    role_map: dict[str, str] = field(default_factory=dict)
    client_key: str = "ip"  # ip: the connection's address (else the session); session: every browser tab

    def backoff_policy(self):
        from datetime import timedelta

        from mmnar_app.store.backoff import BackoffPolicy

        cap = timedelta(minutes=self.lockout_minutes)
        return BackoffPolicy(free_attempts=self.lockout_attempts, cap=cap, base=min(timedelta(seconds=15), cap))

    @classmethod
    def from_env(cls) -> AuthSettings:
        env = os.environ
        mode = (env.get("MMNAR_AUTH") or "auto").strip().lower()
        mode = {"": "auto", "demo": "none", "off": "none", "openid": "oidc", "accounts": "local"}.get(mode, mode)
        role_map = parse_role_map(env.get("MMNAR_OIDC_ROLE_MAP"))  # a bad entry stops the app with its message
        client_key = (env.get("MMNAR_SIGN_IN_CLIENT") or "ip").strip().lower()
        if client_key not in CLIENT_KEYS:
            raise AuthSettingsError(
                f"MMNAR_SIGN_IN_CLIENT={client_key!r} is not accepted: use ip (the connection's "
                "address, else the browser session) or session"
            )
        return cls(
            mode=mode,
            lockout_attempts=_setting(
                env, "MMNAR_LOCKOUT_ATTEMPTS", 5, int, 1, 100, "a whole number of failures from 1 to 100"
            ),
            lockout_minutes=_setting(
                env,
                "MMNAR_LOCKOUT_MINUTES",
                5.0,
                float,
                0.1,
                60.0,
                "minutes from 0.1 to 60 (the longest back-off; never a permanent lock)",
            ),
            client_key=client_key,
            oidc_provider=(env.get("MMNAR_OIDC_PROVIDER") or "").strip() or None,
            user_claim=(env.get("MMNAR_OIDC_USER_CLAIM") or "email").strip(),
            role_claim=(env.get("MMNAR_OIDC_ROLE_CLAIM") or "").strip() or None,
            role_map=role_map,
        )


def _setting(env, name: str, default, kind, low, high, accepted: str):
    """A numeric setting from the environment; a bad one keeps the app closed with this message."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise AuthSettingsError(f"{name}={raw!r} is not accepted: use {accepted} (default {default:g})")
    return value


@dataclass(frozen=True)
class Principal:
    """The signed-in user of this session."""

    username: str
    roles: frozenset[str]
    mode: str  # demo | local | oidc
    display_name: str = ""

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset().union(*(ROLE_PERMISSIONS.get(r, frozenset()) for r in self.roles))

    def can(self, permission: str) -> bool:
        if permission == "history":
            return bool({"history:own", "history:all"} & self.permissions)
        return permission in self.permissions

    @property
    def sees_all_assessments(self) -> bool:
        return "history:all" in self.permissions

    @property
    def role_text(self) -> str:
        return ", ".join(r for r in ROLES if r in self.roles) or "no role"


# ----------------------------------------------------------------------------- configuration
def _secrets_section(name: str):
    """A section of Streamlit's secrets, or None (no secrets file, or no such section)."""
    try:
        secrets = st.secrets
        if not secrets.load_if_toml_exists():
            return None
        return secrets.get(name)
    except Exception:
        return None


def _unreadable_secrets_file() -> str | None:
    """A secrets file that exists but could not be read (a TOML error): its sign-in settings would be
    silently lost, so the app must not fall back to the open demo."""
    try:
        from streamlit import config

        present = [p for p in config.get_option("secrets.files") if os.path.isfile(p)]
        return present[0] if present and not st.secrets.load_if_toml_exists() else None
    except Exception:
        return None


def auth_section_problems(section, provider: str | None) -> list[str]:
    """What is missing from an ``[auth]`` section for `st.login` to work (key names only, never values)."""
    missing = [k for k in ("redirect_uri", "cookie_secret") if not section.get(k)]
    where = section.get(provider) if provider else section
    if provider and where is None:
        return missing + [f"[auth.{provider}]"]
    missing += [
        k if not provider else f"{provider}.{k}"
        for k in ("client_id", "client_secret", "server_metadata_url")
        if not (where or {}).get(k)
    ]
    redirect = str(section.get("redirect_uri") or "")
    if redirect and not redirect.rstrip("/").endswith("/oauth2callback"):
        missing.append("redirect_uri ending in /oauth2callback")
    return missing


def resolve_mode(settings: AuthSettings) -> tuple[str, str | None]:
    """(mode, problem): demo | local | oidc, and a configuration problem to show instead of the app."""
    if settings.mode not in ("auto", "none", "local", "oidc"):
        return "none", (
            f"MMNAR_AUTH={settings.mode!r} is not a sign-in mode: use oidc, local or none "
            "(unset: OpenID Connect when secrets.toml has an [auth] section, else the local demo)."
        )
    if settings.mode == "local":
        return "local", None
    if settings.mode == "none":
        return "demo", None
    unreadable = _unreadable_secrets_file()
    if unreadable:
        return "oidc", (
            f"The secrets file {unreadable} could not be read (is it valid TOML?). The app stays "
            "closed rather than run without the sign-in it may configure."
        )
    section = _secrets_section("auth")
    if section is None:
        if settings.mode == "oidc":
            return "oidc", (
                "MMNAR_AUTH=oidc but Streamlit's secrets have no [auth] section: add redirect_uri, "
                "cookie_secret, client_id, client_secret and server_metadata_url to "
                ".streamlit/secrets.toml (see docs/auth.md)."
            )
        return "demo", None
    problems = auth_section_problems(section, settings.oidc_provider)
    from streamlit.auth_util import is_authlib_installed

    if not is_authlib_installed():
        problems.append("the Authlib package (pip install -r requirements.txt)")
    if problems:
        return "oidc", (
            "Sign-in is configured ([auth] in secrets.toml) but incomplete: missing "
            + ", ".join(problems)
            + ". The app stays closed until this is fixed (see docs/auth.md)."
        )
    return "oidc", None


# ----------------------------------------------------------------------------- audit
def audit(
    db,
    action: str,
    user: str,
    model_version: str,
    detail: str = "",
    input_hash: str = "",
    assessment_id: int | None = None,
) -> None:
    """An audit entry; a failure to write it is logged (redacted) and does not break the page."""
    try:
        db.record(
            action=action,
            user=user or "unknown",
            model_version=model_version or "",
            input_hash=input_hash,
            assessment_id=assessment_id,
            detail=detail,
        )
    except Exception as error:  # pragma: no cover - the store is down: the page says so elsewhere
        from mmnar_app.logging_setup import safe_error

        log.error("could not write the audit entry %s: %s", action, safe_error(error))


def deny(db, principal: Principal, model_version: str, what: str, detail: str = "") -> None:
    """Show that `principal` may not do `what`, audit it (action "denied") and stop the page."""
    audit(db, "denied", principal.username, model_version, detail=detail or what)
    log.warning("denied %s to %s (%s)", what, phi_hash(principal.username), principal.role_text)
    st.error(
        f"**Access denied.** Your role ({principal.role_text}) does not allow {what}. "
        "Ask an administrator if you need it. This attempt has been recorded in the audit log.",
        icon=":material/block:",
    )
    st.stop()


# ----------------------------------------------------------------------------- the gate
def authorize(principal: Principal, page: str, require: str | None, db, model_version: str) -> None:
    """Stop the page (audited "denied") unless `principal` has `require` ("analyse", "history", "admin")."""
    if require and not principal.can(require):
        deny(
            db, principal, model_version, PERMISSION_TEXT.get(require, require), detail=f"page {page}: needs {require}"
        )


def sign_in(db, model_version: str, demo_user: str) -> Principal:
    """The signed-in user of this session; shows the sign-in (or the configuration problem) and stops the
    page when there is none (page_header has installed the PHI-safe logging)."""
    try:
        settings = AuthSettings.from_env()
    except RoleMapError as error:
        settings, problem = None, f"MMNAR_OIDC_ROLE_MAP: {error}"
    except AuthSettingsError as error:
        settings, problem = None, f"{error}. The app stays closed until this is fixed (see docs/auth.md)."
    else:
        mode, problem = resolve_mode(settings)
    if problem:
        log.error("sign-in configuration problem: %s", problem)
        st.error(problem, icon=":material/lock:")
        st.stop()
    if mode == "demo":
        principal = Principal(demo_user, frozenset(ROLES), "demo")
    elif mode == "local":
        principal = _local_principal(settings, db, model_version)
    else:
        principal = _oidc_principal(settings, db, model_version)
    if mode != "demo":
        _sign_out_button(principal, db, model_version)
    return principal


def caption(principal: Principal) -> str:
    if principal.mode == "demo":
        return (
            f"local single-user mode, signed in as **{principal.username}** (no sign-in configured); "
            "this demo user acts as clinician, reviewer and admin"
        )
    return f"signed in as **{plain(principal.username)}** ({principal.role_text}) · {MODE_NAMES[principal.mode]}"


def _sign_out_button(principal: Principal, db, model_version: str) -> None:
    with st.sidebar:
        st.caption(f"Signed in as **{plain(principal.username)}** ({principal.role_text})")
        if st.button("Sign out", key="mmnar_sign_out"):
            audit(db, "sign-out", principal.username, model_version, detail=principal.mode)
            log.info("sign-out of %s (%s)", phi_hash(principal.username), principal.mode)
            st.session_state.clear()  # nothing of this user's patients stays in the session
            if principal.mode == "oidc":
                st.logout()
            else:
                st.rerun()
            st.stop()


# ----------------------------------------------------------------------------- local accounts
def _local_principal(settings: AuthSettings, db, model_version: str) -> Principal:
    from mmnar_app.store.users import UserStore

    users = UserStore(db)
    state = st.session_state
    username = state.get(_SESSION_USER)
    if username:
        user = users.get(username)
        if user is not None and not user.disabled and user.has_password:
            return Principal(user.username, frozenset({user.role}), "local")
        state.clear()
        audit(db, "denied", username, model_version, detail="session ended: account disabled or removed")
        st.warning("Your account was disabled or removed by an administrator: you have been signed out.")
    _local_sign_in(settings, users, db, model_version)
    st.stop()
    raise AssertionError("unreachable")


def client_id(settings: AuthSettings) -> str:
    """Who is signing in, for the per-client back-off: the connection's address (``ip``; Streamlit gives
    none on localhost, then the session) or the browser session (``session``)."""
    address = None
    if settings.client_key == "ip":
        import ipaddress

        try:
            address = str(ipaddress.ip_address(st.context.ip_address))
        except Exception:  # None on localhost; no client context (a bare run); anything else is not an address
            address = None
    if address:
        return f"ip:{address}"
    import secrets

    return "session:" + st.session_state.setdefault(_SESSION_CLIENT, secrets.token_hex(16))


BACKED_OFF = (
    "Too many failed sign-ins with this user name or from this connection: try again in {wait}. "
    "An administrator can lift it for an account sooner."
)


def _local_sign_in(settings: AuthSettings, users, db, model_version: str) -> None:
    from mmnar_app.store.users import lockout_remaining, normalize_username

    st.subheader("Sign in")
    if not users.list():
        st.warning(
            "No accounts exist yet. Create the first administrator on the server with "
            "`python -m mmnar_app.accounts add NAME --role admin`.",
            icon=":material/key:",
        )
    with st.form("mmnar_sign_in", clear_on_submit=True):
        name = st.text_input("User name", key="signin_user", autocomplete="username")
        password = st.text_input("Password", type="password", key="signin_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    st.caption(
        f"Local accounts of this deployment. After {settings.lockout_attempts} failed sign-ins each further "
        f"one doubles the wait before the next, up to {settings.lockout_minutes:g} minutes."
    )
    if not submitted:
        return
    result = users.authenticate(name, password, client=client_id(settings), policy=settings.backoff_policy())
    password = None  # noqa: F841 - not kept anywhere
    who = phi_hash(name)  # for the log: never the typed name (it might be anything, even a patient's)
    try:
        shown_user = normalize_username(name) if result.known_user else f"unknown {who}"
    except Exception:
        shown_user = f"unknown {who}"
    if result.ok:
        st.session_state[_SESSION_USER] = result.username
        audit(db, "sign-in", result.username, model_version, detail="local")
        log.info("sign-in of %s (local)", phi_hash(result.username))
        st.rerun()
    if result.status == "disabled":
        audit(db, "sign-in-failed", shown_user, model_version, detail="local: account disabled")
        log.warning("sign-in refused for %s: disabled", who)
        st.error("This account is disabled. Ask an administrator.", icon=":material/block:")
        return
    wait = lockout_remaining(result.retry_at) if result.retry_at is not None else ""
    detail = f"local: {result.reason}" + (f"; back-off {wait}" if wait else "")
    audit(db, "sign-in-failed", shown_user, model_version, detail=detail)
    log.warning("sign-in refused for %s: %s", who, result.status)
    # the same words for a real and an unknown name: only the sequence of attempts decides them
    if result.status == "throttled":
        st.error(BACKED_OFF.format(wait=wait), icon=":material/lock:")
    else:
        st.error(
            "Wrong user name or password." + (f" {BACKED_OFF.format(wait=wait)}" if wait else ""),
            icon=":material/lock:",
        )


# ----------------------------------------------------------------------------- OpenID Connect
def _oidc_principal(settings: AuthSettings, db, model_version: str) -> Principal:
    from mmnar_app.store.users import UserStore

    user_info = st.user
    if not user_info.get("is_logged_in"):
        st.subheader("Sign in")
        st.info("Sign in with your organisation account to use this app.", icon=":material/key:")
        if st.button("Sign in", key="mmnar_oidc_sign_in", type="primary"):
            st.login(settings.oidc_provider) if settings.oidc_provider else st.login()
        st.stop()
    claims = user_info.to_dict()
    username = username_from_claims(claims, (settings.user_claim, *USER_CLAIMS))
    if not username:
        st.error("Your identity provider did not send a user name (no email, preferred_username or sub claim).")
        st.stop()
    row = UserStore(db).get(username)
    if row is not None:
        roles = set() if row.disabled else {row.role}
    else:
        roles = roles_from_claims(claims, settings.role_claim, settings.role_map)
    principal = Principal(username, frozenset(roles), "oidc", str(claims.get("name") or ""))
    state = st.session_state
    if state.get(_SESSION_AUDITED) != username:
        state[_SESSION_AUDITED] = username
        audit(db, "sign-in", username, model_version, detail="oidc")
        log.info("sign-in of %s (oidc)", phi_hash(username))
    if not roles:
        _sign_out_button(principal, db, model_version)
        why = "is disabled in this app" if row is not None and row.disabled else "has no role in this app"
        audit(db, "denied", username, model_version, detail=f"oidc: account {why}")
        st.error(
            f"You are signed in as **{plain(username)}**, but this account {why}. Ask an administrator to "
            "assign you a role (clinician, reviewer or admin).",
            icon=":material/block:",
        )
        st.stop()
    return principal
