"""What the batch worker does with one batch of jobs on the predictor.

Predict and what-if jobs of a batch are served together; explain jobs one at a time after them (they are
long and use Captum hooks on the model, so they never overlap with anything else: the worker is the only
thread that touches the model).

Two modes (ServeConfig.batch_mode):

- `exact` (default): the batch's records go through `Predictor.encode` and `Predictor.predict` /
  `what_if` one patient at a time, the very calls of the in-process path, so every number is
  bit-identical to `Predictor.predict(record)`. Batching still bounds concurrency and shares the queue.
- `stacked`: every image of the batch in one CNN forward, every note in one transformer forward and the
  predict rows in one fused-model forward (`Predictor.encode_many` / `predict_many`). Faster per patient;
  batched float kernels may differ from single-row ones in the last bits (about 1e-7 on a risk).

If a stacked forward fails (one bad input), the batch falls back to one patient at a time so only the
bad request fails.

Each job runs under its own CancelToken (mmnar_core.cancel): a job whose caller went away or whose
deadline passed stops at its next step or model pass with Cancelled, and the worker moves on.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from mmnar_core.cancel import cancel_scope
from mmnar_core.explain.explanation import ExplanationCache
from mmnar_core.results import ALL_TASKS
from mmnar_core.serving.batching import Job

log = logging.getLogger("mmnar_core.serving")


class PredictorRunner:
    """`runner(jobs)` answers every job's future with a Prediction / WhatIfResult / Explanation or the
    exception that stopped it."""

    def __init__(self, predictor, mode: str = "exact", cache: ExplanationCache | None = None):
        if mode not in ("exact", "stacked"):
            raise ValueError(f"batch mode must be 'exact' or 'stacked' (got {mode!r})")
        self.predictor = predictor
        self.mode = mode
        self.cache = cache
        self.stacked_forwards: Counter[int] = Counter()  # rows per stacked forward (mode 'stacked')
        self.fallbacks = 0

    def __call__(self, jobs: Sequence[Job]) -> None:
        quick = [job for job in jobs if job.kind in ("predict", "what_if")]
        if quick:
            if self.mode == "stacked" and len(quick) > 1:
                self._stacked(quick)
            else:
                for job in quick:
                    self._exact(job)
        for job in jobs:
            if job.kind == "explain":
                self._explain(job)
            elif job.kind not in ("predict", "what_if"):
                job.future.set_exception(ValueError(f"unknown job kind {job.kind!r}"))

    # ---------------------------------------------------------------- one patient at a time
    def _exact(self, job: Job, vectors=None) -> None:
        record = job.payload.record
        try:
            with cancel_scope(job.cancel):
                job.cancel.check()
                vectors = self.predictor.encode(record) if vectors is None else vectors
                if job.kind == "predict":
                    result = self.predictor.predict(record, vectors)
                else:
                    result = self.predictor.what_if(record, vectors)
        except Exception as error:
            job.future.set_exception(error)
            return
        job.future.set_result(result)

    # ---------------------------------------------------------------- stacked
    def _stacked(self, jobs: Sequence[Job]) -> None:
        records = [job.payload.record for job in jobs]
        try:
            vectors = self.predictor.encode_many(records)
        except Exception:
            log.info("stacked encoding of %d records failed; encoding them one at a time", len(records))
            self.fallbacks += 1
            for job in jobs:
                self._exact(job)
            return
        predict = [(job, v) for job, v in zip(jobs, vectors) if job.kind == "predict"]
        if predict:
            try:
                results = self.predictor.predict_many(
                    [job.payload.record for job, _ in predict], [v for _, v in predict]
                )
                self.stacked_forwards[len(predict)] += 1
            except Exception:
                self.fallbacks += 1
                for job, v in predict:
                    self._exact(job, v)
            else:
                for (job, _), result in zip(predict, results):
                    job.future.set_result(result)
        for job, v in zip(jobs, vectors):
            if job.kind == "what_if":
                self._exact(job, v)  # its subsets are one batch of this patient already

    # ---------------------------------------------------------------- explain
    def _explain(self, job: Job) -> None:
        key = job.payload.cache_key
        cached = self.cache.get(key) if self.cache is not None and key else None
        if cached is not None:
            job.future.set_result(cached)
            return
        try:
            with cancel_scope(job.cancel):
                job.cancel.check()
                explanation = self.predictor.explain(
                    job.payload.record,
                    tasks=None if job.payload.task == ALL_TASKS else [job.payload.task],
                    digest=job.payload.input_hash,
                    modalities=job.payload.modalities,
                )
        except Exception as error:
            job.future.set_exception(error)
            return
        if self.cache is not None and key:
            self.cache.put(key, explanation)
        job.future.set_result(explanation)

    def stats(self) -> dict:
        return {
            "mode": self.mode,
            "stacked_forwards": {str(k): v for k, v in sorted(self.stacked_forwards.items())},
            "stacked_fallbacks": self.fallbacks,
            "explain_cache": {
                "size": len(self.cache) if self.cache else 0,
                "hits": self.cache.hits if self.cache else 0,
            },
        }
