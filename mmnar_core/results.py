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

from mmnar_core.ood.report import DistributionReport

ALL_TASKS = "all"  # a task argument of the app's service and the model server: every outcome in one run


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
    # is the patient unlike the training data (mmnar_core.ood)? None: the bundle has no check (or the
    # prediction was saved before it existed)
    distribution: DistributionReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "patient_id": self.patient_id,
            "pattern": self.pattern,
            "pattern_name": self.pattern_name,
            "available": list(self.available),
            "missing": list(self.missing),
            "risks": [r.to_dict() for r in self.risks],
            "model_id": self.model_id,
            **({} if self.distribution is None else {"distribution": self.distribution.to_dict()}),
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
            distribution=DistributionReport.from_dict(data["distribution"]) if data.get("distribution") else None,
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
    """The risk per task today and, if the absent modality were obtained, the distribution of the risk over
    plausible contents of it given the patient's other data (mmnar_core.explain.conditional): its mean and
    10th / 90th percentiles, and a verdict line per task (mmnar_core.explain.absent_verdict)."""

    current: dict[str, float]
    mean: dict[str, float]
    p10: dict[str, float]
    p90: dict[str, float]
    n_reference: int  # the training patients the estimate comes from
    n_candidates: int  # the training patients of the reference set who had the modality
    verdict: dict[str, str] = field(default_factory=dict)  # task -> the verdict line ({} in older explanations)
    n_draws: int | None = None  # plausible contents scored (None in older explanations)


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
            **({"verdict": dict(e.verdict)} if e.verdict else {}),
            **({} if e.n_draws is None else {"n_draws": e.n_draws}),
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
                dict(data.get("verdict") or {}),
                data.get("n_draws"),
            )
        return cls(data["modality"], data.get("note", ""), estimate)


# the ordering split (mmnar_core.explain.ordering computes it): "it was obtained" vs "what it shows"
MISSING_NOTE = (
    "missing: the risk now minus the risk had it been obtained with reference content; not part of the additive "
    "waterfall (the risk already contains the absence) and not the value of obtaining it"
)


@dataclass
class ModalityParts:
    """An available modality's Shapley value split in two (per task, risk units; total = obtained + shows)."""

    modality: str
    obtained: dict[str, float]  # ordering part: Shapley value in the game with reference content
    shows: dict[str, float]  # content part: the patient's content vs the reference
    total: dict[str, float]  # the modality's Shapley value

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "obtained": dict(self.obtained),
            "shows": dict(self.shows),
            "total": dict(self.total),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModalityParts:
        return cls(data["modality"], dict(data["obtained"]), dict(data["shows"]), dict(data["total"]))


@dataclass
class MissingPart:
    """An absent modality: the risk now minus the risk had it been obtained with reference content."""

    modality: str
    effect: dict[str, float]  # v(available) - v(available + this one with reference content)
    risk_if_typical: dict[str, float]  # v(available + this one with reference content)

    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "effect": dict(self.effect), "risk_if_typical": dict(self.risk_if_typical)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MissingPart:
        return cls(data["modality"], dict(data["effect"]), dict(data["risk_if_typical"]))


@dataclass
class OrderingSplit:
    """The stacked waterfall: `none_risk` + sum(obtained) = `pattern_risk`; + sum(shows) = `risk`.
    `missing` stands beside it (see the module doc). `references`: modality -> which reference content."""

    tasks: list[str]
    available: list[str]
    none_risk: dict[str, float]  # no modality at all (the model's missing path for everything)
    pattern_risk: dict[str, float]  # this availability pattern with reference content everywhere
    risk: dict[str, float]  # the patient's risk (every available modality with its own content)
    parts: list[ModalityParts]
    missing: list[MissingPart] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)
    note: str = MISSING_NOTE

    def part(self, modality: str) -> ModalityParts:
        return next(p for p in self.parts if p.modality == modality)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": list(self.tasks),
            "available": list(self.available),
            "none_risk": dict(self.none_risk),
            "pattern_risk": dict(self.pattern_risk),
            "risk": dict(self.risk),
            "parts": [p.to_dict() for p in self.parts],
            "missing": [m.to_dict() for m in self.missing],
            "references": dict(self.references),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderingSplit:
        return cls(
            list(data["tasks"]),
            list(data["available"]),
            dict(data["none_risk"]),
            dict(data["pattern_risk"]),
            dict(data["risk"]),
            [ModalityParts.from_dict(p) for p in data["parts"]],
            [MissingPart.from_dict(m) for m in data.get("missing", [])],
            dict(data.get("references", {})),
            data.get("note", MISSING_NOTE),
        )


@dataclass
class WhatIfResult:
    patient_id: str
    tasks: list[str]
    available: list[str]
    subsets: list[SubsetRisks]  # every subset of the available modalities
    shapley: dict[str, dict[str, float]]  # modality -> task -> value; sums to risk(all) - risk(none)
    absent: list[AbsentModality] = field(default_factory=list)  # value of obtaining each absent modality
    ordering: OrderingSplit | None = None  # each Shapley value split: it was obtained / what it shows

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
            **({} if self.ordering is None else {"ordering": self.ordering.to_dict()}),
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
            ordering=OrderingSplit.from_dict(data["ordering"]) if data.get("ordering") else None,
        )
