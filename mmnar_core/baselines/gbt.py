"""Gradient-boosted trees (scikit-learn HistGradientBoostingClassifier), one model per task, on the
structured features (the tabular encoder's output: robust-scaled values with missing indicators and
one-hots), the other modalities' pooled embeddings, and the availability mask.

An absent modality's columns are NaN, which the trees route natively (each split learns where missing
rows go), and the mask is appended as 0/1 columns. Fit on the labelled train rows of each task only;
early stopping on the labelled validation rows (scikit-learn's X_val/y_val), never on test. Unlabelled
rows (NaN labels) are dropped per task. Outputs log-odds (decision_function), so temperature scaling
and the rectifier apply exactly as for the networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmnar_core.training.data import ModelData


@dataclass
class GBTConfig:
    learning_rate: float = 0.05
    max_iter: int = 500  # upper bound; early stopping on val picks the number of trees
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 20
    l2_regularization: float = 1.0
    max_features: float = (
        0.5  # fraction of columns sampled per split: regularises on wide embeddings, and makes the seed matter
    )
    n_iter_no_change: int = 20
    threads: int = 1  # OpenMP threads for scikit-learn


def gbt_features(data: ModelData) -> np.ndarray:
    """(N, sum of dims + M) float32: each modality's vectors (NaN where absent), then the 0/1 mask."""
    present = data.availability.numpy().astype(bool)
    blocks = [np.where(present[:, m : m + 1], x.numpy(), np.nan).astype(np.float32) for m, x in enumerate(data.inputs)]
    blocks.append(present.astype(np.float32))
    return np.concatenate(blocks, axis=1)


@dataclass
class GBTResult:
    models: list  # per task: a fitted classifier, or None when the train split had one class only
    constant_logits: np.ndarray  # per task: the train log-odds used when there is no classifier
    n_trees: list[int]  # per task: trees used for prediction (the best validation loss)

    def logits(self, features: np.ndarray) -> np.ndarray:
        out = np.zeros((len(features), len(self.models)))
        for t, model in enumerate(self.models):
            out[:, t] = (
                _staged_logits(model, features, self.n_trees[t]) if model is not None else self.constant_logits[t]
            )
        return out


def _staged_logits(model, features: np.ndarray, n_trees: int) -> np.ndarray:
    """Log-odds after the first n_trees trees (scikit-learn keeps the patience trees after the best one)."""
    for i, raw in enumerate(model.staged_decision_function(features)):
        if i + 1 == n_trees:
            return np.asarray(raw, dtype=float).reshape(-1)
    return np.asarray(model.decision_function(features), dtype=float).reshape(-1)


def _best_n_trees(model, features: np.ndarray, labels: np.ndarray) -> int:
    """Number of trees with the lowest validation log loss."""
    losses = [
        float(np.mean(np.logaddexp(0.0, z) - labels * z))
        for z in (np.asarray(raw, dtype=float).reshape(-1) for raw in model.staged_decision_function(features))
    ]
    return int(np.argmin(losses)) + 1


def fit_gbt(data: ModelData, seed: int = 0, config: GBTConfig | None = None) -> GBTResult:
    """One classifier per task on the labelled train rows, early-stopped on the labelled val rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    config = config or GBTConfig()
    features = gbt_features(data)
    labels = data.labels.numpy().astype(float)
    train_rows, val_rows = data.rows("train"), data.rows("val")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError("the gradient-boosting baseline needs patients in both the train and the val split")
    models: list[HistGradientBoostingClassifier | None] = []
    constants = np.zeros(len(data.tasks))
    n_trees: list[int] = []
    for t in range(len(data.tasks)):
        tr = train_rows[~np.isnan(labels[train_rows, t])]
        va = val_rows[~np.isnan(labels[val_rows, t])]
        y_train = labels[tr, t].astype(int)
        prevalence = float(np.clip(y_train.mean() if len(y_train) else 0.5, 1e-4, 1 - 1e-4))
        constants[t] = np.log(prevalence / (1 - prevalence))
        if len(np.unique(y_train)) < 2:
            models.append(None)
            n_trees.append(0)
            continue
        y_val = labels[va, t].astype(int)
        early = len(va) > 0 and len(np.unique(y_val)) == 2
        model = HistGradientBoostingClassifier(
            learning_rate=config.learning_rate,
            max_iter=config.max_iter,
            max_leaf_nodes=config.max_leaf_nodes,
            min_samples_leaf=config.min_samples_leaf,
            l2_regularization=config.l2_regularization,
            max_features=config.max_features,
            early_stopping=early,
            scoring="loss",
            n_iter_no_change=config.n_iter_no_change,
            random_state=seed,
        )
        with threadpool_limits(limits=config.threads):
            if early:
                model.fit(features[tr], y_train, X_val=features[va], y_val=y_val)
            else:
                model.fit(features[tr], y_train)
        models.append(model)
        n_trees.append(_best_n_trees(model, features[va], y_val) if early else int(model.n_iter_))
    return GBTResult(models, constants, n_trees)
