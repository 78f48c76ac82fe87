"""The wide path starts as a tuned L2 logistic regression: per task, fit on the labelled training rows
of the model's own standardised inputs, availability flags and (when they help on validation) the
piecewise-linear bins of the structured features, C chosen by validation log loss, and the image/note
embeddings' weights penalised more strongly than the structured ones when validation says so.

Why: the deep members then only have to learn what a linear model cannot, and because the heads'
output layers start at zero the untrained network *is* that logistic regression; the trainer scores it
on validation before the first epoch, so the kept model is never worse on validation than the tuned
linear reference a practitioner would fit on the same inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

C_GRID = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def row_log_loss(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z) - y * z


def log_loss(z: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(row_log_loss(z, y)))


def prior_logit(y: np.ndarray) -> float:
    p = float(np.clip(y.mean() if len(y) else 0.5, 1e-4, 1 - 1e-4))
    return float(np.log(p / (1 - p)))


def fit_l2_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    threads: int = 1,
    grid=C_GRID,
    patience: int = 2,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(coef (T, F), intercept (T,), chosen) of one L2 logistic regression per task (column of `labels`,
    NaN = unlabelled): fit on the labelled train rows, C with the lowest log loss on the labelled val rows.

    The grid is walked from strong to weak penalty, each fit warm-started from the last, and stops once
    `patience` values in a row have not improved the validation loss (the loss over C is U-shaped; the
    fits at weak penalty are the slow ones): 2-4x faster than fitting every C from scratch."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    n_tasks = labels.shape[1]
    coef, intercept = np.zeros((n_tasks, features.shape[1])), np.zeros(n_tasks)
    chosen: list[dict[str, Any]] = []
    for t in range(n_tasks):
        tr = train_rows[~np.isnan(labels[train_rows, t])]
        va = val_rows[~np.isnan(labels[val_rows, t])]
        y_tr, y_va = labels[tr, t].astype(int), labels[va, t].astype(int)
        if len(np.unique(y_tr)) < 2:
            intercept[t] = prior_logit(y_tr)
            chosen.append({"C": None})
            continue
        model = LogisticRegression(max_iter=2000, tol=1e-5, warm_start=True)
        best: tuple[float, float, np.ndarray, float] | None = None
        worse = 0
        for c in sorted(grid):
            model.set_params(C=c)
            with threadpool_limits(limits=threads):
                model.fit(features[tr], y_tr)
            loss = log_loss(model.decision_function(features[va]), y_va) if len(va) else 0.0
            if best is None or loss < best[0] - 1e-9:
                best, worse = (loss, c, model.coef_[0].copy(), float(model.intercept_[0])), 0
            else:
                worse += 1
                if worse >= patience:
                    break
        assert best is not None, "the C grid is not empty"
        loss, c, coef[t], intercept[t] = best
        chosen.append({"C": c, "val_log_loss": round(loss, 5)})
    return coef, intercept, chosen


@torch.no_grad()
def wide_features(model, inputs: list[torch.Tensor], availability: torch.Tensor, batch: int = 8192) -> np.ndarray:
    """The wide path's input (WidePath.features) for every row."""
    out = [
        model.wide.features(
            model.standardise([v[start : start + batch] for v in inputs]), availability[start : start + batch]
        ).numpy()
        for start in range(0, len(availability), batch)
    ]
    return np.concatenate(out).astype(np.float64)


def _content_columns(config, width: int) -> np.ndarray:
    """Mask of the wide path's columns that are linear terms of an image or note embedding (the
    modalities that are not binned); flags, structured columns and bins are not content."""
    mask, offset = np.zeros(width, dtype=bool), np.cumsum([0] + list(config.input_dims))
    for m, name in enumerate(config.modalities):
        if name not in config.wide_binned:
            mask[offset[m] : offset[m + 1]] = True
    return mask


def _candidates(config, width: int, linear_width: int):
    """(description, column scale) of each wide path tried per task; a column with scale 0 is left out.

    Linear on everything; the GAM (bins on) with the content columns at each of `wide_content_scales`
    (0 leaves them out). Without bins the linear path takes the scales instead. Fitting
    on s * x with one L2 penalty is fitting x with a penalty 1/s^2 on those weights: the embeddings'
    hundreds of dimensions get a stronger penalty than the structured features without a second grid."""
    content = _content_columns(config, width)
    scales = sorted({1.0, *(float(s) for s in config.wide_content_scales)}, reverse=True)  # 1: the reference
    if not content.any():
        scales = [1.0]
    linear = np.zeros(width)
    linear[:linear_width] = 1.0
    bins = [config.wide_bins] if width > linear_width else []
    if bins:
        yield {"bins": 0, "content": "all", "content_scale": 1.0}, linear
    for n_bins, base in [(b, np.ones(width)) for b in bins] or [(0, linear)]:
        for s in scales:
            label = "all" if s == 1.0 else ("structured" if s == 0.0 else "scaled")
            yield {"bins": n_bins, "content": label, "content_scale": s}, np.where(content, s * base, base)


def _choose(candidates: list[dict], features: np.ndarray, labels: np.ndarray, val: np.ndarray, gate_se: float) -> dict:
    """One task's start among fitted candidates ({"weights", "intercept", "entry"}).

    The best of those at content scale 1 (plain logistic regression or GAM) by validation log loss; a
    candidate with a stronger penalty on the embeddings replaces it only when its validation loss is
    lower by more than `gate_se` paired standard errors of the per-row difference (then the lowest such
    loss wins). Why a gate: with several penalties to choose from, the lowest of noisy validation losses
    is biased towards a lucky candidate; the default keeps scale 1 unless the evidence is clear (the
    rectifier chooses its levels the same way, with two standard errors: docs/calibration.md)."""
    fitted = [c for c in candidates if c["entry"]["C"] is not None]
    if not fitted:
        return candidates[0]
    full = [c for c in fitted if c["entry"]["content_scale"] == 1.0]
    base = min(full, key=lambda c: c["entry"]["val_log_loss"])  # min keeps the first of equals
    known = val[~np.isnan(labels[val])]
    if len(known) < 2:
        return base
    y = labels[known]

    def rows(c):
        return row_log_loss(features[known] @ c["weights"] + c["intercept"], y)

    base_loss = rows(base)
    best, best_gain = base, 0.0
    for c in fitted:
        if c["entry"]["content_scale"] == 1.0:
            continue
        d = rows(c) - base_loss
        se = float(d.std(ddof=1) / np.sqrt(len(d)))
        if d.mean() < -gate_se * se and -d.mean() > best_gain:  # the largest gain is the lowest loss
            best, best_gain = (
                {**c, "entry": {**c["entry"], "gain_se": round(float(-d.mean() / se), 2) if se > 0 else None}},
                -d.mean(),
            )
    return best


@torch.no_grad()
def init_wide_from_logistic(model, data, threads: int = 1) -> list[dict]:
    """Fit the logistic regression and copy it into model.wide (call after model.fit_inputs, on CPU).

    Per task, every candidate of `_candidates` is fit and `_choose` picks one on validation. The bin
    columns are standardised for the fit (so the L2 penalty treats them like the standardised inputs) and
    the scaling is folded back into the weights."""
    config = model.config
    features = wide_features(model, data.inputs, data.availability)
    labels, train, val = data.labels.numpy().astype(float), data.rows("train"), data.rows("val")
    linear_width = sum(config.input_dims) + config.n_modalities
    mean, sd = np.zeros(features.shape[1]), np.ones(features.shape[1])
    if features.shape[1] > linear_width:  # standardise the bin columns only
        bins = features[train, linear_width:]
        mean[linear_width:] = bins.mean(axis=0)
        sd[linear_width:] = np.where(bins.std(axis=0) > 1e-9, bins.std(axis=0), 1.0)
    scaled = (features - mean) / sd
    per_task: list[list[dict]] = [[] for _ in config.tasks]
    for description, column_scale in _candidates(config, features.shape[1], linear_width):
        mask = column_scale > 0
        coef_c, intercept_c, chosen_c = fit_l2_logistic(
            scaled[:, mask] * column_scale[mask], labels, train, val, threads
        )
        for t, entry in enumerate(chosen_c):
            weights = np.zeros(features.shape[1])
            weights[mask] = coef_c[t] * column_scale[mask]  # the fit saw s * x: its weight on x is s * w
            weights /= sd  # fold the standardisation of the bin columns back (sd 1 elsewhere)
            per_task[t].append(
                {
                    "weights": weights,
                    "intercept": intercept_c[t] - float(weights @ mean),
                    "entry": {**entry, **description},
                }
            )
    picked = [_choose(c, features, labels[:, t], val, config.wide_scale_gate_se) for t, c in enumerate(per_task)]
    coef = np.stack([c["weights"] for c in picked])
    intercept = np.array([c["intercept"] for c in picked])
    model.wide.linear.weight.copy_(torch.as_tensor(coef, dtype=model.wide.linear.weight.dtype))
    model.wide.linear.bias.copy_(torch.as_tensor(intercept, dtype=model.wide.linear.bias.dtype))
    return [c["entry"] for c in picked]
