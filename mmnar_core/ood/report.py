"""What the distribution check says about one patient, as typed records with `to_dict()` / `from_dict()`
(plain JSON types; `from_dict(d).to_dict() == d`), so it can be shown before the risk, stored with a saved
assessment and sent over HTTP."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FeatureFinding:
    """One structured value the training patients never had: above or below every training value, a
    category no training patient had, or a feature no training patient had recorded."""

    feature: str
    value: Any  # the value as given (number or category)
    unit: str | None
    problem: str  # "above", "below", "unseen_category", "never_recorded"
    low: float | None  # the training minimum (numeric features)
    high: float | None  # the training maximum
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "value": self.value,
            "unit": self.unit,
            "problem": self.problem,
            "low": self.low,
            "high": self.high,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureFinding:
        return cls(
            data["feature"], data["value"], data["unit"], data["problem"], data["low"], data["high"], data["message"]
        )


@dataclass
class DetectorResult:
    """One detector's verdict: its score, the threshold it is flagged above, and the share of held-out
    training patients with a lower score (None for the range check, which counts values)."""

    detector: str  # "range", "distance", "embedding", "image_statistics"
    score: float
    threshold: float
    percentile: float | None
    flagged: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "score": self.score,
            "threshold": self.threshold,
            "percentile": self.percentile,
            "flagged": self.flagged,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DetectorResult:
        return cls(data["detector"], data["score"], data["threshold"], data["percentile"], data["flagged"])


@dataclass
class ModalityReport:
    """The verdict on one modality the patient has. `score`, `threshold` and `percentile` are the main
    detector's (structured: the multivariate distance; X-ray and notes: the embedding's neighbour
    distance); `detectors` lists every detector; the modality is flagged when any of them is."""

    modality: str
    kind: str
    checked: bool  # False: the bundle's check has no fit for this modality (`reasons` says why)
    flagged: bool
    score: float | None
    threshold: float | None
    percentile: float | None
    reasons: list[str] = field(default_factory=list)
    detectors: list[DetectorResult] = field(default_factory=list)
    findings: list[FeatureFinding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "kind": self.kind,
            "checked": self.checked,
            "flagged": self.flagged,
            "score": self.score,
            "threshold": self.threshold,
            "percentile": self.percentile,
            "reasons": list(self.reasons),
            "detectors": [d.to_dict() for d in self.detectors],
            "findings": [f.to_dict() for f in self.findings],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModalityReport:
        return cls(
            modality=data["modality"],
            kind=data["kind"],
            checked=data["checked"],
            flagged=data["flagged"],
            score=data["score"],
            threshold=data["threshold"],
            percentile=data["percentile"],
            reasons=list(data.get("reasons", [])),
            detectors=[DetectorResult.from_dict(d) for d in data.get("detectors", [])],
            findings=[FeatureFinding.from_dict(f) for f in data.get("findings", [])],
        )


@dataclass
class DistributionReport:
    """Whether the patient is unlike the training data, overall and per modality, and why in words."""

    flagged: bool
    summary: str  # one sentence to show before the risk
    modalities: list[ModalityReport]
    level: float  # each detector flags about 1 - level of patients like the training ones
    trained_on: str  # the training dataset's name

    @property
    def flagged_modalities(self) -> list[str]:
        return [m.modality for m in self.modalities if m.flagged]

    @property
    def reasons(self) -> list[str]:
        return [reason for m in self.modalities if m.flagged for reason in m.reasons]

    def modality(self, name: str) -> ModalityReport | None:
        return next((m for m in self.modalities if m.modality == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "summary": self.summary,
            "modalities": [m.to_dict() for m in self.modalities],
            "level": self.level,
            "trained_on": self.trained_on,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DistributionReport:
        return cls(
            flagged=data["flagged"],
            summary=data["summary"],
            modalities=[ModalityReport.from_dict(m) for m in data["modalities"]],
            level=data["level"],
            trained_on=data["trained_on"],
        )
