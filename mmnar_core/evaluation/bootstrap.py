"""Bootstrap confidence intervals for the point metrics, overall and per group (e.g. missingness pattern).

Intervals are percentile intervals over resamples of the rows. The default is a stratified bootstrap:
positives and negatives are resampled separately, each keeping its count, so every resample has the
prevalence of the data and AUROC/AUPRC are defined in every resample. All resamples are evaluated at
once from per-score class counts (see `metrics`), in chunks that bound memory; the result does not
depend on the chunk size, only on the seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .metrics import (
    DEFAULT_N_BINS,
    METRIC_NAMES,
    MetricInputError,
    check_inputs,
    check_metric_names,
    check_n_bins,
    evaluate_rows,
    score_groups,
)

# Upper bound on resamples x rows held in one index matrix (about 16 MB of int64 indices per chunk).
CHUNK_ELEMENTS = 2_000_000
DEFAULT_MIN_N = 30


def _check_options(n_resamples: Any, alpha: Any) -> None:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise MetricInputError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if not isinstance(alpha, (int, float, np.floating)) or not 0.0 < alpha < 1.0:
        raise MetricInputError(
            f"alpha must be a number strictly between 0 and 1 (0.05 gives 95% intervals), got {alpha!r}"
        )


def _index_chunks(labels: np.ndarray, n_resamples: int, seed: int, stratified: bool) -> Iterator[np.ndarray]:
    """Yield (b, N) index matrices, b summing to n_resamples.

    Separate generators for positives and negatives keep the stream independent of the chunk size.
    """
    n = labels.size
    chunk = max(1, min(n_resamples, CHUNK_ELEMENTS // max(n, 1)))
    sizes = [chunk] * (n_resamples // chunk) + ([n_resamples % chunk] if n_resamples % chunk else [])
    if not stratified:
        rng = np.random.default_rng(seed)
        for b in sizes:
            yield rng.integers(0, n, size=(b, n))
        return
    strata = [np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)]
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)]
    for b in sizes:
        yield np.concatenate(
            [members[rng.integers(0, members.size, size=(b, members.size))] for members, rng in zip(strata, rngs)],
            axis=1,
        )


def resample_indices(y: Any, n_resamples: int = 1000, seed: int = 0, stratified: bool = True) -> np.ndarray:
    """The (n_resamples, N) row indices `bootstrap_ci` uses for this seed; for inspection and tests.

    Stratified rows list the resampled positives first, then the resampled negatives.
    """
    labels, _ = check_inputs(y, np.zeros(np.size(y)))
    _check_options(n_resamples, 0.05)
    if labels.size == 0:
        return np.zeros((n_resamples, 0), dtype=np.int64)
    return np.concatenate(list(_index_chunks(labels, n_resamples, seed, stratified)), axis=0)


def percentile_interval(samples: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval over the resamples where the metric is defined (NaN if none is)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(
    y: Any,
    p: Any,
    metric_names: str | Sequence[str] = METRIC_NAMES,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    stratified: bool = True,
    n_bins: int = DEFAULT_N_BINS,
) -> dict[str, dict[str, float | int]]:
    """Point value and (1 - alpha) percentile bootstrap interval for each named metric.

    Returns {metric: {"value", "low", "high", "n", "n_pos"}}. Without stratification a resample can hold
    one class only; such resamples are left out of the AUROC/AUPRC interval. Binned ECE is biased upward
    by resampling noise, so for a well-calibrated model on a small set the ECE interval can lie entirely
    above the point value; read it as "ECE is at most `high`", not as a symmetric error bar.
    """
    names = check_metric_names(metric_names)
    n_bins = check_n_bins(n_bins)
    _check_options(n_resamples, alpha)
    labels, probs = check_inputs(y, p)
    groups = score_groups(probs)
    point = evaluate_rows(labels, groups, np.arange(labels.size, dtype=np.int64)[None, :], names, n_bins)
    counts = {"n": int(labels.size), "n_pos": int(labels.sum())}
    if labels.size == 0:
        return {name: {"value": float("nan"), "low": float("nan"), "high": float("nan"), **counts} for name in names}
    chunks = [
        evaluate_rows(labels, groups, rows, names, n_bins)
        for rows in _index_chunks(labels, n_resamples, seed, stratified)
    ]
    result = {}
    for name in names:
        low, high = percentile_interval(np.concatenate([c[name] for c in chunks]), alpha)
        result[name] = {"value": float(point[name][0]), "low": low, "high": high, **counts}
    return result


# ---------------------------------------------------------------------------------------------- groups

RESULT_COLUMNS = ["level", "group", "metric", "value", "low", "high", "n", "n_pos", "note"]
RANKING_METRICS = ("auroc", "auprc")


def _group_rows(
    level: str,
    group: Any,
    labels: np.ndarray,
    probs: np.ndarray,
    names: tuple[str, ...],
    min_n: int,
    options: dict[str, Any],
) -> list[dict[str, Any]]:
    """Result rows for one set of patients; too-small sets are reported with NaN values and a note."""
    n, n_pos = int(labels.size), int(labels.sum())
    nan = float("nan")
    if n < min_n:
        stats = {name: {"value": nan, "low": nan, "high": nan} for name in names}
        notes = dict.fromkeys(names, f"too small: n={n} < min_n={min_n}; not evaluated")
    else:
        stats = bootstrap_ci(labels, probs, names, **options)
        one_class = f"one class only (n_pos={n_pos} of n={n}): AUROC/AUPRC undefined" if n_pos in (0, n) else ""
        notes = {name: one_class if name in RANKING_METRICS else "" for name in names}
    return [
        {
            "level": level,
            "group": group,
            "metric": name,
            "value": stats[name]["value"],
            "low": stats[name]["low"],
            "high": stats[name]["high"],
            "n": n,
            "n_pos": n_pos,
            "note": notes[name],
        }
        for name in names
    ]


def evaluate_groups(
    frame: pd.DataFrame,
    label_col: str,
    prob_col: str,
    group_col: str | None = None,
    metric_names: str | Sequence[str] = METRIC_NAMES,
    n_resamples: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    stratified: bool = True,
    n_bins: int = DEFAULT_N_BINS,
    min_n: int = DEFAULT_MIN_N,
) -> pd.DataFrame:
    """Metrics with bootstrap intervals overall and per value of `group_col`, one row per (group, metric).

    Columns: level ("overall" or "group"), group (the group value; None overall), metric, value, low,
    high, n, n_pos, note. Groups under `min_n` rows get NaN values and a note instead of an unstable
    number; one-class groups keep Brier/ECE but AUROC/AUPRC are NaN with a note. The whole frame is
    validated first, so bad data in any group raises rather than being skipped.
    """
    names = check_metric_names(metric_names)
    needed = [label_col, prob_col] + ([group_col] if group_col is not None else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise MetricInputError(f"column(s) {missing} not in the frame; available: {list(frame.columns)}")
    if isinstance(min_n, bool) or not isinstance(min_n, (int, np.integer)) or min_n < 1:
        raise MetricInputError(f"min_n must be a positive integer, got {min_n!r}")
    labels, probs = check_inputs(frame[label_col].to_numpy(), frame[prob_col].to_numpy())
    options = dict(n_resamples=n_resamples, seed=seed, alpha=alpha, stratified=stratified, n_bins=n_bins)
    rows = _group_rows("overall", None, labels, probs, names, min_n, options)
    if group_col is not None:
        positions = pd.Series(np.arange(len(frame)), index=frame.index)
        for group, members in positions.groupby(frame[group_col].to_numpy(), dropna=False, sort=True):
            take = members.to_numpy()
            key = group.item() if isinstance(group, np.generic) else group
            rows += _group_rows("group", key, labels[take], probs[take], names, min_n, options)
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    table["group"] = pd.Series([r["group"] for r in rows], dtype=object)  # keep None overall, ints as ints
    return table
