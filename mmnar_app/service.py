"""The one object the app talks to for model work: model information and `analyse(record, task)`.

`ModelService` names what the pages and the app's modules use of it (`info`, `analyse`, `complete`);
`LocalService` here and `RemoteService` (mmnar_app/remote.py) both provide it (tests/test_service_protocol.py).

`LocalService` runs the predictor in this process (loaded once, on the GPU when present) and caches
explanations by their `cache_key` (input hash + model + task + settings), so a patient analysed once is
never recomputed, whichever browser session asks. RemoteService (mmnar_app/remote.py) shares that cache logic (CachedExplanations) and replaces
it when a model server is configured.

Work limits (issue 18, case 2): one analysis runs at a time (two would only fight over the CPU cores), but
none holds the model for long: each runs under a CancelToken with a time budget (ANALYSIS_BUDGET_S; the
explanation stops at its next step or model pass), a caller may pass its own token to cancel it, and a
second user waits at most WAIT_FOR_TURN_S for the model, then is told to retry, instead of hanging.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

from mmnar_core.cancel import Cancelled, CancelToken
from mmnar_core.explain.explanation import Explanation, ExplanationCache
from mmnar_core.model_info import ModelInfo, model_info
from mmnar_core.schema import PatientRecord

ANALYSIS_BUDGET_S = 180.0  # one analysis (both passes each): the notes of a long stay take ~60 s on 2 CPU cores
WAIT_FOR_TURN_S = 20.0  # how long a second user waits for the model before being told to retry


class AnalysisRefused(RuntimeError):
    """The analysis did not run or was stopped (model busy, time budget spent, cancelled); the message says
    which and what to do."""


STEP_LABELS = {
    "encode": "Encoding the inputs",
    "predict": "Scoring the risks",
    "what_if": "What-if over modality subsets",
}


@runtime_checkable
class ModelService(Protocol):
    """The model service as the pages and mmnar_app's modules use it (`mmnar_app.ui.service()`): the model's
    description, and one patient's explanation for one outcome, fast first (`modalities`) then complete."""

    @property
    def info(self) -> ModelInfo:
        """The served model: version, tasks, modalities, features, outcomes, model card, metrics."""
        ...

    def analyse(
        self,
        record: PatientRecord,
        task: str,
        progress: Callable[[str], None] | None = None,
        modalities: list[str] | None = None,
    ) -> Explanation:
        """Prediction, what-if and attributions for `task` (only `modalities` attributed when given)."""
        ...

    def complete(
        self,
        partial: Explanation,
        record: PatientRecord,
        task: str,
        progress: Callable[[str], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> Explanation:
        """The complete explanation from a partial one (its `pending()` modalities attributed); `cancel` stops
        it (AnalysisRefused), within one model pass in process, before the request for a model server."""
        ...


class CachedExplanations:
    """What the in-process and the remote service share: explanations kept by `cache_key` (input hash +
    model + task + settings + modalities) in a bounded LRU, looked up complete-first, so a partial request
    is answered by a complete explanation already at hand. Subclasses set `info` (ModelInfo)."""

    info: ModelInfo

    def __init__(self, cache_size: int = 64):
        self._cache = ExplanationCache(cache_size)

    def cache_key(self, record: PatientRecord | str, task: str, modalities: list[str] | None = None) -> str:
        """Key of the explanation of `record` (or of its input hash) for `task`, as the model server keys it."""
        from mmnar_core.explain.explanation import input_hash, task_cache_key

        digest = record if isinstance(record, str) else input_hash(record)
        return task_cache_key(digest, self.info.model_id, task, modalities)

    def _cached(self, digest: str, task: str, modalities: list[str] | None) -> tuple[Explanation | None, str]:
        """(the cached complete or matching explanation or None, the key to store a new one under)."""
        full, key = self.cache_key(digest, task), self.cache_key(digest, task, modalities)
        found = self._cache.get(full)
        return (found if found is not None else self._cache.get(key)), key


class LocalService(CachedExplanations):
    """The in-process predictor with a bounded explanation cache (thread-safe: one model, many sessions)."""

    def __init__(self, bundle_dir: str | Path, device: str | None = None, cache_size: int = 64):
        from mmnar_core.predictor import Predictor

        super().__init__(cache_size)
        self.predictor = Predictor.load(bundle_dir, device=device)
        self.info: ModelInfo = model_info(self.predictor)
        self._lock = threading.Lock()  # one analysis at a time: two would only fight over the CPU cores
        self.budget_s, self.wait_s = ANALYSIS_BUDGET_S, WAIT_FOR_TURN_S
        self._warm_up_thread: threading.Thread | None = None
        self._warm_up_stop: threading.Event | None = None

    def start_warm_up(self) -> threading.Thread:
        """Run one throw-away explanation of a made-up patient in the background, so the first clinician's
        analysis does not pay for lazy imports, first-call kernel selection and allocator growth (the first
        analysis after start took 17 s instead of ~5 s). It holds the analysis lock: a click during the
        warm-up waits for it, as it would have waited for the same work anyway. Nothing is cached.

        The thread stops between steps when asked (`stop_warm_up`, and at interpreter exit), so the
        process never ends while it is inside torch."""
        from mmnar_core.background import start_background

        self._warm_up_thread, self._warm_up_stop = start_background(self._warm_up, "mmnar-warm-up")
        return self._warm_up_thread

    def stop_warm_up(self, timeout: float = 60.0) -> bool:
        """Stops the warm-up at its next step and waits for it; True when no warm-up is running."""
        from mmnar_core.background import stop_and_join

        return stop_and_join(self._warm_up_thread, self._warm_up_stop, timeout)

    def _warm_up(self, stop: threading.Event) -> None:
        from mmnar_core.background import Stopped
        from mmnar_core.explain.attributions import AttributionSettings

        def check(_step: str) -> None:
            if stop.is_set():
                raise Stopped

        settings = AttributionSettings(tabular_steps=2, image_steps=2, text_steps=2)
        with self._lock:
            try:
                record = warm_up_record(self.predictor)
                self.predictor.explain(
                    record, tasks=[self.predictor.config.tasks[0]], settings=settings, progress=check
                )
                self.predictor.prepare(check)  # what the first patient of each pattern would otherwise fit
            except Stopped:
                raise
            except Exception:  # a warm-up must never take the app down; the first analysis will show the problem
                import logging

                logging.getLogger(__name__).warning("warm-up analysis failed", exc_info=True)

    @contextmanager
    def _turn(self, cancel: CancelToken | None) -> Iterator[CancelToken]:
        """The model for one analysis, with the token it runs under; AnalysisRefused after WAIT_FOR_TURN_S."""
        if not self._lock.acquire(timeout=self.wait_s):
            raise AnalysisRefused(
                f"another analysis is running and did not finish within {self.wait_s:g} s; "
                "please retry in a minute (your inputs are kept)"
            )
        token = cancel if cancel is not None else CancelToken(self.budget_s)
        try:
            yield token
        except Cancelled as stop:
            raise AnalysisRefused(
                f"the analysis was stopped ({stop.reason}); a shorter note or fewer images analyse faster"
            ) from None
        finally:
            self._lock.release()

    def analyse(
        self,
        record: PatientRecord,
        task: str,
        progress: Callable[[str], None] | None = None,
        modalities: list[str] | None = None,
        cancel: CancelToken | None = None,
    ) -> Explanation:
        """Prediction, what-if and attributions for one outcome (`Explanation`), computed at most once.
        With `modalities`, only those are attributed (a fast first answer; `complete` adds the rest),
        unless the complete explanation is already cached. `cancel` stops it (default: a token with the
        time budget); AnalysisRefused when stopped or when the model stays busy."""
        from mmnar_core.explain.explanation import input_hash

        digest = input_hash(record)  # once: the image bytes are the costly part
        explanation, key = self._cached(digest, task, modalities)
        if explanation is not None:  # a cached answer needs no turn at the model
            return explanation
        with self._turn(cancel) as token:
            explanation, key = self._cached(digest, task, modalities)
            if explanation is None:
                explanation = self.predictor.explain(
                    record, tasks=_tasks(task), progress=progress, modalities=modalities, digest=digest, cancel=token
                )
                self._cache.put(key, explanation)
            return explanation

    def complete(
        self,
        partial: Explanation,
        record: PatientRecord,
        task: str,
        progress: Callable[[str], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> Explanation:
        """The complete explanation from a partial one: attributes the modalities it lacks (each modality
        is attributed with the others fixed, so the parts are exactly those of one complete call)."""
        key = self.cache_key(partial.input_hash, task)
        explanation = self._cache.get(key)
        if explanation is not None:
            return explanation
        with self._turn(cancel) as token:
            explanation = self._cache.get(key)
            if explanation is None:
                extra = self.predictor.explain(
                    record,
                    tasks=_tasks(task),
                    include_what_if=False,
                    modalities=partial.pending(),
                    progress=progress,
                    digest=partial.input_hash,
                    cancel=token,
                )
                explanation = partial.completed_with(extra, key, self.info.modality_names())
                self._cache.put(key, explanation)
            return explanation


def _tasks(task: str) -> list[str] | None:
    """The predictor's `tasks` for a service's `task`: every outcome for ALL_TASKS, else that one."""
    from mmnar_core.results import ALL_TASKS

    return None if task == ALL_TASKS else [task]


def warm_up_record(predictor) -> PatientRecord:
    """A made-up patient with every modality of the bundle: nothing measured in the structured data, a
    grey 256 x 256 image per image modality and a short note per text modality."""
    import io

    import numpy as np
    from PIL import Image

    from mmnar_core.schema import ModalityKind

    buffer = io.BytesIO()
    Image.fromarray(np.full((256, 256), 128, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    kinds = {m.name: m.kind for m in predictor.modalities}
    return PatientRecord(
        "warm-up",
        {f.name: None for f in predictor.features},
        {name: buffer.getvalue() for name, kind in kinds.items() if kind is ModalityKind.IMAGE},
        {name: "Warm-up note: no patient. " * 20 for name, kind in kinds.items() if kind is ModalityKind.TEXT},
    )
