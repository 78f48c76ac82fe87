"""Admission by work: a request is let in only when the work already admitted plus its own can be done
before its deadline; otherwise it is answered at once, before anything is decoded.

Why: counting requests let twelve 4000 x 4000 PNG requests in together; each waited for one of the two
decoding slots and got a 504 at its deadline, after 2.5-3.1 s (issue 18, case 3), and an explanation of a
199,000-character note ran until its deadline before its 504 (case 2). The work a request brings
(mmnar_core.serving.work: megapixels to decode, units of model work) is known from its headers; the time
it takes is measured as the server serves (`RateMeter`: an exponential moving average, started from the
priors of ServeConfig). With the work admitted and not yet answered ahead of it:

    finish = decoding_mpixels x s_per_mpixel / max_parsing + own_mpixels x s_per_mpixel      (decoding)
             + (model_mpixels + own_mpixels) x s_per_mpixel x MODEL_PIXEL_PASSES             (the model's pass
             + (backlog_units + own_units) x s_per_unit                                        over the pixels)

admitted when finish <= HEADROOM x the time left to the deadline. Otherwise its own work is judged at the
best rate known (the faster of the prior and the measurement): if that fits, 503 with Retry-After (the
backlog's seconds: a retry then can be served), or, with nothing ahead, admitted anyway (so nothing
starves, and the rate is measured again; the deadline stays the backstop); if even that does not fit, 413
(retrying cannot help: the request is too much work for this server's timeout).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from mmnar_core.serving.work import RequestWork

HEADROOM = 0.8  # of the time left: the estimate is a mean, and the answer itself takes a little
MODEL_PIXEL_PASSES = 1.0  # the model's pass over a decoded image (distribution statistics, resize) / its decoding
EWMA_WEIGHT = 0.3  # of each new measurement
MIN_DECODE_MPIXELS = 0.5  # smaller decodes are mostly fixed cost: not measured


class RateMeter:
    """Seconds per unit of something, learned as an exponential moving average from a prior."""

    def __init__(self, prior: float):
        self.prior = float(prior)
        self.value = self.prior
        self.samples = 0

    @property
    def best(self) -> float:
        """The faster of the prior and the measured rate: what 'can never fit' is judged by, so a slow spell
        (a busy machine, a stalled batch) cannot lock out the requests whose service would measure it again."""
        return min(self.prior, self.value)

    def observe(self, seconds: float, amount: float) -> None:
        if amount <= 0 or seconds < 0:
            return
        rate = seconds / amount
        self.value = rate if self.samples == 0 else (1 - EWMA_WEIGHT) * self.value + EWMA_WEIGHT * rate
        self.samples += 1


@dataclass(frozen=True)
class Verdict:
    """What admission decided: `status` 0 (admitted), 503 (busy: retry after `retry_after`) or 413 (too
    much work for the timeout); `estimate_s` the expected seconds to the answer; `own_s` its own work."""

    status: int
    estimate_s: float
    own_s: float
    retry_after: int = 0

    @property
    def admitted(self) -> bool:
        return self.status == 0


class WorkBudget:
    """The work admitted and not yet answered, and the measured rates (thread-safe; one per app)."""

    def __init__(self, decode_slots: int, s_per_mpixel: float, s_per_unit: float, min_retry_after: int = 1):
        self.decode_slots = max(1, int(decode_slots))
        self.decode = RateMeter(s_per_mpixel)
        self.model = RateMeter(s_per_unit)
        self.min_retry_after = int(min_retry_after)
        self.backlog_mpixels = 0.0  # admitted, not yet decoded
        self.model_mpixels = 0.0  # admitted, not yet answered: the model passes over them once more
        self.backlog_units = 0.0  # admitted, not yet answered
        self.refused = {503: 0, 413: 0}
        self._lock = threading.Lock()

    def admit(self, work: RequestWork, time_left_s: float) -> Verdict:
        """Admits `work` (then `decoded` and `done` must follow) or says why not."""
        with self._lock:
            pixels = 1 + MODEL_PIXEL_PASSES
            own = work.decode_mpixels * pixels * self.decode.value + work.units * self.model.value
            ahead = (
                self.backlog_mpixels * self.decode.value / self.decode_slots
                + self.model_mpixels * MODEL_PIXEL_PASSES * self.decode.value
                + self.backlog_units * self.model.value
            )
            best = work.decode_mpixels * pixels * self.decode.best + work.units * self.model.best
            limit = HEADROOM * time_left_s
            if own + ahead <= limit or (ahead == 0 and best <= limit):
                self.backlog_mpixels += work.decode_mpixels
                self.model_mpixels += work.decode_mpixels
                self.backlog_units += work.units
                return Verdict(0, own + ahead, own)
            status = 503 if best <= limit else 413
            self.refused[status] += 1
            retry = max(self.min_retry_after, min(300, math.ceil(ahead))) if status == 503 else 0
            return Verdict(status, own + ahead, own, retry)

    def decoded(self, work: RequestWork, seconds: float | None) -> None:
        """The request's images are decoded (or it was refused while parsing: `seconds` None, not measured)."""
        with self._lock:
            self.backlog_mpixels = max(0.0, self.backlog_mpixels - work.decode_mpixels)
            if seconds is not None and work.decode_mpixels >= MIN_DECODE_MPIXELS:
                self.decode.observe(seconds, work.decode_mpixels)

    def done(self, work: RequestWork) -> None:
        """The request is answered (whatever the answer)."""
        with self._lock:
            self.backlog_units = max(0.0, self.backlog_units - work.units)
            self.model_mpixels = max(0.0, self.model_mpixels - work.decode_mpixels)

    def observe_model(self, seconds: float, jobs) -> None:
        """A batch of jobs (serving.batching.Job) took `seconds`: measures the rate of a unit from batches
        without images (with images, the model's pass over their pixels would be taken for units)."""
        if any(source is not None for job in jobs for source in job.payload.record.images.values()):
            return
        with self._lock:
            self.model.observe(seconds, sum(job.cost for job in jobs))

    def stats(self) -> dict:
        with self._lock:
            return {
                "work_backlog_mpixels": round(self.backlog_mpixels, 3),
                "work_model_mpixels": round(self.model_mpixels, 3),
                "work_backlog_units": round(self.backlog_units, 3),
                "decode_s_per_mpixel": round(self.decode.value, 5),
                "model_s_per_unit": round(self.model.value, 5),
                "refused_busy_by_work": self.refused[503],
                "refused_too_much_work": self.refused[413],
            }
