"""What the predictor returns, as typed records: `Prediction` (with a `TaskRisk` per outcome) and
`WhatIfResult` (a `SubsetRisks` per subset of the available modalities, the modality Shapley values and an
`AbsentModality` per absent modality, with its `ObtainedEstimate` when there is one).

Every record has `to_dict()` (plain JSON types) and `from_dict()`, and `from_dict(d).to_dict() == d` holds
for what `to_dict()` wrote, key order included: the JSON form is the one the model server answers, the app
stores and `Explanation` embeds (mmnar_core.explain.explanation). `from_dict` reads only the keys it knows,
so an answer with more keys still loads; a stored prediction from before `model_spread` loads with 0.

They sit in the foundations layer so that `explain` (which embeds them) and `predictor` (which computes
them) both import them from below; `mmnar_core.predictor` re-exports them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskRisk:
    task: str
    risk: float  # rectified, calibrated
    low: float  # 95 % interval of the estimated risk: the model's own spread (its members) and the correction's
    high: float  # uncertainty; not what the record does not show (INTERVAL_MEANING)
    raw: float  # the network's own probability
    calibrated: float  # after temperature scaling, before the rectifier
    rectifier_offset: float  # the rectifier's change of this patient's logit (corrected - calibrated)
    pattern_residual: float  # the pattern's unshrunk mean residual (y - p) where the rectifier was fit (0 if unknown)
    model_spread: float = 0.0  # standard deviation of the fusion members' calibrated logits

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "risk": self.risk,
            "low": self.low,
            "high": self.high,
            "raw": self.raw,
            "calibrated": self.calibrated,
            "rectifier_offset": self.rectifier_offset,
            "pattern_residual": self.pattern_residual,
            "model_spread": self.model_spread,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskRisk:
        return cls(
            task=data["task"],
            risk=data["risk"],
            low=data["low"],
            high=data["high"],
            raw=data["raw"],
            calibrated=data["calibrated"],
            rectifier_offset=data["rectifier_offset"],
            pattern_residual=data["pattern_residual"],
            model_spread=data.get("model_spread", 0.0),  # absent from predictions stored before it existed
        )


@dataclass
class Prediction:
    patient_id: str
    pattern: int
    pattern_name: str
    available: list[str]
    missing: list[str]
    risks: list[TaskRisk]
    model_id: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "pattern": self.pattern,
            "pattern_name": self.pattern_name,
            "available": list(self.available),
            "missing": list(self.missing),
            "risks": [r.to_dict() for r in self.risks],
            "model_id": self.model_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Prediction:
        return cls(
            patient_id=data["patient_id"],
            pattern=data["pattern"],
            pattern_name=data["pattern_name"],
            available=list(data["available"]),
            missing=list(data["missing"]),
            risks=[TaskRisk.from_dict(r) for r in data["risks"]],
            model_id=data["model_id"],
        )


@dataclass
class SubsetRisks:
    """The risks with only `modalities` of the available ones (the others through the missing path)."""

    modalities: list[str]
    pattern: int
    risks: dict[str, float]  # task -> risk

    def to_dict(self) -> dict[str, Any]:
        return {"modalities": list(self.modalities), "pattern": self.pattern, "risks": dict(self.risks)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubsetRisks:
        return cls(list(data["modalities"]), data["pattern"], dict(data["risks"]))


@dataclass
class ObtainedEstimate:
    """The risk per task today and, estimated from the most similar training patients who had the absent
    modality, if it were obtained: their mean and 10th / 90th percentiles."""

    current: dict[str, float]
    mean: dict[str, float]
    p10: dict[str, float]
    p90: dict[str, float]
    n_reference: int  # the similar patients the estimate comes from
    n_candidates: int  # the training patients of the reference set who had the modality


@dataclass
class AbsentModality:
    """The value of obtaining one absent modality: an estimate, or None with a note saying why there is none.

    JSON (flat, as the first edition wrote it): {"modality", "current", "mean", "p10", "p90", "n_reference",
    "n_candidates", "note"} with an estimate, {"modality", "estimate": null, "note"} without."""

    modality: str
    note: str
    estimate: ObtainedEstimate | None = None

    def to_dict(self) -> dict[str, Any]:
        e = self.estimate
        if e is None:
            return {"modality": self.modality, "estimate": None, "note": self.note}
        return {
            "modality": self.modality,
            "current": dict(e.current),
            "mean": dict(e.mean),
            "p10": dict(e.p10),
            "p90": dict(e.p90),
            "n_reference": e.n_reference,
            "n_candidates": e.n_candidates,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AbsentModality:
        estimate = None
        if data.get("mean"):
            estimate = ObtainedEstimate(
                dict(data["current"]),
                dict(data["mean"]),
                dict(data["p10"]),
                dict(data["p90"]),
                data["n_reference"],
                data["n_candidates"],
            )
        return cls(data["modality"], data.get("note", ""), estimate)


@dataclass
class WhatIfResult:
    patient_id: str
    tasks: list[str]
    available: list[str]
    subsets: list[SubsetRisks]  # every subset of the available modalities
    shapley: dict[str, dict[str, float]]  # modality -> task -> value; sums to risk(all) - risk(none)
    absent: list[AbsentModality] = field(default_factory=list)  # value of obtaining each absent modality

    def full(self) -> SubsetRisks:
        """The subset with every available modality."""
        return max(self.subsets, key=lambda s: len(s.modalities))

    def empty(self) -> SubsetRisks:
        """The subset with none of the optional modalities."""
        return min(self.subsets, key=lambda s: len(s.modalities))

    def subset(self, modalities: Sequence[str]) -> SubsetRisks:
        """The subset holding exactly `modalities` (every subset of the available ones is there)."""
        wanted = set(modalities)
        return next(s for s in self.subsets if set(s.modalities) == wanted)

    def removal_effects(self) -> dict[str, dict[str, float]]:
        """Per modality with a Shapley value, per task: what it adds on top of all the others, the risk with
        every available modality minus the risk without this one alone. It differs from the Shapley value
        when modalities overlap or interact: the Shapley value averages what a modality adds over every
        order in which the modalities could be added (so information two modalities share is split between
        them), removing one alone credits it only with what no other modality carries. Computed from the
        subsets already there (nothing stored, no model run)."""
        full = self.full()
        effects: dict[str, dict[str, float]] = {}
        for modality in self.shapley:
            without = self.subset([m for m in full.modalities if m != modality])
            effects[modality] = {t: full.risks[t] - without.risks[t] for t in self.tasks}
        return effects

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "tasks": list(self.tasks),
            "available": list(self.available),
            "subsets": [s.to_dict() for s in self.subsets],
            "shapley": {m: dict(v) for m, v in self.shapley.items()},
            "absent": [a.to_dict() for a in self.absent],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WhatIfResult:
        return cls(
            patient_id=data["patient_id"],
            tasks=list(data["tasks"]),
            available=list(data["available"]),
            subsets=[SubsetRisks.from_dict(s) for s in data["subsets"]],
            shapley={m: dict(v) for m, v in data["shapley"].items()},
            absent=[AbsentModality.from_dict(a) for a in data.get("absent", [])],
        )
