"""The strongest simple references a practitioner would use, on exactly the inputs our model sees:

- L2 logistic regression (scikit-learn): each modality's embedding standardised per feature on train,
  zero where absent, plus the 0/1 availability flags; C chosen per task by validation log loss.
- LightGBM: the gradient-boosting features (absent modalities NaN, routed natively; the mask as
  columns), a small grid over tree size and leaf size, early stopping on validation; the grid point
  with the lowest validation log loss wins, per task.

Both are fit on labelled train rows only; validation picks hyperparameters and stopping; test is used
for nothing. They return log-odds, so temperature scaling and the rectifier apply exactly as to ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmnar_core.baselines.gbt import gbt_features
from mmnar_core.training.data import ModelData
from mmnar_core.training.logistic import fit_l2_logistic, log_loss, prior_logit


def _labelled(data: ModelData, rows: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    labels = data.labels.numpy()[rows, t]
    known = ~np.isnan(labels)
    return rows[known], labels[known].astype(int)


def linear_features(data: ModelData) -> np.ndarray:
    """(N, sum of dims + M): per-feature standardised embeddings (train statistics), 0 where absent, + mask."""
    present = data.availability.numpy().astype(bool)
    train = data.rows("train")
    blocks = []
    for m, x in enumerate(data.inputs):
        values = x.numpy().astype(np.float64)
        fit_rows = train[present[train, m]]
        mean = values[fit_rows].mean(axis=0) if len(fit_rows) else np.zeros(values.shape[1])
        sd = values[fit_rows].std(axis=0) if len(fit_rows) > 1 else np.ones(values.shape[1])
        sd = np.where(sd > 1e-6, sd, 1.0)
        blocks.append(np.where(present[:, m : m + 1], np.clip((values - mean) / sd, -8, 8), 0.0))
    blocks.append(present.astype(np.float64))
    return np.concatenate(blocks, axis=1).astype(np.float32)


@dataclass
class ReferenceFit:
    """Per task: val and test log-odds and the chosen hyperparameters."""

    val: np.ndarray
    test: np.ndarray
    chosen: list[dict] = field(default_factory=list)


def fit_logistic(data: ModelData, threads: int = 1) -> ReferenceFit:
    """The same tuned logistic regression the MMNAR model's wide path starts from (training.wide_init)."""
    features = linear_features(data)
    val_rows, test_rows = data.rows("val"), data.rows("test")
    coef, intercept, chosen = fit_l2_logistic(
        features, data.labels.numpy().astype(float), data.rows("train"), val_rows, threads
    )
    return ReferenceFit(features[val_rows] @ coef.T + intercept, features[test_rows] @ coef.T + intercept, chosen)


LIGHTGBM_GRID = tuple(
    {"num_leaves": leaves, "min_child_samples": leaf_rows} for leaves in (7, 31) for leaf_rows in (20, 80)
)


def fit_lightgbm(data: ModelData, seed: int = 0, threads: int = 1, max_rounds: int = 2000) -> ReferenceFit:
    import lightgbm

    features = gbt_features(data)
    val_rows, test_rows = data.rows("val"), data.rows("test")
    out_val, out_test = np.zeros((len(val_rows), len(data.tasks))), np.zeros((len(test_rows), len(data.tasks)))
    chosen: list[dict[str, Any]] = []
    for t in range(len(data.tasks)):
        tr, y_tr = _labelled(data, data.rows("train"), t)
        va, y_va = _labelled(data, val_rows, t)
        if len(np.unique(y_tr)) < 2 or len(np.unique(y_va)) < 2:
            out_val[:, t] = out_test[:, t] = prior_logit(y_tr)
            chosen.append({"grid": None})
            continue
        train_set = lightgbm.Dataset(features[tr], y_tr, free_raw_data=False)
        val_set = lightgbm.Dataset(features[va], y_va, reference=train_set, free_raw_data=False)
        best: tuple[float, dict[str, int], lightgbm.Booster] | None = None
        for grid in LIGHTGBM_GRID:
            params = {
                "objective": "binary",
                "learning_rate": 0.05,
                "feature_fraction": 0.5,
                "bagging_fraction": 0.8,
                "bagging_freq": 1,
                "lambda_l2": 1.0,
                "num_threads": threads,
                "seed": seed,
                "verbosity": -1,
                **grid,
            }
            booster = lightgbm.train(
                params,
                train_set,
                max_rounds,
                valid_sets=[val_set],
                callbacks=[lightgbm.early_stopping(100, verbose=False)],
            )
            z = np.asarray(booster.predict(features[va], num_iteration=booster.best_iteration, raw_score=True))
            loss = log_loss(z, y_va)
            if best is None or loss < best[0] - 1e-9:
                best = (loss, grid, booster)
        assert best is not None, "LIGHTGBM_GRID is not empty"
        loss, grid, booster = best
        out_val[:, t] = booster.predict(features[val_rows], num_iteration=booster.best_iteration, raw_score=True)
        out_test[:, t] = booster.predict(features[test_rows], num_iteration=booster.best_iteration, raw_score=True)
        chosen.append({**grid, "rounds": int(booster.best_iteration), "val_log_loss": round(loss, 5)})
    return ReferenceFit(out_val, out_test, chosen)
