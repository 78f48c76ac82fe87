"""`manifest.json`: what a dataset directory holds and where it came from."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmnar_core.schema import (
    FeatureSpec,
    ModalityKind,
    ModalitySpec,
    OutcomeSpec,
    SchemaError,
    check_name,
    check_unique,
)

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
CHECKSUMS_FILE = "checksums.sha256"
PATIENTS_TABLE = "patients.parquet"
STRUCTURED_TABLE = "structured.parquet"
TEXT_TABLE = "text.parquet"
IMAGES_TABLE = "images.parquet"
SPLITS = ("train", "val", "test")


class DatasetFormatError(ValueError):
    """A dataset directory that does not follow docs/data_format.md; names the file and the field."""

    def __init__(self, file: str | Path, field_name: str, problem: str):
        self.file = str(file)
        self.field = field_name
        self.problem = problem
        super().__init__(f"{self.file}: {field_name}: {problem}")


@dataclass(frozen=True)
class ReferenceScore:
    """A score published with the data (e.g. APACHE IV) kept for comparison, never used as a feature."""

    name: str
    outcome: str
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "reference score name")

    def to_dict(self) -> dict:
        return {"name": self.name, "outcome": self.outcome, "description": self.description}


@dataclass
class Manifest:
    """Parsed `manifest.json`. Column names in the tables follow from these specs (see the docs)."""

    name: str
    modalities: list[ModalitySpec]
    features: list[FeatureSpec]
    outcomes: list[OutcomeSpec]
    provenance: dict[str, Any]
    description: str = ""
    reference_scores: list[ReferenceScore] = field(default_factory=list)
    has_true_probabilities: bool = False
    extras: dict[str, str] = field(default_factory=dict)
    n_patients: int = 0
    split_counts: dict[str, int] = field(default_factory=dict)
    content_hash: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        check_unique([m.name for m in self.modalities], "modality")
        check_unique([f.name for f in self.features], "feature")
        check_unique([o.name for o in self.outcomes], "outcome")
        if not self.modalities:
            raise SchemaError("a dataset needs at least one modality")
        tabular = {m.name for m in self.modalities if m.kind is ModalityKind.TABULAR}
        for feature in self.features:
            if feature.modality not in tabular:
                raise SchemaError(
                    f"feature {feature.name!r} belongs to {feature.modality!r}, which is not a tabular modality "
                    f"of this dataset (tabular modalities: {sorted(tabular) or 'none'})"
                )
        outcome_names = {o.name for o in self.outcomes}
        for score in self.reference_scores:
            if score.outcome not in outcome_names:
                raise SchemaError(f"reference score {score.name!r} refers to unknown outcome {score.outcome!r}")

    @property
    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def modalities_of_kind(self, kind: ModalityKind) -> list[ModalitySpec]:
        return [m for m in self.modalities if m.kind is kind]

    def features_of(self, modality: str) -> list[FeatureSpec]:
        return [f for f in self.features if f.modality == modality]

    def to_dict(self) -> dict:
        return {
            "format_version": self.format_version,
            "name": self.name,
            "description": self.description,
            "n_patients": self.n_patients,
            "split_counts": self.split_counts,
            "modalities": [m.to_dict() for m in self.modalities],
            "features": [f.to_dict() for f in self.features],
            "outcomes": [o.to_dict() for o in self.outcomes],
            "reference_scores": [s.to_dict() for s in self.reference_scores],
            "has_true_probabilities": self.has_true_probabilities,
            "extras": self.extras,
            "provenance": self.provenance,
            "content_hash": self.content_hash,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Any, file: str | Path = MANIFEST_FILE) -> Manifest:
        """Parse and check a manifest; every problem is a DatasetFormatError naming the field."""
        if not isinstance(data, dict):
            raise DatasetFormatError(file, "(top level)", f"must be a JSON object, got {type(data).__name__}")
        version = _required(data, "format_version", int, file)
        if version != FORMAT_VERSION:
            raise DatasetFormatError(
                file, "format_version", f"{version!r} is not supported (accepted: {FORMAT_VERSION})"
            )
        name = _required(data, "name", str, file)
        modalities = _parse_list(data, "modalities", ModalitySpec.from_dict, file)
        features = _parse_list(data, "features", FeatureSpec.from_dict, file)
        outcomes = _parse_list(data, "outcomes", OutcomeSpec.from_dict, file)
        scores = _parse_list(
            data,
            "reference_scores",
            lambda d: ReferenceScore(d["name"], d["outcome"], d.get("description", "")),
            file,
            optional=True,
        )
        provenance = _required(data, "provenance", dict, file)
        content_hash = _required(data, "content_hash", str, file)
        split_counts = _required(data, "split_counts", dict, file)
        try:
            return cls(
                name=name,
                description=str(data.get("description", "")),
                modalities=modalities,
                features=features,
                outcomes=outcomes,
                reference_scores=scores,
                has_true_probabilities=bool(data.get("has_true_probabilities", False)),
                extras=dict(data.get("extras") or {}),
                provenance=provenance,
                n_patients=_required(data, "n_patients", int, file),
                split_counts=split_counts,
                content_hash=content_hash,
                format_version=version,
            )
        except SchemaError as error:
            raise DatasetFormatError(file, "(specs)", str(error)) from None


def _required(data: dict, key: str, kind: type, file: str | Path) -> Any:
    if key not in data:
        raise DatasetFormatError(file, key, "is missing")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DatasetFormatError(file, key, f"must be {kind.__name__}, got {type(value).__name__}")
    return value


def _parse_list(data: dict, key: str, parse, file: str | Path, optional: bool = False) -> list:
    if key not in data and optional:
        return []
    items = _required(data, key, list, file)
    parsed = []
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        if not isinstance(item, dict):
            raise DatasetFormatError(file, where, f"must be a JSON object, got {type(item).__name__}")
        try:
            parsed.append(parse(item))
        except KeyError as error:
            raise DatasetFormatError(file, f"{where}.{error.args[0]}", "is missing") from None
        except (SchemaError, TypeError, ValueError) as error:
            raise DatasetFormatError(file, where, str(error)) from None
    return parsed


def avail_column(modality: str) -> str:
    return f"avail_{modality}"


def label_column(outcome: str) -> str:
    return f"label_{outcome}"


def true_prob_column(outcome: str) -> str:
    return f"true_prob_{outcome}"


def reference_column(score: str) -> str:
    return f"ref_{score}"
