"""Point metrics for binary risk predictions: AUROC, AUPRC, Brier score, ECE and the reliability curve.

Every metric is computed from one summary of the data: the distinct predicted probabilities ("score
groups", ascending) and, per group, how many positives and negatives carry that score. A bootstrap
resample only changes those counts, so the same kernels evaluate the original data (one row of counts)
and a thousand resamples (a thousand rows) without sorting again; the point value and its bootstrap
distribution therefore come from one implementation.

Conventions:
- AUROC is the Mann-Whitney statistic: a tied positive/negative pair counts 1/2 (average ranks), which
  equals `sklearn.metrics.roc_auc_score`.
- AUPRC is average precision, sum over distinct thresholds of (recall step) x precision, which equals
  `sklearn.metrics.average_precision_score` (no interpolation).
- AUROC and AUPRC are NaN when the data hold only one class or nothing at all; Brier and ECE are NaN only
  for empty input.
- ECE and the reliability curve use `n_bins` equal-width bins; bin k holds k/n_bins <= p < (k+1)/n_bins,
  except that the last bin is closed on the right so p == 1.0 falls in it. A probability exactly on an
  inner edge, e.g. p = 0.2 with 5 bins, goes to the upper bin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METRIC_NAMES: tuple[str, ...] = ("auroc", "auprc", "brier", "ece")
DEFAULT_N_BINS = 15


class MetricInputError(ValueError):
    """Labels, probabilities or options a metric cannot accept; the message says what and what is accepted."""


# ---------------------------------------------------------------------------------------------- checks


def _as_vector(values: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise MetricInputError(f"{what} must be numbers, got values that cannot be converted to float") from None
    if array.ndim != 1:
        raise MetricInputError(f"{what} must be a 1-D sequence, got an array of shape {array.shape}")
    return array


def check_inputs(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate labels and probabilities; return them as int64 labels and float64 probabilities.

    Raises before any computation so a bad column never yields a plausible-looking number.
    """
    labels = _as_vector(y, "labels")
    probs = _as_vector(p, "probabilities")
    if labels.shape != probs.shape:
        raise MetricInputError(
            f"labels and probabilities must have the same length, got {labels.size} labels and "
            f"{probs.size} probabilities"
        )
    bad_label = ~np.isin(labels, (0.0, 1.0))
    if bad_label.any():
        examples = ", ".join(f"{v:g}" for v in np.unique(labels[bad_label])[:5])
        raise MetricInputError(
            f"labels must be 0 or 1 (booleans or 0/1 numbers); {int(bad_label.sum())} value(s) are not, "
            f"e.g. {examples} (first at position {int(np.argmax(bad_label))})"
        )
    missing = np.isnan(probs)
    if missing.any():
        raise MetricInputError(
            f"probabilities must not be NaN; {int(missing.sum())} are (first at position {int(np.argmax(missing))})"
        )
    outside = (probs < 0.0) | (probs > 1.0)
    if outside.any():
        raise MetricInputError(
            f"probabilities must be in [0, 1]; {int(outside.sum())} value(s) are outside, "
            f"min {probs.min():g}, max {probs.max():g} (first at position {int(np.argmax(outside))})"
        )
    return labels.astype(np.int64), probs


def check_n_bins(n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise MetricInputError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def check_metric_names(metric_names: str | Sequence[str]) -> tuple[str, ...]:
    """A single name or a sequence of names, each one of METRIC_NAMES."""
    names = (metric_names,) if isinstance(metric_names, str) else tuple(metric_names)
    if not names:
        raise MetricInputError(f"metric_names must name at least one metric; accepted: {', '.join(METRIC_NAMES)}")
    unknown = [n for n in names if n not in METRIC_NAMES]
    if unknown:
        raise MetricInputError(f"unknown metric name(s) {unknown}; accepted: {', '.join(METRIC_NAMES)}")
    if len(set(names)) != len(names):
        raise MetricInputError(f"metric_names contains duplicates: {list(names)}")
    return names


# ---------------------------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class ScoreGroups:
    """Distinct probabilities (ascending) and each row's group index, computed once per data set."""

    scores: np.ndarray  # (G,) distinct probabilities, ascending
    group_of_row: np.ndarray  # (N,) index into `scores`


def score_groups(p: np.ndarray) -> ScoreGroups:
    scores, inverse = np.unique(p, return_inverse=True)
    return ScoreGroups(scores, inverse.reshape(-1))


def class_counts(groups: ScoreGroups, y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positives and negatives per score group for each row of an index matrix.

    rows: (B, K) indices into the data (one resample per row). Returns two (B, G) int64 arrays.
    """
    n_groups = groups.scores.size
    batch = rows.shape[0]
    key = groups.group_of_row[rows] * 2 + y[rows]  # (B, K): group and class in one integer
    key += (np.arange(batch, dtype=np.int64) * (2 * n_groups))[:, None]
    counts = np.bincount(key.ravel(), minlength=batch * 2 * n_groups).reshape(batch, n_groups, 2)
    return counts[:, :, 1], counts[:, :, 0]


# ---------------------------------------------------------------------------------------------- kernels
# Each kernel takes the ascending distinct scores (G,) and positive / negative counts (B, G) and returns
# one value per row (B,).


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _auroc_kernel(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray, n_bins: int) -> np.ndarray:
    """Mann-Whitney: each positive beats the negatives below its score and half-ties those at it."""
    neg_below = np.cumsum(neg, axis=1) - neg
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    return _safe_ratio(wins, pos.sum(axis=1) * neg.sum(axis=1).astype(np.float64))


def _auprc_kernel(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray, n_bins: int) -> np.ndarray:
    """Average precision: at each distinct threshold, recall step (its positives) times precision."""
    true_pos = np.cumsum(pos[:, ::-1], axis=1)[:, ::-1]  # positives scored >= this group's score
    flagged = true_pos + np.cumsum(neg[:, ::-1], axis=1)[:, ::-1]
    precision = np.divide(true_pos, flagged, out=np.zeros(pos.shape), where=flagged > 0)
    n_pos = pos.sum(axis=1)
    both_classes = (n_pos > 0) & (neg.sum(axis=1) > 0)
    return np.where(both_classes, _safe_ratio((pos * precision).sum(axis=1), n_pos), np.nan)


def _brier_kernel(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray, n_bins: int) -> np.ndarray:
    squared_error = pos * (1.0 - scores) ** 2 + neg * scores**2
    return _safe_ratio(squared_error.sum(axis=1), (pos + neg).sum(axis=1))


def bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each probability; edges k/n_bins, inner edges go up, 1.0 joins the last bin."""
    edges = np.arange(n_bins + 1) / n_bins
    return np.minimum(np.searchsorted(edges, p, side="right") - 1, n_bins - 1)


def _binned_sums(
    scores: np.ndarray, pos: np.ndarray, neg: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: row count, sum of predicted probabilities, number of positives; each (B, n_bins)."""
    bins = bin_index(scores, n_bins)  # ascending scores give ascending, contiguous bins
    occupied, starts = np.unique(bins, return_index=True)
    shape = (pos.shape[0], n_bins)
    count, predicted, positives = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    if scores.size:
        rows = pos + neg
        count[:, occupied] = np.add.reduceat(rows, starts, axis=1)
        predicted[:, occupied] = np.add.reduceat(rows * scores, starts, axis=1)
        positives[:, occupied] = np.add.reduceat(pos, starts, axis=1)
    return count, predicted, positives


def _ece_kernel(scores: np.ndarray, pos: np.ndarray, neg: np.ndarray, n_bins: int) -> np.ndarray:
    """sum_b (n_b / n) |mean(y)_b - mean(p)_b| simplifies to sum_b |sum(y)_b - sum(p)_b| / n."""
    count, predicted, positives = _binned_sums(scores, pos, neg, n_bins)
    return _safe_ratio(np.abs(positives - predicted).sum(axis=1), count.sum(axis=1))


KERNELS: dict[str, Callable[..., np.ndarray]] = {
    "auroc": _auroc_kernel,
    "auprc": _auprc_kernel,
    "brier": _brier_kernel,
    "ece": _ece_kernel,
}


# ---------------------------------------------------------------------------------------------- public


def evaluate_rows(
    labels: np.ndarray, groups: ScoreGroups, rows: np.ndarray, names: Sequence[str], n_bins: int
) -> dict[str, np.ndarray]:
    """Named metrics for each row of the (B, K) index matrix `rows`, on already validated data."""
    pos, neg = class_counts(groups, labels, rows)
    return {name: KERNELS[name](groups.scores, pos, neg, n_bins) for name in names}


def _all_rows(labels: np.ndarray) -> np.ndarray:
    return np.arange(labels.size, dtype=np.int64)[None, :]


def _point(name: str, y: Any, p: Any, n_bins: int = DEFAULT_N_BINS) -> float:
    labels, probs = check_inputs(y, p)
    return float(evaluate_rows(labels, score_groups(probs), _all_rows(labels), (name,), n_bins)[name][0])


def auroc(y: Any, p: Any) -> float:
    """Area under the ROC curve (ties count 1/2); NaN if only one class is present or input is empty."""
    return _point("auroc", y, p)


def auprc(y: Any, p: Any) -> float:
    """Average precision (area under the precision-recall curve, step-wise); NaN if only one class."""
    return _point("auprc", y, p)


def brier(y: Any, p: Any) -> float:
    """Mean squared difference between probability and outcome; NaN for empty input."""
    return _point("brier", y, p)


def ece(y: Any, p: Any, n_bins: int = DEFAULT_N_BINS) -> float:
    """Expected calibration error over equal-width bins (see module docstring); NaN for empty input."""
    return _point("ece", y, p, check_n_bins(n_bins))


def compute_metrics(
    y: Any, p: Any, metric_names: str | Sequence[str] = METRIC_NAMES, n_bins: int = DEFAULT_N_BINS
) -> dict[str, float]:
    """Several point metrics at once, validating and grouping the data only once."""
    names = check_metric_names(metric_names)
    labels, probs = check_inputs(y, p)
    values = evaluate_rows(labels, score_groups(probs), _all_rows(labels), names, check_n_bins(n_bins))
    return {name: float(values[name][0]) for name in names}


def resampled_metrics(
    y: Any,
    p: Any,
    indices: np.ndarray,
    metric_names: str | Sequence[str] = METRIC_NAMES,
    n_bins: int = DEFAULT_N_BINS,
) -> dict[str, np.ndarray]:
    """Metrics of many resamples at once: row b of `indices` (B, K) selects the rows of resample b.

    Equivalent to calling each metric on (y[indices[b]], p[indices[b]]) for every b, in one pass.
    """
    names = check_metric_names(metric_names)
    n_bins = check_n_bins(n_bins)
    labels, probs = check_inputs(y, p)
    rows = np.asarray(indices)
    if rows.ndim != 2 or not np.issubdtype(rows.dtype, np.integer):
        raise MetricInputError(f"indices must be a 2-D integer array (resamples x rows), got {rows.dtype} {rows.shape}")
    if rows.size and (rows.min() < 0 or rows.max() >= labels.size):
        raise MetricInputError(f"indices must be in 0..{labels.size - 1}, got {rows.min()}..{rows.max()}")
    return evaluate_rows(labels, score_groups(probs), rows.astype(np.int64), names, n_bins)


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin data for a reliability diagram; all bins are listed, empty ones with NaN means."""

    bin_lower: np.ndarray
    bin_upper: np.ndarray
    count: np.ndarray  # rows per bin (int)
    mean_predicted: np.ndarray  # mean probability per bin, NaN if empty
    observed_rate: np.ndarray  # fraction of positives per bin, NaN if empty

    def to_dict(self) -> dict[str, list]:
        """JSON-ready lists; NaN (empty bin) becomes None because JSON has no NaN."""

        def clean(values: np.ndarray) -> list:
            return [None if np.isnan(v) else float(v) for v in values]

        return {
            "bin_lower": self.bin_lower.tolist(),
            "bin_upper": self.bin_upper.tolist(),
            "count": self.count.tolist(),
            "mean_predicted": clean(self.mean_predicted),
            "observed_rate": clean(self.observed_rate),
        }


def reliability_curve(y: Any, p: Any, n_bins: int = DEFAULT_N_BINS) -> ReliabilityCurve:
    """Count, mean predicted probability and observed positive rate per equal-width bin."""
    n_bins = check_n_bins(n_bins)
    labels, probs = check_inputs(y, p)
    groups = score_groups(probs)
    pos, neg = class_counts(groups, labels, _all_rows(labels))
    count, predicted, positives = (a[0] for a in _binned_sums(groups.scores, pos, neg, n_bins))
    edges = np.arange(n_bins + 1) / n_bins
    return ReliabilityCurve(
        bin_lower=edges[:-1],
        bin_upper=edges[1:],
        count=count.astype(np.int64),
        mean_predicted=_safe_ratio(predicted, count),
        observed_rate=_safe_ratio(positives, count),
    )
