"""The Patient page's second pass (what drives the risks within each modality), started in a background thread
the moment the risks are known, so it runs while the page with the first answer is built and drawn instead
of after it.

Why: the page run that shows the risks and the browser's drawing of them took ~0.2 s of the server and
~0.5 core-seconds of the browser before the attributions even started; on a 2-core machine they now share
the cores with them. Measured with `python -m mmnar_app.bench` (12 demo patients, quiet machine): see
benchmarks/README.md ("Fourth look at the Patient page", session 13).

The page waits for the job (`wait`), showing its steps as they come. A job whose analysis is dropped (another
patient loaded, Analyse pressed again) is stopped (`stop`): in process within one model pass (its CancelToken,
checked inside the attributions), so the next analysis does not wait for the model; a thread still running
when the interpreter ends is stopped and joined (mmnar_core.background). The work is the service's own
`complete`, so its lock and cache apply as before (its time budget through the job's token), and a patient
completed here is cached for every session.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mmnar_app.service import ANALYSIS_BUDGET_S
from mmnar_core.background import Stopped, start_background
from mmnar_core.cancel import CancelToken
from mmnar_core.explain.explanation import Explanation
from mmnar_core.schema import PatientRecord

POLL_S = 0.1  # how often the waiting page looks for new steps: a step line is never more than this late


@dataclass
class Completion:
    """One background second pass: its steps so far, then its result or the error it stopped with."""

    started: float  # time.perf_counter() when it was started (the page's "what drives the risks in X s")
    steps: list[str] = field(default_factory=list)
    result: Explanation | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = None
    stop_event: threading.Event | None = None
    token: CancelToken | None = None

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self) -> None:
        """Stops the work within one model pass (its result is then never read)."""
        if self.token is not None:
            self.token.cancel("its analysis was replaced")
        if self.stop_event is not None:
            self.stop_event.set()


def start(svc, partial: Explanation, record: PatientRecord, task: str) -> Completion:
    """Starts `svc.complete(partial, record, task)` in a background thread and returns its job."""
    job = Completion(started=time.perf_counter(), token=CancelToken(getattr(svc, "budget_s", ANALYSIS_BUDGET_S)))

    def work(stop: threading.Event) -> None:
        def step(name: str) -> None:
            if stop.is_set():  # between steps: the model is released by the service's own `finally`
                raise Stopped
            job.steps.append(name)

        try:
            job.result = svc.complete(partial, record, task, step, cancel=job.token)
        except Stopped:
            raise
        except BaseException as error:  # handed to the page, which says it or raises it (`wait`)
            job.error = error

    job.thread, job.stop_event = start_background(work, "mmnar-attributions")
    return job


def wait(job: Completion, on_step: Callable[[str], None] | None = None) -> Explanation:
    """The job's complete explanation once it is done, calling `on_step` for each step as it starts (in the
    page's own thread, so it may write to the page); raises the error the work stopped with."""
    shown = 0
    while True:
        alive = job.running
        while shown < len(job.steps):
            if on_step is not None:
                on_step(job.steps[shown])
            shown += 1
        if not alive:
            break
        job.thread.join(POLL_S)
    if job.error is not None:
        raise job.error
    if job.result is None:
        raise RuntimeError("the attributions were stopped before they finished")
    return job.result
