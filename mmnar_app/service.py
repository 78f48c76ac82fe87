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

    def start_warm_up(self) -> threading.Thread:
        """Run one throw-away explanation of a made-up patient in the background, so the first clinician's
        analysis does not pay for lazy imports, first-call kernel selection and allocator growth (the first
        analysis after start took 17 s instead of ~5 s). It holds the analysis lock: a click during the
        warm-up waits for it, as it would have waited for the same work anyway. Nothing is cached."""
        thread = threading.Thread(target=self._warm_up, name="mmnar-warm-up", daemon=True)
        thread.start()
        return thread

    def _warm_up(self) -> None:
        from mmnar_core.explain.attributions import AttributionSettings

        settings = AttributionSettings(tabular_steps=2, image_steps=2, text_steps=2)
        with self._lock:
            try:
                record = warm_up_record(self.predictor)
                self.predictor.explain(record, tasks=[self.predictor.config.tasks[0]], settings=settings)
            except Exception:  # a warm-up must never take the app down; the first analysis will show the problem
                import logging

                logging.getLogger(__name__).warning("warm-up analysis failed", exc_info=True)

    def cache_key(self, record: PatientRecord | str, task: str, modalities: list[str] | None = None) -> str:
        """Key of the explanation of `record` (or of its input hash) for `task`."""
        from mmnar_core.explain.attributions import AttributionSettings
        from mmnar_core.explain.explanation import cache_key, input_hash

        digest = record if isinstance(record, str) else input_hash(record)
        return cache_key(digest, self.info.model_id, [task], AttributionSettings(), True, modalities)

    def _remember(self, key: str, explanation) -> None:
        self._cache[key] = explanation
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def analyse(self, record: PatientRecord, task: str, progress: Callable[[str], None] | None = None,
                modalities: list[str] | None = None):
        """Prediction, what-if and attributions for one outcome (`Explanation`), computed at most once.
        With `modalities`, only those are attributed (a fast first answer; `complete` adds the rest),
        unless the complete explanation is already cached."""
        from mmnar_core.explain.explanation import input_hash

        digest = input_hash(record)  # once: the image bytes are the costly part
        full, key = self.cache_key(digest, task), self.cache_key(digest, task, modalities)
        with self._lock:
            for candidate in (full, key):
                if candidate in self._cache:
                    self._cache.move_to_end(candidate)
                    return self._cache[candidate]
            explanation = self.predictor.explain(record, tasks=[task], progress=progress, modalities=modalities,
                                                 digest=digest)
            self._remember(key, explanation)
            return explanation

    def complete(self, partial, record: PatientRecord, task: str, progress: Callable[[str], None] | None = None):
        """The complete explanation from a partial one: attributes the modalities it lacks (each modality
        is attributed with the others fixed, so the parts are exactly those of one complete call)."""
        key = self.cache_key(partial.input_hash, task)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            extra = self.predictor.explain(record, tasks=[task], include_what_if=False, modalities=partial.pending(),
                                           progress=progress, digest=partial.input_hash)
            explanation = partial.completed_with(extra, key, [m["name"] for m in self.info.modalities])
            self._remember(key, explanation)
            return explanation


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
        "warm-up", {f.name: None for f in predictor.features},
        {name: buffer.getvalue() for name, kind in kinds.items() if kind is ModalityKind.IMAGE},
        {name: "Warm-up note: no patient. " * 20 for name, kind in kinds.items() if kind is ModalityKind.TEXT})
