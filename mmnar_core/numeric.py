"""The logistic link and the ensemble summary, in one place (simulator, calibration, evaluation, predictor)."""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def logit(p, eps: float = 1e-6):
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return np.log(p) - np.log1p(-p)


def members_mean_and_spread(members) -> tuple[np.ndarray, np.ndarray]:
    """(K, B, T) member logits -> (B, T) mean (the logits the model predicts) and (B, T) standard deviation
    across members (the model's own uncertainty in the intervals; 0 for a single member)."""
    members = np.asarray(members, dtype=float)
    spread = members.std(axis=0, ddof=1) if members.shape[0] > 1 else np.zeros(members.shape[1:])
    return members.mean(axis=0), spread
