"""Per-feature training reference of the structured data: quantiles and unit of each numeric feature, the
categories seen; and the findings a value outside them gives, in words.

Why: a clinician reads "creatinine 14.2 mg/dL is above every training value (0.3-9.8)" at once, and the
summary card shows a driver's value next to its training reference range (`FeatureRange.reference`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mmnar_core.ood.report import FeatureFinding
from mmnar_core.ood.words import label, number
from mmnar_core.schema import FeatureKind, FeatureSpec

# stored quantiles: name -> probability
QUANTILES = {"min": 0.0, "p1": 0.01, "p2.5": 0.025, "p50": 0.5, "p97.5": 0.975, "p99": 0.99, "max": 1.0}


def _unit(unit: str | None) -> str:
    """ " mg/dL"; nothing for a count, which reads better bare ("21 medications" is the label's job)."""
    return f" {unit}" if unit and unit.lower() not in ("count", "number", "n") else ""


@dataclass
class FeatureRange:
    """A feature's training reference: numeric quantiles (QUANTILES; None when no training patient had it
    recorded) or the training count of each category."""

    name: str
    kind: str
    label: str
    unit: str | None
    n: int  # training patients with a value
    quantiles: dict[str, float] | None = None
    categories: dict[str, int] | None = None

    @classmethod
    def fit(cls, feature: FeatureSpec, values: pd.Series) -> FeatureRange:
        present = values[values.notna()]
        name, kind, unit = feature.name, feature.kind.value, feature.unit
        if feature.kind is FeatureKind.CATEGORICAL:
            counts = {str(k): int(v) for k, v in sorted(present.astype(str).value_counts().items())}
            return cls(name, kind, label(feature), unit, int(len(present)), categories=counts)
        numbers = pd.to_numeric(present, errors="coerce").to_numpy(dtype=np.float64)
        numbers = numbers[np.isfinite(numbers)]
        if len(numbers) == 0:
            return cls(name, kind, label(feature), unit, 0)
        found = np.quantile(numbers, list(QUANTILES.values()))
        quantiles = {k: float(v) for k, v in zip(QUANTILES, found)}
        return cls(name, kind, label(feature), unit, int(len(numbers)), quantiles=quantiles)

    @property
    def reference(self) -> tuple[float, float] | None:
        """The central 95 % of training values (2.5th-97.5th percentile): the reference range to show."""
        return None if self.quantiles is None else (self.quantiles["p2.5"], self.quantiles["p97.5"])

    def finding(self, value: Any) -> FeatureFinding | None:
        """A FeatureFinding when `value` lies outside everything the training patients had, else None."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if self.kind == FeatureKind.CATEGORICAL.value:
            if str(value) in (self.categories or {}):
                return None
            seen = ", ".join(sorted(self.categories or {})) or "none"
            return FeatureFinding(
                self.name,
                value,
                None,
                "unseen_category",
                None,
                None,
                f"{self.label}: '{value}' is a category no training patient had (training: {seen})",
            )
        try:
            number_value = float(value)
        except (TypeError, ValueError):
            return None  # not a number: the input parsers and the encoder refuse it, not this check
        if not math.isfinite(number_value):
            return None
        shown = f"{number(number_value)}{_unit(self.unit)}"
        if self.quantiles is None:
            message = f"{self.label}: {shown} was given, but no training patient had it recorded"
            return FeatureFinding(self.name, value, self.unit, "never_recorded", None, None, message)
        low, high = self.quantiles["min"], self.quantiles["max"]
        if low <= number_value <= high:
            return None
        problem = "above" if number_value > high else "below"
        message = (
            f"{self.label}: {shown} is {problem} every training value ({number(low)}-{number(high)}{_unit(self.unit)})"
        )
        return FeatureFinding(self.name, value, self.unit, problem, low, high, message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "label": self.label,
            "unit": self.unit,
            "n": self.n,
            "quantiles": self.quantiles,
            "categories": self.categories,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureRange:
        kind = FeatureKind(data["kind"]).value
        quantiles = data.get("quantiles")
        if quantiles is not None:
            if set(quantiles) != set(QUANTILES):
                raise ValueError(f"feature {data['name']!r}: quantiles must be {', '.join(QUANTILES)}")
            quantiles = {k: float(quantiles[k]) for k in QUANTILES}
            ordered = list(quantiles.values())
            if not all(math.isfinite(v) for v in ordered) or any(b < a for a, b in zip(ordered, ordered[1:])):
                raise ValueError(f"feature {data['name']!r}: quantiles must be finite and non-decreasing")
        categories = data.get("categories")
        if categories is not None:
            categories = {str(k): int(v) for k, v in dict(categories).items()}
        return cls(str(data["name"]), kind, str(data["label"]), data.get("unit"), int(data["n"]), quantiles, categories)
