"""`Explanation`: everything the app, the database and a model server need about one patient, as one
serialisable object: the prediction, the what-if over modality subsets (with modality Shapley values
and the value of absent modalities) and the attributions within each modality.

`to_dict()` gives plain JSON types (heatmaps as base64 float16 with shape and scale) and
`from_dict(json.loads(json.dumps(e.to_dict()))) == e` holds exactly. `input_hash` is the sha256 of the
canonical content of the record's inputs (structured values, note texts, image file bytes; not the
patient id, not the labels); `cache_key` adds the model id, the tasks and the attribution settings, so a
cache keyed on it never serves an explanation computed differently.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, cast

from mmnar_core.explain.attributions import (
    AttributionSettings,
    ImageAttribution,
    TabularAttribution,
    TextAttribution,
)
from mmnar_core.explain.summary import OutcomeSummary, SummaryFacts, summarize
from mmnar_core.results import Prediction, WhatIfResult
from mmnar_core.schema import PatientRecord

FORMAT = "mmnar-explanation/1"
ModalityAttribution = TabularAttribution | ImageAttribution | TextAttribution  # one modality's attributions


def _canonical_value(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, bool) or isinstance(value, int):
        return float(value) if not isinstance(value, bool) else value
    return str(value)


def _image_digest(source: str | Path | bytes | bytearray | memoryview | IO[bytes]) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        stream = cast(IO[bytes], source)
        position = stream.tell() if hasattr(stream, "tell") else None
        data = stream.read()
        if position is not None:
            stream.seek(position)
    else:
        data = Path(source).read_bytes()
    return hashlib.sha256(data).hexdigest()


def input_hash(record: PatientRecord) -> str:
    """sha256 of the canonical content of a record's inputs: structured values (numbers as floats, so
    70 and 70.0 hash alike; NaN as missing), note texts exactly as given, and image file bytes."""
    content = {
        "structured": {k: _canonical_value(v) for k, v in sorted(record.structured.items())},
        "texts": {
            k: (v.decode("utf-8") if isinstance(v, (bytes, bytearray)) else v)
            for k, v in sorted(record.texts.items())
            if v is not None
        },
        "images": {k: _image_digest(v) for k, v in sorted(record.images.items()) if v is not None},
    }
    text = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(
    record_hash: str,
    model_id: str,
    tasks: Sequence[str],
    settings: AttributionSettings,
    include_what_if: bool = True,
    modalities: Sequence[str] | None = None,
) -> str:
    """Key of an explanation; one limited to some `modalities` never shares the key of a complete one."""
    content = {
        "input": record_hash,
        "model": model_id,
        "tasks": list(tasks),
        "settings": settings.to_dict(),
        "what_if": include_what_if,
        "format": FORMAT,
    }
    if modalities is not None:
        content["modalities"] = sorted(modalities)
    text = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ExplanationCache:
    """Bounded, thread-safe LRU: explanations by cache_key (app and server), embeddings by input hash (Predictor)."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: str) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        return None

    def put(self, key: str, value: Any) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def task_cache_key(record_hash: str, model_id: str, task: str, modalities: Sequence[str] | None = None) -> str:
    """cache_key of the explanation the app and the model server ask for: one task, default settings, with
    what-if, all modalities or only `modalities` attributed."""
    return cache_key(record_hash, model_id, [task], AttributionSettings(), True, modalities)


@dataclass
class Explanation:
    format: str
    input_hash: str
    cache_key: str
    model_id: str
    patient_id: str
    tasks: list[str]  # tasks the attributions were computed for
    settings: dict[str, Any]  # AttributionSettings.to_dict(), as computed (part of the cache key)
    prediction: Prediction
    what_if: WhatIfResult | None  # None when computed without (the second pass of a two-pass explanation)
    tabular: list[TabularAttribution]
    images: list[ImageAttribution]
    texts: list[TextAttribution]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part (not part of the content)
    notes: list[str] = field(default_factory=list)
    # the bundle's figures for this patient's pattern (held-out rates, reliability, feature ranges): with
    # them `summary()` gives the summary card; None in explanations saved before the card existed
    facts: SummaryFacts | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, keys in field order: the form the model server answers and the app stores."""
        data = {
            "format": self.format,
            "input_hash": self.input_hash,
            "cache_key": self.cache_key,
            "model_id": self.model_id,
            "patient_id": self.patient_id,
            "tasks": list(self.tasks),
            "settings": dict(self.settings),
            "prediction": self.prediction.to_dict(),
            "what_if": None if self.what_if is None else self.what_if.to_dict(),
            "tabular": [a.to_dict() for a in self.tabular],
            "images": [a.to_dict() for a in self.images],
            "texts": [a.to_dict() for a in self.texts],
            "timings": dict(self.timings),
            "notes": list(self.notes),
        }
        if self.facts is not None:  # without (saved before the card existed) the JSON stays exactly as read
            data["facts"] = self.facts.to_dict()
            # derived from the fields above (never read back): for clients that do not run this library
            data["summary"] = [card.to_dict() for card in self.summary()]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Explanation:
        if data.get("format") != FORMAT:
            raise ValueError(f"not an explanation of format {FORMAT!r} (got {data.get('format')!r})")
        what_if = data["what_if"]
        return cls(
            format=data["format"],
            input_hash=data["input_hash"],
            cache_key=data["cache_key"],
            model_id=data["model_id"],
            patient_id=data["patient_id"],
            tasks=list(data["tasks"]),
            settings=dict(data["settings"]),
            prediction=Prediction.from_dict(data["prediction"]),
            what_if=None if what_if is None else WhatIfResult.from_dict(what_if),
            tabular=[TabularAttribution.from_dict(a) for a in data["tabular"]],
            images=[ImageAttribution.from_dict(a) for a in data["images"]],
            texts=[TextAttribution.from_dict(a) for a in data["texts"]],
            timings=dict(data["timings"]),
            notes=list(data["notes"]),
            facts=None if data.get("facts") is None else SummaryFacts.from_dict(data["facts"]),
        )

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, ensure_ascii=False, **kwargs)

    @classmethod
    def from_json(cls, text: str) -> Explanation:
        return cls.from_dict(json.loads(text))

    def summary(self) -> list[OutcomeSummary]:
        """The summary card of every outcome (mmnar_core.explain.summary); [] without the bundle's facts."""
        return [] if self.facts is None else summarize(self, self.facts)

    def pending(self) -> list[str]:
        """Available modalities without attributions here (an explanation limited to some modalities)."""
        done = {a.modality for a in self.attributions()}
        return [m for m in self.prediction.available if m not in done]

    def attributions(self) -> list[ModalityAttribution]:
        """The attributions of every modality here: structured, images, notes."""
        return [*self.tabular, *self.images, *self.texts]

    def modality(self, name: str) -> ModalityAttribution:
        for item in self.attributions():
            if item.modality == name:
                return item
        raise KeyError(f"no attributions for modality {name!r} in this explanation")

    def completed_with(self, extra: Explanation, cache_key: str, modality_order: Sequence[str]) -> Explanation:
        """This partial explanation plus the attributions of `extra` (the modalities it lacked, attributed with
        the others fixed, so the parts are those of one complete call), under the complete one's `cache_key`."""
        order = {name: i for i, name in enumerate(modality_order)}
        timings = {
            **self.timings,
            **{k: v for k, v in extra.timings.items() if k.startswith("attribute_")},
            "total": round(self.timings.get("total", 0.0) + extra.timings.get("total", 0.0), 4),
        }
        return replace(
            self,
            cache_key=cache_key,
            timings=timings,
            tabular=sorted([*self.tabular, *extra.tabular], key=lambda a: order[a.modality]),
            images=sorted([*self.images, *extra.images], key=lambda a: order[a.modality]),
            texts=sorted([*self.texts, *extra.texts], key=lambda a: order[a.modality]),
        )


NOTES = [
    "Attributions are in units of the rectified, calibrated risk unless settings.output is 'logit'.",
    "Each modality is attributed with the others fixed at the patient's values and the patient's "
    "missingness pattern; the modality-level contributions are the Shapley values in what_if.",
    "The demo model is trained on synthetic patients: explanations describe the model, not medicine.",
]
