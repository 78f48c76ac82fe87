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
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from mmnar_core.explain.attributions import (
    AttributionSettings,
    ImageAttribution,
    TabularAttribution,
    TextAttribution,
)

FORMAT = "mmnar-explanation/1"


def _canonical_value(value):
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, bool) or isinstance(value, int):
        return float(value) if not isinstance(value, bool) else value
    return str(value)


def _image_digest(source) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        position = source.tell() if hasattr(source, "tell") else None
        data = source.read()
        if position is not None:
            source.seek(position)
    else:
        data = Path(source).read_bytes()
    return hashlib.sha256(data).hexdigest()


def input_hash(record) -> str:
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

    def __init__(self, size: int):
        self.size = int(size)
        self._items: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def get(self, key: str):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        return None

    def put(self, key: str, value) -> None:
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
    settings: dict
    prediction: dict  # Prediction.to_dict()
    what_if: dict | None  # WhatIfResult.to_dict()
    tabular: list[TabularAttribution]
    images: list[ImageAttribution]
    texts: list[TextAttribution]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part (not part of the content)
    notes: list[str] = field(default_factory=list)

    _nested = {"tabular": TabularAttribution, "images": ImageAttribution, "texts": TextAttribution}

    def to_dict(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = [v.to_dict() for v in value] if f.name in self._nested else value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Explanation:
        if data.get("format") != FORMAT:
            raise ValueError(f"not an explanation of format {FORMAT!r} (got {data.get('format')!r})")
        kwargs = {}
        for f in fields(cls):
            value = data[f.name]
            kwargs[f.name] = [cls._nested[f.name].from_dict(v) for v in value] if f.name in cls._nested else value
        return cls(**kwargs)

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), allow_nan=False, ensure_ascii=False, **kwargs)

    @classmethod
    def from_json(cls, text: str) -> Explanation:
        return cls.from_dict(json.loads(text))

    def pending(self) -> list[str]:
        """Available modalities without attributions here (an explanation limited to some modalities)."""
        done = {a.modality for a in (*self.tabular, *self.images, *self.texts)}
        return [m for m in self.prediction["available"] if m not in done]

    def modality(self, name: str):
        for item in (*self.tabular, *self.images, *self.texts):
            if item.modality == name:
                return item
        raise KeyError(f"no attributions for modality {name!r} in this explanation")

    def completed_with(self, extra: Explanation, cache_key: str, modality_order: Sequence[str]) -> Explanation:
        """This partial explanation plus the attributions of `extra` (the modalities it lacked, attributed with
        the others fixed, so the parts are those of one complete call), under the complete one's `cache_key`."""
        from dataclasses import replace

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
