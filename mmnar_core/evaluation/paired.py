"""Paired comparisons of two models on the same test rows, over several training seeds.

Why paired: two models scored on one test set share its sampling noise, so the interval of their
difference is much narrower than the two marginal intervals suggest, and "better" must mean that
interval excludes 0. Each bootstrap resample draws one set of rows (stratified by label) and
evaluates every seed of both models on it; the statistic is the mean over seeds of (A - B). The
interval therefore covers test-set sampling for the seed-averaged difference; the spread between
seeds is reported beside it.

Two statistics: the AUROC difference, and (where true risks are known, on synthetic data) the
difference of the mean absolute error against the true risk, overall and per missingness pattern.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmnar_core.evaluation.bootstrap import percentile_interval, resample_indices
from mmnar_core.evaluation.metrics import resampled_metrics

DEFAULT_RESAMPLES = 1000


def verdict(low: float, high: float, higher_is_better: bool = True) -> str:
    """'better', 'worse' or 'tied' for A against B from the interval of A - B."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "n/a"
    if low > 0:
        return "better" if higher_is_better else "worse"
    if high < 0:
        return "worse" if higher_is_better else "better"
    return "tied"


def _check(y: np.ndarray, runs: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    if not len(runs):
        raise ValueError(f"{what}: give the predictions of at least one seed")
    out = [np.asarray(p, dtype=float).reshape(-1) for p in runs]
    if any(p.shape != y.shape for p in out):
        raise ValueError(f"{what}: every seed's predictions must have one value per test row ({y.size})")
    return out


def paired_auroc(
    y,
    runs_a: Sequence[np.ndarray],
    runs_b: Sequence[np.ndarray],
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """Mean over seeds of AUROC(A) - AUROC(B) on the same rows, with a paired stratified bootstrap interval.

    runs_a, runs_b: one probability vector per training seed (they may hold different seed counts)."""
    y = np.asarray(y).astype(int).reshape(-1)
    runs_a, runs_b = _check(y, runs_a, "model A"), _check(y, runs_b, "model B")
    indices = resample_indices(y, n_resamples, seed)
    everything = np.concatenate([np.arange(y.size)[None, :], indices], axis=0)

    def mean_auroc(runs):
        return np.mean([resampled_metrics(y, p, everything, "auroc")["auroc"] for p in runs], axis=0)

    a, b = mean_auroc(runs_a), mean_auroc(runs_b)
    difference = a - b
    low, high = percentile_interval(difference[1:], alpha)
    return {
        "a": float(a[0]),
        "b": float(b[0]),
        "difference": float(difference[0]),
        "low": low,
        "high": high,
        "verdict": verdict(low, high),
        "n": int(y.size),
        "n_pos": int(y.sum()),
        "seeds_a": len(runs_a),
        "seeds_b": len(runs_b),
    }


def paired_true_risk_error(
    true_risk,
    runs_a: Sequence[np.ndarray],
    runs_b: Sequence[np.ndarray],
    groups: np.ndarray | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    alpha: float = 0.05,
    min_n: int = 30,
) -> dict:
    """Mean |p - p_true| of A and of B (mean over seeds), their difference A - B with a paired bootstrap
    interval (negative = A closer to the truth), overall and per group (e.g. missingness pattern) with at
    least `min_n` rows. Rows are resampled without regard to labels: the error needs none."""
    truth = np.asarray(true_risk, dtype=float).reshape(-1)
    runs_a, runs_b = _check(truth, runs_a, "model A"), _check(truth, runs_b, "model B")
    error_a = np.mean([np.abs(p - truth) for p in runs_a], axis=0)
    error_b = np.mean([np.abs(p - truth) for p in runs_b], axis=0)

    def summary(rows: np.ndarray, salt: int) -> dict:
        rng = np.random.default_rng([seed, salt])
        draws = rng.integers(0, rows.size, size=(n_resamples, rows.size))
        diffs = (error_a[rows][draws] - error_b[rows][draws]).mean(axis=1)
        low, high = percentile_interval(diffs, alpha)
        a, b = float(error_a[rows].mean()), float(error_b[rows].mean())
        return {
            "a": a,
            "b": b,
            "difference": a - b,
            "ratio": a / b if b > 0 else float("nan"),
            "low": low,
            "high": high,
            "verdict": verdict(low, high, higher_is_better=False),
            "n": int(rows.size),
        }

    out = {"overall": summary(np.arange(truth.size), 0), "groups": {}}
    if groups is not None:
        groups = np.asarray(groups).reshape(-1)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            if rows.size >= min_n:
                out["groups"][str(g)] = summary(
                    rows, int(g) + 1 if np.issubdtype(groups.dtype, np.integer) else rows.size
                )
    return out
