"""Baselines and ablations the MMNAR model is measured against (`python -m mmnar_core benchmark-models`).

See docs/baselines.md for what each one is and why it is there.

The names below are imported on first use (`mmnar --help` lists this package's command without loading
torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmnar_core.lazy_exports import lazy_getattr

_EXPORTS = {
    "calibrate_and_evaluate": "mmnar_core.baselines.benchmark",
    "format_mean_sd": "mmnar_core.baselines.benchmark",
    "markdown_table": "mmnar_core.baselines.benchmark",
    "mean_sd": "mmnar_core.baselines.benchmark",
    "oracle_metrics": "mmnar_core.baselines.benchmark",
    "run_benchmark": "mmnar_core.baselines.benchmark",
    "summarise": "mmnar_core.baselines.benchmark",
    "GBTConfig": "mmnar_core.baselines.gbt",
    "GBTResult": "mmnar_core.baselines.gbt",
    "fit_gbt": "mmnar_core.baselines.gbt",
    "gbt_features": "mmnar_core.baselines.gbt",
    "ConcatMLP": "mmnar_core.baselines.mlp",
    "MODELS": "mmnar_core.baselines.models",
    "ModelSpec": "mmnar_core.baselines.models",
    "baseline_config": "mmnar_core.baselines.models",
    "builder": "mmnar_core.baselines.models",
    "fit_model": "mmnar_core.baselines.models",
    "spec_config": "mmnar_core.baselines.models",
}

__all__ = [
    "ConcatMLP",
    "GBTConfig",
    "GBTResult",
    "MODELS",
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

if TYPE_CHECKING:
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


__getattr__ = lazy_getattr(__name__, globals(), _EXPORTS)
