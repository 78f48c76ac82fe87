"""Micro-batching: a bounded queue and one worker thread that takes up to `max_batch` jobs, waiting at most
`max_wait_s` after the first, and hands them to a handler as one batch.

The queue is bounded twice: `submit` never blocks, it raises `Overloaded` at once when `max_queue` jobs are
already waiting or when their work (`Job.cost`, units of mmnar_core.serving.work: images, note windows,
attribution passes) would pass `max_work`, so two explanations of 200,000-character notes fill the queue
as a hundred small predictions do. Every job carries a `concurrent.futures.Future` and a CancelToken
(mmnar_core.cancel) with its deadline; a job whose caller gave up, or whose deadline passed while it
waited, is dropped before the handler sees it, and the handler stops a running one at its next step.
An `observer` hears the seconds and the jobs of every batch whose jobs all succeeded (the server
measures its rate of work from them, mmnar_core.serving.work_budget). `stats()` is what GET /stats shows.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from mmnar_core.cancel import Cancelled, CancelToken

log = logging.getLogger("mmnar_core.serving")


class Overloaded(RuntimeError):
    """The queue is full; `retry_after` is a suggested wait in whole seconds."""

    def __init__(self, depth: int, retry_after: int, work: float | None = None):
        self.depth = depth
        self.retry_after = retry_after
        self.work = work
        detail = f" ({work:g} units of work)" if work is not None else ""
        super().__init__(f"the server is busy: {depth} requests are already waiting{detail}")


@dataclass
class Job:
    kind: str  # 'predict' | 'what_if' | 'explain'
    payload: Any  # what the handler needs (the record, the task ...)
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)
    cost: float = 1.0  # units of work (mmnar_core.serving.work); the queue is bounded by their sum
    cancel: CancelToken = field(default_factory=CancelToken)  # the server sets its deadline and cancels it


class Batcher:
    """One worker thread; `handler(jobs)` must set every job's future (result or exception)."""

    def __init__(
        self,
        handler: Callable[[list[Job]], None],
        max_batch: int = 8,
        max_wait_s: float = 0.01,
        max_queue: int = 64,
        min_retry_after: int = 1,
        name: str = "mmnar-batcher",
        max_work: float = float("inf"),
        observer: Callable[[float, list[Job]], None] | None = None,
    ):
        self.handler = handler
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.max_queue = int(max_queue)
        self.max_work = float(max_work)
        self.observer = observer  # observer(seconds, jobs): each batch whose every job succeeded
        self._queued_work = 0.0  # sum of the costs of the waiting jobs
        self.min_retry_after = int(min_retry_after)
        self.name = name
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=self.max_queue)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._busy = 0  # jobs of the batch in progress
        self._running: list[Job] = []
        self._batches = 0
        self._sizes: Counter[int] = Counter()
        self._kinds: Counter[str] = Counter()
        self._done = 0
        self._failed = 0
        self._dropped = 0  # cancelled (timed out) before the worker reached them
        self._rejected = 0
        self._timeouts = 0
        self._cancelled = 0  # stopped by their CancelToken (caller gone, deadline passed)
        self._batch_seconds = 0.0
        self._wait_seconds = 0.0

    # ---------------------------------------------------------------- life cycle
    def start(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops the worker: the batch in progress is cancelled at its next step, waiting jobs get an error."""
        self._stop.set()
        for job in list(self._running):
            job.cancel.cancel("the server is shutting down")
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        while True:  # whoever still waits gets an answer rather than a hang
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(RuntimeError("the server is shutting down"))

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---------------------------------------------------------------- submitting
    def submit(self, job: Job) -> Future:
        """Queues the job or raises Overloaded: too many jobs waiting, or too much work (a job larger than
        `max_work` alone is taken only when nothing else waits, so it cannot starve)."""
        with self._lock:
            over_work = self._queued_work > 0 and self._queued_work + job.cost > self.max_work
            if not over_work:
                try:
                    self._queue.put_nowait(job)
                except queue.Full:
                    over_work = False  # the queue is full: the error names no work total
                else:
                    self._queued_work += job.cost
                    return job.future
            self._rejected += 1
            work = self._queued_work
        raise Overloaded(self._queue.qsize(), self.retry_after(), work if over_work else None)

    def saturated(self) -> str | bool:
        """The limit a new job would surely hit ("queue limit N" or "work limit W units"), or False."""
        with self._lock:
            if self._queue.qsize() >= self.max_queue:
                return f"queue limit {self.max_queue}"
            if self._queued_work >= self.max_work:
                return f"work limit {self.max_work:g} units"
            return False

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained: (waiting / max_batch + 1) mean batch times."""
        with self._lock:
            mean = self._batch_seconds / self._batches if self._batches else 0.0
        waiting = self._queue.qsize() + self._busy
        return max(self.min_retry_after, min(300, math.ceil((waiting / self.max_batch + 1) * mean)))

    def note_timeout(self) -> None:
        with self._lock:
            self._timeouts += 1

    # ---------------------------------------------------------------- worker
    def _collect(self) -> list[Job]:
        try:
            first = self._queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            self._queued_work = max(0.0, self._queued_work - sum(job.cost for job in batch))
        return batch

    def _live(self, batch: list[Job]) -> list[Job]:
        """The jobs still wanted: not cancelled by their caller, not past their deadline."""
        live = []
        for job in batch:
            if job.cancel.cancelled:
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(Cancelled(job.cancel.reason or "cancelled"))
                continue
            if job.future.set_running_or_notify_cancel():
                live.append(job)
        return live

    def _loop(self) -> None:
        while not self._stop.is_set():
            batch = self._collect()
            if not batch:
                continue
            live = self._live(batch)
            started = time.monotonic()
            with self._lock:
                self._dropped += len(batch) - len(live)
                if not live:
                    continue
                self._busy = len(live)
                self._running = live
                self._batches += 1
                self._sizes[len(live)] += 1
                self._kinds.update(job.kind for job in live)
                self._wait_seconds += sum(started - job.enqueued for job in live)
            try:
                self.handler(live)
            except BaseException as error:  # the handler should answer each job; never let the worker die
                log.exception("batch handler failed")
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(error)
            finally:
                failed = sum(1 for job in live if job.future.done() and job.future.exception() is not None)
                cancelled = sum(
                    1 for job in live if job.future.done() and isinstance(job.future.exception(), Cancelled)
                )
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(RuntimeError("the handler gave no answer for this request"))
                elapsed = time.monotonic() - started
                with self._lock:
                    self._busy = 0
                    self._running = []
                    self._done += len(live)
                    self._failed += failed - cancelled
                    self._cancelled += cancelled
                    self._batch_seconds += elapsed
                if self.observer is not None and not failed:  # a failed or stopped job did not do all its work
                    try:
                        self.observer(elapsed, live)
                    except Exception:  # statistics never stop the worker
                        log.exception("the batch observer failed")

    # ---------------------------------------------------------------- observing
    def stats(self) -> dict:
        with self._lock:
            batches = self._batches
            return {
                "batches": batches,
                "requests": self._done,
                "requests_per_batch": {str(k): v for k, v in sorted(self._sizes.items())},
                "largest_batch": max(self._sizes, default=0),
                "by_kind": dict(self._kinds),
                "failed": self._failed,
                "queue_depth": self._queue.qsize(),
                "queue_work": round(self._queued_work, 3),
                "max_work": None if math.isinf(self.max_work) else self.max_work,
                "cancelled": self._cancelled,
                "in_progress": self._busy,
                "rejected": self._rejected,
                "timeouts": self._timeouts,
                "dropped": self._dropped,
                "mean_batch_seconds": round(self._batch_seconds / batches, 6) if batches else None,
                "mean_queue_wait_seconds": round(self._wait_seconds / self._done, 6) if self._done else None,
                "max_batch": self.max_batch,
                "max_wait_ms": self.max_wait_s * 1000.0,
                "max_queue": self.max_queue,
                "worker_running": self.running,
            }
