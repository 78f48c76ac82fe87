"""The canonical data model: modalities, structured features, outcomes and one patient record.

Every source (simulator, MIMIC-IV / eICU / UCI loaders, a single uploaded patient) is turned into these
objects, so nothing downstream is hard-coded to one dataset or to four modalities.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class SchemaError(ValueError):
    """A spec or record that breaks the canonical model; the message names the field."""


class ModalityKind(str, Enum):
    TABULAR = "tabular"
    IMAGE = "image"
    TEXT = "text"


class FeatureKind(str, Enum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BINARY = "binary"


def check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise SchemaError(
            f"{where}: {name!r} is not a valid name (accepted: lower-case letters, digits and '_', "
            "starting with a letter, at most 64 characters)"
        )
    return name


def _enum(enum_cls: type[Enum], value: Any, where: str) -> Any:
    try:
        return enum_cls(value)
    except ValueError:
        accepted = ", ".join(member.value for member in enum_cls)
        raise SchemaError(f"{where}: {value!r} is not accepted (accepted: {accepted})") from None


@dataclass(frozen=True)
class ModalitySpec:
    """One input modality: its name, its kind and a sentence on what it is."""

    name: str
    kind: ModalityKind
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "modality name")
        object.__setattr__(self, "kind", _enum(ModalityKind, self.kind, f"modality {self.name!r} kind"))

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind.value, "description": self.description}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModalitySpec:
        return cls(name=data["name"], kind=data["kind"], description=data.get("description", ""))


@dataclass(frozen=True)
class FeatureSpec:
    """One structured feature, owned by a tabular modality, with its unit and plausible range."""

    name: str
    kind: FeatureKind
    modality: str
    unit: str | None = None
    description: str = ""
    valid_range: tuple[float, float] | None = None
    categories: tuple[str, ...] | None = None
    # a value outside `categories` is accepted as "unknown" (the model's encoder has an <unknown> level);
    # set by the predictor from its encoder, never stored in a dataset (to_dict omits it when False)
    accepts_unknown: bool = False

    def __post_init__(self) -> None:
        check_name(self.name, "feature name")
        object.__setattr__(self, "kind", _enum(FeatureKind, self.kind, f"feature {self.name!r} kind"))
        if self.kind is FeatureKind.CATEGORICAL:
            if not self.categories:
                raise SchemaError(f"feature {self.name!r}: a categorical feature needs its list of categories")
            object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
            if len(set(self.categories)) != len(self.categories):
                raise SchemaError(f"feature {self.name!r}: categories are not unique")
        elif self.categories is not None:
            raise SchemaError(f"feature {self.name!r}: only categorical features have categories")
        if self.accepts_unknown is not False and (
            self.accepts_unknown is not True or self.kind is not FeatureKind.CATEGORICAL
        ):
            raise SchemaError(
                f"feature {self.name!r}: accepts_unknown must be true or false, and true only for a categorical feature"
            )
        if self.valid_range is not None:
            low, high = (float(v) for v in self.valid_range)
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise SchemaError(f"feature {self.name!r}: valid_range must be two finite numbers low < high")
            object.__setattr__(self, "valid_range", (low, high))

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "modality": self.modality,
            "unit": self.unit,
            "description": self.description,
            "valid_range": list(self.valid_range) if self.valid_range else None,
            "categories": list(self.categories) if self.categories else None,
            **({"accepts_unknown": True} if self.accepts_unknown else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(
            name=data["name"],
            kind=data["kind"],
            modality=data["modality"],
            unit=data.get("unit"),
            description=data.get("description", ""),
            valid_range=tuple(data["valid_range"]) if data.get("valid_range") else None,
            categories=tuple(data["categories"]) if data.get("categories") else None,
            accepts_unknown=data.get("accepts_unknown", False),
        )


@dataclass(frozen=True)
class OutcomeSpec:
    """A prediction target with its exact label definition.

    `window_days` is the half-open window (start, end] in days after `anchor` in which the event must
    happen to count; `defined_for` says which patients have a label at all (others are stored as null).
    """

    name: str
    description: str
    definition: str
    anchor: str = "prediction time"
    window_days: tuple[float, float] | None = None
    defined_for: str = "all patients"

    def __post_init__(self) -> None:
        check_name(self.name, "outcome name")
        if self.window_days is not None:
            start, end = (float(v) for v in self.window_days)
            if not start < end:
                raise SchemaError(f"outcome {self.name!r}: window_days must be (start, end] with start < end")
            object.__setattr__(self, "window_days", (start, end))

    def in_window(self, days_after_anchor: float) -> bool:
        """True when an event `days_after_anchor` days after the anchor falls in (start, end]."""
        if self.window_days is None:
            raise SchemaError(f"outcome {self.name!r} has no time window")
        start, end = self.window_days
        return start < days_after_anchor <= end

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "definition": self.definition,
            "anchor": self.anchor,
            "window_days": list(self.window_days) if self.window_days else None,
            "defined_for": self.defined_for,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutcomeSpec:
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            definition=data["definition"],
            anchor=data.get("anchor", "prediction time"),
            window_days=tuple(data["window_days"]) if data.get("window_days") else None,
            defined_for=data.get("defined_for", "all patients"),
        )


def check_unique(names: Sequence[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SchemaError(f"{what} {name!r} appears twice")
        seen.add(name)


@dataclass
class PatientRecord:
    """Everything known about one patient at prediction time, in canonical form.

    `structured` maps feature name to value (None = not measured); `images` maps an image modality to a
    file path or the file's bytes (what load_image reads); `texts` maps a text modality to its text. A
    modality is available when it has content: an image, a non-blank text, or at least one measured feature.
    """

    patient_id: str
    structured: dict[str, Any] = field(default_factory=dict)
    images: dict[str, str | Path | bytes] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    labels: dict[str, int | None] = field(default_factory=dict)

    def availability(self, modalities: Sequence[ModalitySpec], features: Sequence[FeatureSpec]) -> tuple[bool, ...]:
        bits = []
        for modality in modalities:
            if modality.kind is ModalityKind.IMAGE:
                bits.append(modality.name in self.images and self.images[modality.name] is not None)
            elif modality.kind is ModalityKind.TEXT:
                text = self.texts.get(modality.name)
                bits.append(bool(text and text.strip()))
            else:
                owned = [f.name for f in features if f.modality == modality.name]
                bits.append(any(not _is_missing(self.structured.get(name)) for name in owned))
        return tuple(bits)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN and pandas NA
    except (TypeError, ValueError):
        return False


MIMIC_STYLE_MODALITIES = (
    ModalitySpec("structured", ModalityKind.TABULAR, "Structured EHR: demographics, vitals, labs, admission fields"),
    ModalitySpec("cxr", ModalityKind.IMAGE, "Frontal chest X-ray taken before the prediction time"),
    ModalitySpec("discharge_note", ModalityKind.TEXT, "Discharge summary of the index stay"),
    ModalitySpec("radiology_report", ModalityKind.TEXT, "Radiology report of the chest imaging study"),
)
