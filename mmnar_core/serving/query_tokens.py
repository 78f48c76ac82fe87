"""Tokens only in the Authorization header: a request carrying a credential in its query string is refused
with 400 on every path, and the query string never reaches a log.

Why: a token in the URL ends up in access logs, proxy logs and browser history (issue 18, case 12). The
server refuses it rather than ignoring it, so a misconfigured client learns at once; the access-log
filter (mmnar_core.serving.transport.HideQueryStrings) hides every query string anyway.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

CREDENTIAL_NAMES = frozenset(
    {
        "access_token",
        "token",
        "id_token",
        "auth",
        "authorization",
        "bearer",
        "jwt",
        "api_key",
        "apikey",
        "key",
        "password",
        "secret",
    }
)


def credential_parameters(query_string: bytes) -> list[str]:
    """Names of query parameters that look like credentials (case-insensitive, '-' read as '_')."""
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        return []
    return sorted({name for name, _ in pairs if name.strip().lower().replace("-", "_") in CREDENTIAL_NAMES})


class QueryTokenRefusal:
    """Pure ASGI: 400 for a query string holding a credential parameter; the value is never echoed."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            names = credential_parameters(scope.get("query_string") or b"")
            if names:
                await _refuse(send, names)
                return
        await self.app(scope, receive, send)


async def _refuse(send, names: list[str]) -> None:
    shown = ", ".join(repr(n[:40]) for n in names[:5])
    problem = f"a credential was sent in the query string (parameter {shown}); it was not used"
    accepted = "the token in the Authorization header only: 'Authorization: Bearer <token>' (docs/serving.md)"
    body = json.dumps(
        {
            "errors": [
                {
                    "field": "query",
                    "problem": problem,
                    "accepted": accepted,
                    "feature": None,
                    "message": f"query: {problem}. Accepted: {accepted}",
                    "status": 400,
                }
            ],
            "status": 400,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
