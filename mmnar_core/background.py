"""Background threads that are stopped and joined before the interpreter ends.

Why: a daemon thread still inside torch when the interpreter finalises aborts the whole process
("terminate called without an active exception", exit status 134), after a normal end or SIGTERM. A
thread started with `start_background` gets a stop Event its work checks between steps; an atexit hook
sets every such Event and joins the threads, before the interpreter tears anything down.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable

JOIN_TIMEOUT_S = 300.0  # a model load or one warm-up step; a thread still running after this is reported
log = logging.getLogger("mmnar_core.background")
_running: dict[threading.Thread, threading.Event] = {}
_lock = threading.Lock()
_hooked = False


class Stopped(Exception):
    """Raised inside background work when its stop Event is set (caught by the thread's own wrapper)."""


def start_background(work: Callable[[threading.Event], None], name: str) -> tuple[threading.Thread, threading.Event]:
    """Runs `work(stop)` in a daemon thread that stop_all (at exit, or called directly) stops and joins."""
    global _hooked
    stop = threading.Event()
    thread = threading.Thread(target=_run, args=(work, stop), name=name, daemon=True)
    with _lock:
        if not _hooked:  # registered late, so it runs before earlier hooks (torch's among them): atexit is LIFO
            atexit.register(stop_all)
            _hooked = True
        _running[thread] = stop
    thread.start()
    return thread, stop


def _run(work: Callable[[threading.Event], None], stop: threading.Event) -> None:
    try:
        work(stop)
    except Stopped:
        pass
    finally:
        with _lock:
            _running.pop(threading.current_thread(), None)


def stop_and_join(
    thread: threading.Thread | None, stop: threading.Event | None, timeout: float = JOIN_TIMEOUT_S
) -> bool:
    """Asks one background thread to stop and waits for it; True when it has ended."""
    if stop is not None:
        stop.set()
    if thread is None or thread is threading.current_thread():
        return True
    thread.join(timeout)
    if thread.is_alive():
        log.warning("background thread %s still running after %.0f s", thread.name, timeout)
    return not thread.is_alive()


def stop_all(timeout: float = JOIN_TIMEOUT_S) -> None:
    """Stops and joins every running background thread (the atexit hook)."""
    with _lock:
        running = list(_running.items())
    for _thread, stop in running:
        stop.set()
    for thread, stop in running:
        stop_and_join(thread, stop, timeout)
