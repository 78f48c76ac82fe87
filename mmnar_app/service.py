"""The one object the app talks to for model work: model information and `analyse(record, task)`.

`LocalService` runs the predictor in this process (loaded once, on the GPU when present) and caches
explanations by their `cache_key` (input hash + model + task + settings), so a patient analysed once is
never recomputed, whichever browser session asks. A remote service with the same two methods replaces
it when a model server is configured.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from mmnar_core.model_info import ModelInfo, model_info
from mmnar_core.schema import PatientRecord

STEP_LABELS = {"encode": "Encoding the inputs", "predict": "Scoring the risks", "what_if": "What-if over modality subsets"}


class LocalService:
    """The in-process predictor with a bounded explanation cache (thread-safe: one model, many sessions)."""

    def __init__(self, bundle_dir: str | Path, device: str | None = None, cache_size: int = 64):
        from mmnar_core.predictor import Predictor

        self.predictor = Predictor.load(bundle_dir, device=device)
        self.info: ModelInfo = model_info(self.predictor)
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # one analysis at a time: two would only fight over the CPU cores

    def cache_key(self, record: PatientRecord, task: str) -> str:
        from mmnar_core.explain.attributions import AttributionSettings
        from mmnar_core.explain.explanation import cache_key, input_hash

        return cache_key(input_hash(record), self.info.model_id, [task], AttributionSettings())

    def cached(self, record: PatientRecord, task: str):
        return self._cache.get(self.cache_key(record, task))

    def analyse(self, record: PatientRecord, task: str, progress: Callable[[str], None] | None = None):
        """Prediction, what-if and attributions for one outcome (`Explanation`), computed at most once."""
        key = self.cache_key(record, task)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            explanation = self.predictor.explain(record, tasks=[task], progress=progress)
            self._cache[key] = explanation
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return explanation
