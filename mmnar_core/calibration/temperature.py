"""Temperature scaling per task (fit on validation logits): p = sigmoid(logit / T)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


class TemperatureScaler:
    """One temperature per task; NaN labels are ignored when fitting."""

    def __init__(self, temperatures: list[float] | None = None):
        self.temperatures: np.ndarray | None = None if temperatures is None else np.asarray(temperatures, dtype=float)

    def fit(self, logits: np.ndarray, labels: np.ndarray) -> TemperatureScaler:
        logits, labels = np.asarray(logits, dtype=float), np.asarray(labels, dtype=float)
        if logits.shape != labels.shape or logits.ndim != 2:
            raise ValueError(f"logits and labels must both be (rows, tasks); got {logits.shape} and {labels.shape}")
        temperatures = []
        for t in range(logits.shape[1]):
            known = ~np.isnan(labels[:, t])
            if known.sum() < 2 or len(np.unique(labels[known, t])) < 2:
                temperatures.append(1.0)
                continue
            fit = minimize_scalar(
                lambda log_t: _nll(logits[known, t], labels[known, t], np.exp(log_t)),  # noqa: B023 (called here)
                bounds=(-3.0, 3.0),
                method="bounded",
            )
            temperatures.append(float(np.exp(fit.x)))
        self.temperatures = np.asarray(temperatures)
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """Scaled logits (rows, tasks)."""
        if self.temperatures is None:
            raise ValueError("the temperature scaler is not fitted")
        return np.asarray(logits, dtype=float) / self.temperatures

    def to_dict(self) -> dict:
        if self.temperatures is None:
            raise ValueError("the temperature scaler is not fitted")
        return {"temperatures": self.temperatures.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> TemperatureScaler:
        return cls(list(data["temperatures"]))
