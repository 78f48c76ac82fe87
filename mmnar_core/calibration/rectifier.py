"""The pattern rectifier: corrects the residual bias of each missingness pattern.

For one task, with held-out labelled rows (validation, cross-fitted train, or a new site, never
test): residual r_i = y_i - p_i; per pattern g the mean residual is shrunk by empirical Bayes along the
hierarchy pattern -> number of modalities present -> global, so a rare pattern borrows strength from
patterns with as many modalities, and those from everyone. The shrunk residual tau_g is turned into a
logit offset delta_g (the offset that moves the mean predicted risk of the group's rows by tau_g) and
applied as sigmoid(logit(p) + delta_g). The standard error of tau_g gives an interval for a patient's
rectified risk and, prediction-powered-inference style, for the pattern-level mean risk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmnar_core.numeric import logit as _logit
from mmnar_core.numeric import sigmoid as _sigmoid
from mmnar_core.patterns import decode_pattern, n_patterns

ALLOWED_FIT_SOURCES = ("val", "crossfit", "external")
Z_95 = 1.959964


class RectifierError(ValueError):
    """The rectifier was asked to do something that would bias it (e.g. fit on test labels)."""


def offset_for_shift(probs: np.ndarray, shift: float) -> float:
    """The logit offset d with mean(sigmoid(logit(p) + d)) = mean(p) + shift (bisection; monotone in d)."""
    if len(probs) == 0 or shift == 0.0:
        return 0.0
    logits = _logit(probs)
    target = float(np.clip(probs.mean() + shift, 1e-4, 1 - 1e-4))
    low, high = -12.0, 12.0
    for _ in range(60):
        middle = 0.5 * (low + high)
        if _sigmoid(logits + middle).mean() < target:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _between_variance(n: np.ndarray, means: np.ndarray, parent: np.ndarray, sigma2: float) -> float:
    """Method-of-moments (DerSimonian-Laird style) variance of group means around their parents."""
    total = n.sum()
    if len(n) < 2 or total <= 0:
        return 0.0
    q = float((n * (means - parent) ** 2).sum())
    denominator = total - (n**2).sum() / total
    if denominator <= 0:
        return 0.0
    return max(0.0, (q - (len(n) - 1) * sigma2) / denominator)


@dataclass
class _Level:
    tau: np.ndarray  # shrunk residual per group
    se: np.ndarray  # its standard error
    n: np.ndarray


def _shrink(n: np.ndarray, means: np.ndarray, parent_tau: np.ndarray, parent_se: np.ndarray, sigma2: float) -> _Level:
    observed = n > 0
    between = _between_variance(n[observed], means[observed], parent_tau[observed], sigma2)
    weight = np.where(observed, between / (between + sigma2 / np.maximum(n, 1)), 0.0)
    tau = parent_tau + weight * (np.where(observed, means, 0.0) - parent_tau)
    se = np.sqrt(weight * sigma2 / np.maximum(n, 1) + (1 - weight) ** 2 * parent_se**2)
    return _Level(tau, se, n)


class PatternRectifier:
    """Per-pattern residual correction for one task, with scikit-learn-like fit/transform."""

    def __init__(self, n_modalities: int):
        self.n_modalities = n_modalities
        self.fitted = False

    def fit(self, patterns: np.ndarray, probs: np.ndarray, labels: np.ndarray, source: str) -> "PatternRectifier":
        """Fit on held-out labelled rows. `source` says where they come from and may not be 'test'."""
        if source == "test":
            raise RectifierError("the rectifier must never be fit on the test split (it would leak test labels); "
                                 f"use one of {', '.join(ALLOWED_FIT_SOURCES)}")
        if source not in ALLOWED_FIT_SOURCES:
            raise RectifierError(f"fit source {source!r} is not accepted (accepted: {', '.join(ALLOWED_FIT_SOURCES)})")
        patterns, probs, labels = (np.asarray(a) for a in (patterns, probs, labels))
        if not len(patterns) == len(probs) == len(labels):
            raise RectifierError("patterns, probs and labels must have the same length")
        known = ~np.isnan(labels.astype(float))
        patterns, probs, labels = patterns[known].astype(np.int64), probs[known].astype(float), labels[known].astype(float)
        if len(labels) < 2:
            raise RectifierError(f"the rectifier needs labelled rows; got {len(labels)}")
        n_all = n_patterns(self.n_modalities)
        if patterns.min() < 0 or patterns.max() >= n_all:
            raise RectifierError(f"pattern ids must be in 0..{n_all - 1}")
        residual = labels - probs
        counts_of = np.asarray(decode_pattern(np.arange(n_all), self.n_modalities)).sum(axis=1)

        n_g = np.bincount(patterns, minlength=n_all).astype(float)
        mean_g = np.bincount(patterns, weights=residual, minlength=n_all) / np.maximum(n_g, 1)
        dof = max(len(residual) - int((n_g > 0).sum()), 1)
        sigma2 = float(((residual - mean_g[patterns]) ** 2).sum() / dof)
        sigma2 = max(sigma2, 1e-8)

        global_tau, global_se = residual.mean(), np.sqrt(sigma2 / len(residual))
        level_of_row = counts_of[patterns]
        n_k = np.bincount(level_of_row, minlength=self.n_modalities + 1).astype(float)
        mean_k = np.bincount(level_of_row, weights=residual, minlength=self.n_modalities + 1) / np.maximum(n_k, 1)
        levels = _shrink(n_k, mean_k, np.full_like(n_k, global_tau), np.full_like(n_k, global_se), sigma2)
        patterns_level = _shrink(n_g, mean_g, levels.tau[counts_of], levels.se[counts_of], sigma2)

        # offsets: computed on the rows the correction speaks for (the pattern's, else its level's, else all)
        self.tau = patterns_level.tau
        self.se = patterns_level.se
        self.n = n_g.astype(int)
        self.offset = np.zeros(n_all)
        self.offset_low = np.zeros(n_all)
        self.offset_high = np.zeros(n_all)
        for g in range(n_all):
            rows = probs[patterns == g]
            if len(rows) == 0:
                rows = probs[level_of_row == counts_of[g]]
            if len(rows) == 0:
                rows = probs
            self.offset[g] = offset_for_shift(rows, float(self.tau[g]))
            self.offset_low[g] = offset_for_shift(rows, float(self.tau[g] - Z_95 * self.se[g]))
            self.offset_high[g] = offset_for_shift(rows, float(self.tau[g] + Z_95 * self.se[g]))
        self.sigma2 = sigma2
        self.source = source
        self.n_fit = int(len(labels))
        self.fitted = True
        return self

    def _check(self, patterns: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise RectifierError("the rectifier is not fitted")
        patterns = np.asarray(patterns, dtype=np.int64)
        if patterns.size and (patterns.min() < 0 or patterns.max() >= len(self.offset)):
            raise RectifierError(f"pattern ids must be in 0..{len(self.offset) - 1}")
        return patterns

    def transform(self, patterns: np.ndarray, probs: np.ndarray) -> np.ndarray:
        patterns = self._check(patterns)
        return _sigmoid(_logit(np.asarray(probs, dtype=float)) + self.offset[patterns])

    def interval(self, patterns: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """95 % interval of the rectified risk from the uncertainty of the pattern's correction."""
        patterns = self._check(patterns)
        logits = _logit(np.asarray(probs, dtype=float))
        return _sigmoid(logits + self.offset_low[patterns]), _sigmoid(logits + self.offset_high[patterns])

    def pattern_mean_risk(self, patterns: np.ndarray, probs: np.ndarray) -> dict[int, dict]:
        """Prediction-powered estimate of each pattern's mean risk in a (possibly unlabelled) population:
        mean raw prediction + the pattern's labelled residual correction, with a 95 % interval whose
        variance adds the prediction mean's sampling variance and the correction's."""
        patterns = self._check(patterns)
        probs = np.asarray(probs, dtype=float)
        result = {}
        for g in np.unique(patterns):
            p = probs[patterns == g]
            estimate = p.mean() + self.tau[g]
            se = np.sqrt(p.var(ddof=1) / len(p) + self.se[g] ** 2) if len(p) > 1 else float(self.se[g])
            result[int(g)] = {"n": int(len(p)), "mean_raw": float(p.mean()), "mean_rectified": float(estimate),
                              "low": float(estimate - Z_95 * se), "high": float(estimate + Z_95 * se)}
        return result

    def to_dict(self) -> dict:
        if not self.fitted:
            raise RectifierError("the rectifier is not fitted")
        return {"n_modalities": self.n_modalities, "source": self.source, "n_fit": self.n_fit, "sigma2": self.sigma2,
                **{key: getattr(self, key).tolist() for key in ("tau", "se", "n", "offset", "offset_low", "offset_high")}}

    @classmethod
    def from_dict(cls, data: dict) -> "PatternRectifier":
        rectifier = cls(int(data["n_modalities"]))
        for key in ("tau", "se", "offset", "offset_low", "offset_high"):
            setattr(rectifier, key, np.asarray(data[key], dtype=float))
        rectifier.n = np.asarray(data["n"], dtype=int)
        if len(rectifier.offset) != n_patterns(rectifier.n_modalities):
            raise RectifierError("rectifier state does not match its number of modalities")
        rectifier.sigma2, rectifier.source, rectifier.n_fit = float(data["sigma2"]), data["source"], int(data["n_fit"])
        rectifier.fitted = True
        return rectifier
