"""Structured features -> one fixed-length float vector, with a scikit-learn-like fit/transform.

Numeric: (x - median) / (IQR / 1.349) from the training split only, clipped to [-clip, clip], missing
-> 0 plus a 0/1 missing indicator (missingness is informative here, so it is a feature, not a hole).
Binary: 0/1, missing -> 0 plus indicator. Categorical: one-hot over the schema's categories, an
`<unknown>` column for a value the schema does not list (a new site's new code; older states instead
refuse it or leave the one-hot empty, see TabularEncoderConfig.unknown_category) and a missing column.
The fitted state is plain JSON (floats round-trip exactly), saved beside the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmnar_core.atomic_write import write_text_atomic
from mmnar_core.encoders.config import TabularEncoderConfig
from mmnar_core.encoders.errors import EncoderStateError, TabularInputError
from mmnar_core.schema import FeatureKind, FeatureSpec

STATE_FORMAT = "mmnar-tabular-encoder/1"
UNKNOWN_LEVEL = "<unknown>"
MISSING_LEVEL = "<missing>"
IQR_TO_SD = 1.349  # IQR of a standard normal: robust-scaled normal data has unit spread


class TabularEncoder:
    """fit(frame) on the training split, transform(frame) anywhere, save/load as JSON."""

    def __init__(self, features: Sequence[FeatureSpec], config: TabularEncoderConfig = TabularEncoderConfig()):
        if not features:
            raise TabularInputError("a tabular encoder needs at least one feature")
        self.features = list(features)
        self.config = config
        self.center: dict[str, float] = {}
        self.scale: dict[str, float] = {}
        self.fit_info: dict[str, Any] = {}

    @property
    def fitted(self) -> bool:
        numeric = [f.name for f in self.features if f.kind is FeatureKind.NUMERIC]
        return all(name in self.center for name in numeric) and bool(self.fit_info)

    @property
    def unknown_level(self) -> bool:
        """Whether a categorical value outside the schema gets its own `<unknown>` column."""
        return self.config.unknown_category == "unknown"

    def levels(self, feature: FeatureSpec) -> list[str]:
        """The one-hot levels of a categorical feature, in column order."""
        assert feature.categories is not None, f"feature {feature.name!r} is not categorical"
        return [*feature.categories, *([UNKNOWN_LEVEL] if self.unknown_level else []), MISSING_LEVEL]

    @property
    def output_names(self) -> list[str]:
        names = []
        for f in self.features:
            if f.kind is FeatureKind.CATEGORICAL:
                names += [f"{f.name}={c}" for c in self.levels(f)]
            else:
                names.append(f.name)
                if self.config.missing_indicators:
                    names.append(f"{f.name}:missing")
        return names

    @property
    def dim(self) -> int:
        return len(self.output_names)

    def fit(self, frame: pd.DataFrame, info: Mapping[str, Any] | None = None) -> TabularEncoder:
        """Learn medians and scales from `frame`, which must be the training split only."""
        self._check_columns(frame)
        if len(frame) == 0:
            raise TabularInputError("cannot fit a tabular encoder on zero rows")
        for f in self.features:
            if f.kind is not FeatureKind.NUMERIC:
                continue
            values = pd.to_numeric(frame[f.name], errors="coerce").to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            if len(values) == 0:
                center, scale = 0.0, 1.0  # never observed in training: only its missing indicator informs
            else:
                q25, center, q75 = np.quantile(values, [0.25, 0.5, 0.75])
                scale = (q75 - q25) / IQR_TO_SD
                if not scale > 0:
                    scale = float(np.std(values))
                if not scale > 0:
                    scale = 1.0
            self.center[f.name], self.scale[f.name] = float(center), float(scale)
        self.fit_info = {"rows": int(len(frame)), **dict(info or {})}
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """(N, dim) float32 in the order of `output_names`."""
        if not self.fitted:
            raise EncoderStateError("the tabular encoder is not fitted; call fit on the training split or load a state")
        self._check_columns(frame)
        columns = []
        clip = self.config.clip
        for f in self.features:
            raw = frame[f.name]
            if f.kind is FeatureKind.CATEGORICAL:
                columns.extend(self._one_hot(f, raw))
                continue
            values = self._numbers(f, raw)
            missing = ~np.isfinite(values)
            if f.kind is FeatureKind.NUMERIC:
                scaled = np.clip((values - self.center[f.name]) / self.scale[f.name], -clip, clip)
            else:
                bad = ~missing & ~np.isin(values, (0.0, 1.0))
                if bad.any():
                    raise TabularInputError(
                        f"binary feature {f.name!r}: value {float(values[bad][0])!r} (accepted: 0, 1 or missing)"
                    )
                scaled = values
            columns.append(np.where(missing, 0.0, scaled))
            if self.config.missing_indicators:
                columns.append(missing.astype(np.float64))
        return np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((len(frame), 0), np.float32)

    def fit_transform(self, frame: pd.DataFrame, info: Mapping[str, Any] | None = None) -> np.ndarray:
        return self.fit(frame, info).transform(frame)

    def unknown_counts(self, frame: pd.DataFrame) -> dict[str, dict[str, int]]:
        """{feature: {value: rows}} of categorical values the schema does not list (features without any
        are left out), so a new site sees which of its codes the model treats as unknown."""
        self._check_columns(frame)
        counts: dict[str, dict[str, int]] = {}
        for f in self.features:
            if f.kind is not FeatureKind.CATEGORICAL:
                continue
            raw = frame[f.name]
            values = raw[raw.notna()].astype(str)
            unseen = values[~values.isin(f.categories)].value_counts()
            if len(unseen):
                counts[f.name] = {
                    str(v): int(n) for v, n in sorted(unseen.items(), key=lambda item: (-item[1], item[0]))
                }
        return counts

    def transform_record(self, values: Mapping[str, Any]) -> np.ndarray:
        """One patient's {feature: value} (None = not measured) -> (dim,) vector."""
        unknown = sorted(set(values) - {f.name for f in self.features})
        if unknown:
            raise TabularInputError(f"unknown feature(s) {unknown} (accepted: {[f.name for f in self.features]})")
        frame = pd.DataFrame([{f.name: values.get(f.name) for f in self.features}])
        return self.transform(frame)[0]

    def _check_columns(self, frame: pd.DataFrame) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise TabularInputError(f"expected a pandas DataFrame, got {type(frame).__name__}")
        missing = [f.name for f in self.features if f.name not in frame.columns]
        if missing:
            raise TabularInputError(f"missing feature column(s) {missing}; every feature of the schema needs a column")

    def _numbers(self, f: FeatureSpec, raw: pd.Series) -> np.ndarray:
        numbers = pd.to_numeric(raw, errors="coerce")
        wrong = raw.notna() & numbers.isna()
        if wrong.any():
            raise TabularInputError(
                f"feature {f.name!r}: {raw[wrong].iloc[0]!r} is not a number (accepted: a number or missing)"
            )
        return numbers.to_numpy(dtype=np.float64, na_value=np.nan)

    def _one_hot(self, f: FeatureSpec, raw: pd.Series) -> list[np.ndarray]:
        categories = f.categories
        assert categories is not None, f"feature {f.name!r} is not categorical"
        values = raw.astype("object").where(raw.notna(), None)
        known = set(categories)
        unknown = [v for v in values if v is not None and str(v) not in known]
        if unknown and self.config.unknown_category == "error":
            raise TabularInputError(
                f"feature {f.name!r}: {unknown[0]!r} is not a category (accepted: {list(categories)})"
            )
        as_text = [None if v is None else str(v) for v in values]
        columns = [np.array([v == c for v in as_text], dtype=np.float64) for c in categories]
        if self.unknown_level:
            columns.append(np.array([v is not None and v not in known for v in as_text], dtype=np.float64))
        columns.append(np.array([v is None for v in as_text], dtype=np.float64))
        return columns

    def state_dict(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "config": self.config.to_dict(),
            "features": [f.to_dict() for f in self.features],
            "center": self.center,
            "scale": self.scale,
            "fit_info": self.fit_info,
            "output_names": self.output_names,
        }

    def save(self, path: str | Path) -> Path:
        if not self.fitted:
            raise EncoderStateError("refusing to save an unfitted tabular encoder")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, json.dumps(self.state_dict(), indent=2, allow_nan=False) + "\n")

    @classmethod
    def from_state(cls, state: Mapping[str, Any], where: str = "tabular state") -> TabularEncoder:
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise EncoderStateError(f"{where}: not a tabular encoder state (expected format {STATE_FORMAT!r})")
        try:
            encoder = cls(
                [FeatureSpec.from_dict(f) for f in state["features"]], TabularEncoderConfig.from_dict(state["config"])
            )
            encoder.center = {k: float(v) for k, v in state["center"].items()}
            encoder.scale = {k: float(v) for k, v in state["scale"].items()}
            encoder.fit_info = dict(state["fit_info"])
        except (KeyError, TypeError, ValueError) as error:
            raise EncoderStateError(f"{where}: malformed ({type(error).__name__}: {error})") from None
        if not encoder.fitted or any(not (math.isfinite(s) and s > 0) for s in encoder.scale.values()):
            raise EncoderStateError(f"{where}: incomplete or invalid fitted statistics")
        if state.get("output_names") != encoder.output_names:
            raise EncoderStateError(f"{where}: output_names do not match the features and config")
        return encoder

    @classmethod
    def load(cls, path: str | Path) -> TabularEncoder:
        path = Path(path)
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise EncoderStateError(f"{path}: not valid JSON ({error})") from None
        return cls.from_state(state, str(path))
