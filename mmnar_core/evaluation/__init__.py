"""Honest evaluation of risk predictions: discrimination, calibration and bootstrap intervals.

`metrics` holds the point metrics (AUROC, AUPRC, Brier, ECE, reliability curve); `bootstrap` holds the
stratified bootstrap intervals and the per-group (e.g. per missingness pattern) evaluation table.
"""

from .bootstrap import bootstrap_ci, evaluate_groups, resample_indices
from .metrics import (
    METRIC_NAMES,
    MetricInputError,
    ReliabilityCurve,
    auprc,
    auroc,
    brier,
    compute_metrics,
    ece,
    reliability_curve,
    resampled_metrics,
)

__all__ = [
    "METRIC_NAMES",
    "MetricInputError",
    "ReliabilityCurve",
    "auprc",
    "auroc",
    "bootstrap_ci",
    "brier",
    "compute_metrics",
    "ece",
    "evaluate_groups",
    "reliability_curve",
    "resample_indices",
    "resampled_metrics",
]
