"""Admission before decoding: a model request is let in, or refused with 503 + Retry-After, from its
headers alone, before one byte of its body is read, parsed or decoded.

Why: with `--max-queue 4`, twelve 37 kB PNG requests took the server from 1 to 4.6 GB; six were refused,
but only after ~25 s of decoding, because the queue limit was checked after parsing (issue 18, case 3).
Here a request counts from the moment it is admitted until its answer is sent, against three limits:
requests in flight (ServeConfig.inflight_limit: a running batch plus a full queue), their declared body
bytes (`max_inflight_bytes`; a body without Content-Length counts as `max_request_bytes`), and the
worker's queue (full, or its work at `max_queue_work`).
"""

from __future__ import annotations

import json
import threading

from mmnar_core.serving.parsing import RequestError

MODEL_PATHS = frozenset({"/predict", "/what-if", "/explain"})


class Admission:
    """Counts the admitted requests and their declared bytes (thread-safe; one per app)."""

    def __init__(self, max_requests: int, max_bytes: int, default_bytes: int):
        self.max_requests = int(max_requests)
        self.max_bytes = int(max_bytes)
        self.default_bytes = int(default_bytes)
        self.requests = 0
        self.bytes = 0
        self.refused = 0
        self._lock = threading.Lock()

    def enter(self, declared: int | None, queue_full: bool | str) -> tuple[bool, str]:
        """(admitted, why not); an admitted request must `leave` with the same `declared`. `queue_full`:
        False, or the limit that is reached (e.g. "queue limit 4"), named in the refusal."""
        size = self.default_bytes if declared is None else declared
        with self._lock:
            if queue_full:
                why = "the queue of the model is full" + (f" ({queue_full})" if isinstance(queue_full, str) else "")
            elif self.requests >= self.max_requests:
                why = f"{self.requests} requests are already in progress (limit {self.max_requests})"
            elif self.requests and self.bytes + size > self.max_bytes:
                why = (
                    f"requests in progress hold {self.bytes:,} bytes; this one declares {size:,} "
                    f"(limit {self.max_bytes:,} together)"
                )
            else:
                self.requests += 1
                self.bytes += size
                return True, ""
            self.refused += 1
            return False, why

    def leave(self, declared: int | None) -> None:
        size = self.default_bytes if declared is None else declared
        with self._lock:
            self.requests -= 1
            self.bytes -= size

    def stats(self) -> dict:
        with self._lock:
            return {
                "admitted_in_progress": self.requests,
                "admitted_bytes": self.bytes,
                "refused_before_reading": self.refused,
                "max_inflight": self.max_requests,
            }


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


class AdmissionMiddleware:
    """Pure ASGI: refuses a POST to a model endpoint with 503 before its body is read when `admission`
    (and the serving state's queue) say so; lets everything else through untouched."""

    def __init__(self, app, admission: Admission, state):
        self.app = app
        self.admission = admission
        self.state = state

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in MODEL_PATHS
            or not self.state.ready
        ):  # a loading server answers its own 503
            await self.app(scope, receive, send)
            return
        declared = declared_length(scope["headers"])
        batcher = self.state.batcher
        admitted, why = self.admission.enter(declared, batcher.saturated() if batcher is not None else False)
        if not admitted:
            retry = batcher.retry_after() if batcher is not None else 1
            await _refuse(send, why, retry)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.leave(declared)


async def _refuse(send, why: str, retry_after: int) -> None:
    error = RequestError.one(
        503,
        "request",
        f"the server is busy: {why}; retry after {retry_after} s",
        "a retry after the Retry-After delay (the body was not read)",
    )
    body = json.dumps(error.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
