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

import numpy as np
import torch

from mmnar_core.training.logistic import fit_l2_logistic, linear_logit, paired_gain, row_log_loss
from mmnar_core.training.wide_pairs import add_pair_interactions


@torch.no_grad()
def wide_features(
    model,
    inputs: list[torch.Tensor],
    availability: torch.Tensor,
    batch: int = 8192,
    dtype=np.float64,
) -> np.ndarray:
    """The wide path's input (WidePath.features) for every row (float32 is exact: the path computes in it)."""
    out = [
        model.wide.features(
            model.standardise([v[start : start + batch] for v in inputs]), availability[start : start + batch]
        ).numpy()
        for start in range(0, len(availability), batch)
    ]
    return np.concatenate(out).astype(dtype, copy=False)


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
        return row_log_loss(linear_logit(features[known], c["weights"], c["intercept"]), y)

    base_loss = rows(base)
    best, best_gain = base, 0.0
    for c in fitted:
        if c["entry"]["content_scale"] == 1.0:
            continue
        gain, se = paired_gain(rows(c), base_loss)
        if gain > gate_se * se and gain > best_gain:  # the largest gain is the lowest loss
            best, best_gain = (
                {**c, "entry": {**c["entry"], "gain_se": round(gain / se, 2) if se > 0 else None}},
                gain,
            )
    return best


@torch.no_grad()
def init_wide_from_logistic(model, data, threads: int = 1) -> list[dict]:
    """Fit the logistic regression and copy it into model.wide (call after model.fit_inputs, on CPU).

    Per task, every candidate of `_candidates` is fit, `_choose` picks one on validation and
    `wide_pairs.add_pair_interactions` adds pairwise interactions where validation keeps them. The bin
    columns are standardised for the fit (so the L2 penalty treats them like the standardised inputs) and
    the scaling is folded back into the weights."""
    config = model.config
    # float32 (what the path computes in) for every row; the float64 design of each candidate holds the
    # train and validation rows only, train first, so the fits read the training rows as a view: about
    # half the memory of a float64 matrix and its copies, with the same numbers
    features = wide_features(model, data.inputs, data.availability, dtype=np.float32)
    labels, train, val = data.labels.numpy().astype(float), data.rows("train"), data.rows("val")
    fit_rows = np.concatenate([train, val])
    local_train, local_val = np.arange(len(train)), np.arange(len(train), len(fit_rows))
    linear_width = sum(config.input_dims) + config.n_modalities
    mean, sd = np.zeros(features.shape[1]), np.ones(features.shape[1])
    for start in range(linear_width, features.shape[1], 512):  # standardise the bin columns only
        bins = features[train, start : start + 512].astype(np.float64)
        spread = bins.std(axis=0)
        mean[start : start + 512] = bins.mean(axis=0)
        sd[start : start + 512] = np.where(spread > 1e-9, spread, 1.0)
    per_task: list[list[dict]] = [[] for _ in config.tasks]
    for description, column_scale in _candidates(config, features.shape[1], linear_width):
        mask = column_scale > 0
        design = features[np.ix_(fit_rows, mask)].astype(np.float64)  # standardised and scaled in place
        design -= mean[mask]
        design /= sd[mask]
        design *= column_scale[mask]
        coef_c, intercept_c, chosen_c = fit_l2_logistic(design, labels[fit_rows], local_train, local_val, threads)
        del design
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
    picked = add_pair_interactions(model, data, features, picked)  # weights gain the pair columns
    coef = np.stack([c["weights"] for c in picked])
    intercept = np.array([c["intercept"] for c in picked])
    dtype = model.wide.linear.weight.dtype
    model.wide.set_weights(torch.as_tensor(coef, dtype=dtype), torch.as_tensor(intercept, dtype=dtype))
    return [c["entry"] for c in picked]
