"""Baselines and ablations the MMNAR model is measured against (`python -m mmnar_core benchmark-models`).

See docs/baselines.md for what each one is and why it is there.
"""

from mmnar_core.baselines.benchmark import (
    calibrate_and_evaluate,
    format_mean_sd,
    markdown_table,
    mean_sd,
    oracle_metrics,
    run_benchmark,
    summarise,
)
from mmnar_core.baselines.gbt import GBTConfig, GBTResult, fit_gbt, gbt_features
from mmnar_core.baselines.mlp import ConcatMLP
from mmnar_core.baselines.models import MODELS, ModelSpec, baseline_config, builder, fit_model, spec_config

__all__ = [
    "MODELS",
    "ConcatMLP",
    "GBTConfig",
    "GBTResult",
    "ModelSpec",
    "baseline_config",
    "builder",
    "calibrate_and_evaluate",
    "fit_gbt",
    "fit_model",
    "format_mean_sd",
    "gbt_features",
    "markdown_table",
    "mean_sd",
    "oracle_metrics",
    "run_benchmark",
    "spec_config",
    "summarise",
]
