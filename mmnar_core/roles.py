"""The three roles and how an OpenID Connect token's claims map to a user name and roles: one rule for
the app's sign-in and the model server's bearer tokens."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ROLES = ("clinician", "reviewer", "admin")
USER_CLAIMS = ("email", "preferred_username", "sub")


class RoleMapError(ValueError):
    """A role map entry is not value=role or names no known role."""


def username_from_claims(claims: Mapping, keys: Iterable[str] = USER_CLAIMS) -> str | None:
    """The first non-blank string among `keys`, lower-cased (None when there is none)."""
    for key in keys:
        value = claims.get(key) if key else None
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return None


def roles_from_claims(claims: Mapping, role_claim: str | None, role_map: Mapping[str, str]) -> set[str]:
    """The known roles named by `role_claim` (a string or a list), each first translated by `role_map`."""
    value = claims.get(role_claim) if role_claim else None
    values = value if isinstance(value, (list, tuple)) else [value] if value is not None else []
    return {role for role in (role_map.get(str(v).strip(), str(v).strip()) for v in values) if role in ROLES}


def parse_role_map(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """'value=role,value2=role' (MMNAR_OIDC_ROLE_MAP, serve --oidc-role-map) -> {value: role}; refuses a
    malformed entry or an unknown role (silently dropping one would lock users out or let them in)."""
    if isinstance(text, Mapping):
        items = list(text.items())
    else:
        items = []
        for item in (text or "").split(","):
            if item.strip():
                if "=" not in item:
                    raise RoleMapError(f"OIDC role map entry {item.strip()!r} is not value=role")
                left, right = item.split("=", 1)
                items.append((left.strip(), right.strip()))
    out = {}
    for value, role in items:
        if role not in ROLES:
            raise RoleMapError(f"OIDC role map: {value}={role}: {role!r} is not a role; accepted: {', '.join(ROLES)}")
        out[str(value)] = role
    return out
