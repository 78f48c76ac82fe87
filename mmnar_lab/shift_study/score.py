"""Scores against the true risk, and paired bootstrap intervals of differences and ratios between arms.

Error: mean |p - p_true| over the test rows (the issue's figure), and the root mean squared error: a
calibrated risk is the mean of the true risks of patients like this one, which minimises the squared
error, while the absolute error favours their median, so a correct recalibration can raise the absolute
error when true risks vary widely among patients with the same record. Pattern bias: the unweighted mean, over availability
patterns with at least `min_n` test rows, of |mean p - mean p_true| in the pattern (the bias a
per-pattern correction is for, free of label noise). Coverage: the share of rows whose interval holds
p_true. Every statistic of an arm is averaged over training seeds; a bootstrap resample draws one set of
test rows (multinomial weights) and evaluates every seed of both arms on it, so the interval is paired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmnar_core.evaluation.paired import verdict

MIN_PATTERN_ROWS = 50


@dataclass
class Resampler:
    """Multinomial bootstrap weights over the test rows (row 0 of `weights` is the original sample)."""

    weights: np.ndarray  # (1 + B, n)
    onehot: np.ndarray  # (n, G) patterns with at least MIN_PATTERN_ROWS rows
    patterns: np.ndarray  # the G pattern ids

    @classmethod
    def make(cls, patterns: np.ndarray, n_resamples: int, seed: int, min_n: int = MIN_PATTERN_ROWS) -> Resampler:
        n = len(patterns)
        rng = np.random.default_rng([seed, 77])
        draws = rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(np.float32)
        weights = np.vstack([np.ones((1, n), np.float32), draws])
        ids, counts = np.unique(patterns, return_counts=True)
        kept = ids[counts >= min_n]
        return cls(weights, (patterns[:, None] == kept[None, :]).astype(np.float32), kept)

    def error(self, runs: list[np.ndarray], truth: np.ndarray) -> np.ndarray:
        """(1 + B,) mean |p - truth|, averaged over the runs (seeds)."""
        per_row = np.mean([np.abs(p - truth) for p in runs], axis=0)
        return self.weights @ per_row / self.weights.sum(axis=1)

    def rmse(self, runs: list[np.ndarray], truth: np.ndarray) -> np.ndarray:
        """(1 + B,) root mean squared p - truth, the squared error averaged over the runs (seeds)."""
        per_row = np.mean([(p - truth) ** 2 for p in runs], axis=0)
        return np.sqrt(self.weights @ per_row / self.weights.sum(axis=1))

    def pattern_bias(self, runs: list[np.ndarray], truth: np.ndarray) -> np.ndarray:
        """(1 + B,) mean over patterns of |mean p - mean truth|, averaged over the runs."""
        if self.onehot.shape[1] == 0:
            return np.full(self.weights.shape[0], np.nan)
        sizes = self.weights @ self.onehot
        out = []
        for p in runs:
            gaps = self.weights @ (self.onehot * (p - truth)[:, None])
            out.append(np.nanmean(np.abs(gaps / np.maximum(sizes, 1e-9)), axis=1))
        return np.mean(out, axis=0)

    def coverage(self, inside: list[np.ndarray]) -> np.ndarray:
        per_row = np.mean([np.asarray(x, dtype=float) for x in inside], axis=0)
        return self.weights @ per_row / self.weights.sum(axis=1)


def compare(a: np.ndarray, b: np.ndarray, lower_is_better: bool = True, alpha: float = 0.05) -> dict:
    """A against B from their resampled statistics: difference A - B and ratio A / B with percentile
    intervals, and the verdict for A from the difference's interval."""
    difference = a - b
    ratio = a / np.where(b == 0, np.nan, b)
    low, high = np.nanpercentile(difference[1:], [100 * alpha / 2, 100 * (1 - alpha / 2)])
    ratio_low, ratio_high = np.nanpercentile(ratio[1:], [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {
        "a": float(a[0]),
        "b": float(b[0]),
        "difference": float(difference[0]),
        "low": float(low),
        "high": float(high),
        "ratio": float(ratio[0]),
        "ratio_low": float(ratio_low),
        "ratio_high": float(ratio_high),
        "verdict": verdict(float(low), float(high), higher_is_better=not lower_is_better),
    }


def interval_summary(values: np.ndarray, alpha: float = 0.05) -> dict:
    low, high = np.nanpercentile(values[1:], [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"value": float(values[0]), "low": float(low), "high": float(high)}
