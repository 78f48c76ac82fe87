"""SIGTERM ends a command as a normal stop: exit status 0, atexit hooks run (background threads joined).

Why: SIGTERM is how service managers and container runtimes stop a process; its default action kills
the interpreter (status 143, no cleanup), and uvicorn re-raises it after its own graceful shutdown, so
the model server ended with 143 too, and a command stopped while loading a model ended without joining
its background threads (issue 18, case 13). The handler raises SystemExit(0) in the main thread: code
in `except Exception` does not catch it, `finally` blocks and atexit hooks run.
"""

from __future__ import annotations

import signal
import sys
import threading


def _stop(signum, frame) -> None:
    print("stopping: SIGTERM received", file=sys.stderr, flush=True)
    raise SystemExit(0)


def exit_zero_on_sigterm() -> None:
    """Installs the handler (main thread only; elsewhere signals cannot be handled, and it does nothing)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
