"""The fitted state of the distribution check: its settings and, per modality, what was fitted (the arrays
live in the detectors). Plain JSON through `to_dict` / `from_dict`, checked on load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mmnar_core.ood.detectors import ScoreScale
from mmnar_core.ood.image_stats import NAMES as STAT_NAMES
from mmnar_core.schema import ModalityKind


@dataclass(frozen=True)
class CheckSettings:
    level: float = 0.99  # each detector's threshold: this quantile of held-out training scores
    k: int = 10  # neighbours of the embedding distance
    max_reference: int = 1500  # training embeddings stored per modality (float16)
    max_calibration: int = 2000  # held-out training rows the embedding thresholds come from
    max_images: int = 1000  # training images decoded for the image statistics
    folds: int = 5  # cross-fitting folds of the Mahalanobis thresholds
    min_rows: int = 10  # fewer training patients with a modality: that modality is not checked
    seed: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckSettings:
        settings = cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        if not 0.5 <= settings.level < 1 or settings.k < 1 or settings.min_rows < 2 or settings.folds < 2:
            raise ValueError(f"settings out of range: {settings}")
        return settings


@dataclass
class ModalityFit:
    """What was fitted for one modality (the arrays are in the detectors)."""

    name: str
    kind: str  # a ModalityKind value
    encoder_id: str | None
    dim: int
    n_train: int  # training patients with the modality
    not_checked: str = ""  # why the modality has no fit ("" when it has one)
    scales: dict[str, ScoreScale] = field(default_factory=dict)  # detector -> held-out training scores
    columns: list[str] = field(default_factory=list)  # tabular: the encoder's output names
    stats: dict[str, list[float]] = field(default_factory=dict)  # image: center, scale, low, high per statistic
    reference: dict[str, Any] = field(default_factory=dict)  # embedding: n stored, how calibrated
    # tabular: share of training patients the range check flags when each is left out of the ranges
    range_false_alarms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "encoder_id": self.encoder_id,
            "dim": self.dim,
            "n_train": self.n_train,
            "not_checked": self.not_checked,
            "scales": {k: v.to_dict() for k, v in self.scales.items()},
            "columns": self.columns,
            "stats": self.stats,
            "reference": self.reference,
            "range_false_alarms": self.range_false_alarms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModalityFit:
        fit = cls(
            name=str(data["name"]),
            kind=ModalityKind(data["kind"]).value,
            encoder_id=data.get("encoder_id"),
            dim=int(data["dim"]),
            n_train=int(data["n_train"]),
            not_checked=str(data.get("not_checked", "")),
            scales={str(k): ScoreScale.from_dict(v) for k, v in dict(data.get("scales") or {}).items()},
            columns=[str(c) for c in data.get("columns") or []],
            stats={str(k): [float(x) for x in v] for k, v in dict(data.get("stats") or {}).items()},
            reference=dict(data.get("reference") or {}),
            range_false_alarms=None if data.get("range_false_alarms") is None else float(data["range_false_alarms"]),
        )
        if fit.stats and (
            set(fit.stats) != {"center", "scale", "low", "high"}
            or any(len(v) != len(STAT_NAMES) for v in fit.stats.values())
        ):
            raise ValueError(f"{fit.name}: stats must hold center, scale, low and high of {len(STAT_NAMES)} statistics")
        if fit.columns and len(fit.columns) != fit.dim:
            raise ValueError(f"{fit.name}: {len(fit.columns)} column names for {fit.dim} columns")
        return fit
