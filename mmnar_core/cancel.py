"""Cooperative cancellation of model work: a `CancelToken` (a flag and a deadline) that long work checks
between steps and inside Captum's internal batches, so an abandoned or overdue explanation stops within
one model pass instead of holding the model for minutes (issue 18, case 2).

Why a thread-local scope: the checks sit deep inside the attribution forwards (called by Captum), where
no argument can be threaded through; the worker that owns the model runs one job at a time, so the
token of that job is the current one for its thread.

    token = CancelToken(deadline_s=120)
    with cancel_scope(token):
        predictor.explain(record)  # raises Cancelled once token.cancel() is called or 120 s have passed
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

_current = threading.local()


class Cancelled(RuntimeError):
    """The work was cancelled (its caller went away) or ran past its deadline; `reason` says which."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"stopped: {reason}")


class CancelToken:
    """A cancel flag plus an optional deadline (seconds from now, on the monotonic clock)."""

    def __init__(self, deadline_s: float | None = None):
        self.deadline = None if deadline_s is None else time.monotonic() + float(deadline_s)
        self.budget_s = deadline_s
        self._event = threading.Event()
        self.reason: str | None = None

    def cancel(self, reason: str = "cancelled by the caller") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        if self._event.is_set():
            return True
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.cancel(f"over the time budget of {self.budget_s:g} s")
            return True
        return False

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled(self.reason or "cancelled")


@contextmanager
def cancel_scope(token: CancelToken | None):
    """Makes `token` the current one of this thread (None: nothing to check) for the duration."""
    previous = getattr(_current, "token", None)
    _current.token = token
    try:
        yield token
    finally:
        _current.token = previous


def check_cancelled() -> None:
    """Raises Cancelled when this thread's current token is cancelled or overdue; free when none is set."""
    token = getattr(_current, "token", None)
    if token is not None:
        token.check()
