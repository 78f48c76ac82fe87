"""The one object the app talks to for model work: model information and `analyse(record, task)`.

`LocalService` runs the predictor in this process (loaded once, on the GPU when present) and caches
explanations by their `cache_key` (input hash + model + task + settings), so a patient analysed once is
never recomputed, whichever browser session asks. A remote service with the same two methods replaces
it when a model server is configured.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from mmnar_core.schema import FeatureSpec, ModalitySpec, OutcomeSpec, PatientRecord

STEP_LABELS = {"encode": "Encoding the inputs", "predict": "Scoring the risks", "what_if": "What-if over modality subsets"}


@dataclass
class ModelInfo:
    """What every page shows and what the model card needs, as plain data."""

    model_id: str
    content_hash: str
    created_by: str
    dataset_name: str
    synthetic: bool
    tasks: list[str]
    modalities: list[dict]
    features: list[dict]
    outcomes: list[dict]
    model_card: str
    metrics: dict
    calibration: dict
    pattern_counts_train: dict
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        return f"{self.model_id} ({self.created_by})"

    def feature_specs(self) -> list[FeatureSpec]:
        return [FeatureSpec.from_dict(f) for f in self.features]

    def modality_specs(self) -> list[ModalitySpec]:
        return [ModalitySpec.from_dict(m) for m in self.modalities]

    def outcome_specs(self) -> list[OutcomeSpec]:
        return [OutcomeSpec.from_dict(o) for o in self.outcomes]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelInfo":
        return cls(**data)


def model_info_from_predictor(predictor) -> ModelInfo:
    import json

    bundle = predictor.bundle
    index = json.loads((bundle.root / "bundle.json").read_text(encoding="utf-8"))
    calibration = json.loads((bundle.root / "calibration.json").read_text(encoding="utf-8"))
    dataset = bundle.dataset
    source = str(dataset.get("provenance", {}).get("source", ""))
    return ModelInfo(
        model_id=bundle.model_id, content_hash=bundle.content_hash, created_by=index.get("created_by", ""),
        dataset_name=dataset.get("name", ""), synthetic="synthetic" in source.lower(),
        tasks=list(predictor.config.tasks), modalities=dataset["modalities"], features=dataset["features"],
        outcomes=dataset["outcomes"], model_card=bundle.model_card, metrics=bundle.metrics, calibration=calibration,
        pattern_counts_train=dataset.get("pattern_counts_train", {}), device=str(predictor.device))


class LocalService:
    """The in-process predictor with a bounded explanation cache (thread-safe: one model, many sessions)."""

    def __init__(self, bundle_dir: str | Path, device: str | None = None, cache_size: int = 64):
        from mmnar_core.predictor import Predictor

        self.predictor = Predictor.load(bundle_dir, device=device)
        self.info = model_info_from_predictor(self.predictor)
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
