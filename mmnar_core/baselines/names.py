"""The names of the models `benchmark-models` runs, without importing them: the command line lists them in
`mmnar --help`, which should not load torch. `models.MODELS` holds the models themselves, in this order
(tests/test_baselines.py checks the two agree)."""

from __future__ import annotations

MODEL_NAMES = (
    "mmnar",
    "mmnar_no_rectifier",
    "mmnar_single",
    "mmnar_no_wide",
    "mmnar_wide_only",
    "mmnar_ensemble5",
    "mmnar_no_gating",
    "mmnar_no_pattern_embedding",
    "mmnar_no_reconstruction",
    "mmnar_no_contrastive",
    "concat_zero_fill",
    "concat_mask",
    "concat_dropout",
    "structured_only",
    "hgb",
    "logistic",
    "lightgbm",
)
DEFAULT_MODALITY_DROPOUT = 0.3  # drop rate of the concat_dropout baseline
