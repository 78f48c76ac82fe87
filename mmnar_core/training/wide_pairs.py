"""Which pairwise interactions of structured features join the wide path's GAM (model.interactions).

Per task, after the GAM start is chosen (wide_init):
1. every pair of structured features is scored at the GAM's fit by a score (Rao) test on up to
   `SEARCH_ROWS` labelled training rows: with C the pair's columns, g = C'(y - p), I = C' diag(p(1-p)) C,
   the statistic g' I^-1 g less its degrees of freedom. One fit (the GAM's) serves every pair, so
   thousands of pairs cost seconds, not thousands of fits. It is a ranking, not a test: I is the pair's
   own information, not projected off the GAM's columns (and the GAM is penalised), so a pair can also
   pick up a main effect the GAM under-fit; step 3 decides whether the pairs help at all;
2. the top `wide_pairs` pairs' columns are fit as an L2 logistic regression with the GAM's logit as a
   fixed offset, C walked on validation as the GAM's was (the GAM stays as it was chosen);
3. they are kept only when their validation log loss beats the GAM's by more than `wide_pair_gate_se`
   paired standard errors (logistic.paired_gain); otherwise the task's slots stay empty.

Why the gate: on synthetic cohorts whose risks are additive and on small cohorts, pairs picked on train
fit noise, and validation must say so before a clinician sees a pair in an explanation.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch

from mmnar_core.model.interactions import coarse_edges
from mmnar_core.model.piecewise import bin_positions
from mmnar_core.training.logistic import C_GRID, linear_logit, log_loss, paired_gain, row_log_loss, walk_c

SEARCH_ROWS = 50_000  # labelled training rows the pairs are scored on (a fixed random subset beyond)
MAX_FEATURES = 256  # beyond, only the features whose GAM terms vary most on train are paired
ROW_BLOCK = 4096  # rows per block of the score test's products (memory: block x features x bins^2)


@torch.no_grad()
def structured_columns(model, inputs: list[torch.Tensor], availability: torch.Tensor, batch: int = 8192):
    """(N, F) float64 standardised structured values and (N, F) presence, as the wide path's pairs read them."""
    values, present = [], []
    for start in range(0, len(availability), batch):
        x = model.standardise([v[start : start + batch] for v in inputs])
        v, p = model.wide.structured(x, availability[start : start + batch])
        values.append(v.double())
        present.append(p)
    return torch.cat(values), torch.cat(present)


def _encode(values: torch.Tensor, present: torch.Tensor, edges: torch.Tensor, n_bins: int) -> torch.Tensor:
    """(N, n_bins) bin positions of one feature, zero where absent and in bins its edges do not use."""
    k = len(edges) - 1
    out = torch.zeros(len(values), n_bins, dtype=torch.float64)
    out[:, :k] = bin_positions(values, edges[:-1], edges[1:] - edges[:-1])
    return out * present[:, None]


def score_pairs(encoded: torch.Tensor, pairs: np.ndarray, residual: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Score-test statistic less its degrees of freedom for each pair (i, j) of `encoded` (F, n, bins).

    Every pair's g and I come out of two products over the rows: with E the features' encodings side by
    side and Q their within-feature products a_k a_k', g_ij = [(E * r)' E]_ij and I_ij = [(Q * w)' Q]_ij,
    accumulated over blocks of rows (one large matrix product runs far faster than a small one per pair)."""
    n_features, n, n_bins = encoded.shape
    r = torch.as_tensor(residual, dtype=encoded.dtype)
    w = torch.as_tensor(weight, dtype=encoded.dtype)
    g_all = torch.zeros(n_features * n_bins, n_features * n_bins, dtype=torch.float64)
    i_all = torch.zeros(n_features * n_bins**2, n_features * n_bins**2, dtype=torch.float64)
    for start in range(0, n, ROW_BLOCK):
        block = encoded[:, start : start + ROW_BLOCK]  # (F, b, bins)
        e = block.permute(1, 0, 2).reshape(block.shape[1], -1)
        q = (block[..., :, None] * block[..., None, :]).permute(1, 0, 2, 3).reshape(block.shape[1], -1)
        rows = slice(start, start + ROW_BLOCK)
        g_all += ((e * r[rows, None]).T @ e).double()
        i_all += ((q * w[rows, None]).T @ q).double()
    g_all = g_all.view(n_features, n_bins, n_features, n_bins)
    i_all = i_all.view(n_features, n_bins, n_bins, n_features, n_bins, n_bins)
    i, j = torch.as_tensor(pairs[:, 0]), torch.as_tensor(pairs[:, 1])
    g = g_all[i, :, j, :].reshape(len(pairs), -1)  # (P, k * l)
    info = i_all[i, :, :, j, :, :].permute(0, 1, 3, 2, 4).reshape(len(pairs), n_bins**2, n_bins**2)
    ridge = 1e-6 * info.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-12) + 1e-12
    info = info + ridge[:, None, None] * torch.eye(n_bins**2, dtype=torch.float64)
    stat = (g * torch.linalg.solve(info, g.unsqueeze(-1)).squeeze(-1)).sum(dim=1)
    used = (encoded != 0).any(dim=1).sum(dim=1)  # bins each feature uses on these rows
    return (stat - used[i] * used[j]).numpy()


def _fit_offset(columns, offset, y, fit_rows, val_rows, patience: int = 2):
    """(weights, intercept, C, val loss): L2 logistic regression on `columns` with a fixed offset logit,
    the objective scikit-learn's (0.5 |w|^2 + C * sum of losses), C walked from strong to weak penalty."""
    from scipy.optimize import minimize

    x, z0, target = columns[fit_rows], offset[fit_rows], y[fit_rows]

    def objective(params, c):
        w, b = params[:-1], params[-1]
        z = z0 + x @ w + b
        p = 1.0 / (1.0 + np.exp(-z))
        loss = 0.5 * w @ w + c * float(np.sum(row_log_loss(z, target)))
        grad = np.append(w + c * (x.T @ (p - target)), c * float(np.sum(p - target)))
        return loss, grad

    params = np.zeros(x.shape[1] + 1)

    def fit_at(c: float) -> tuple[float, np.ndarray]:
        nonlocal params
        params = minimize(objective, params, args=(c,), jac=True, method="L-BFGS-B").x  # warm start
        z = offset[val_rows] + columns[val_rows] @ params[:-1] + params[-1]
        return log_loss(z, y[val_rows]), params.copy()

    loss, c, fitted = walk_c(fit_at, C_GRID, patience)
    return fitted[:-1], float(fitted[-1]), c, loss


def _candidate_features(edges, term_variance: np.ndarray) -> list[int]:
    """The features that can be paired, trimmed to the MAX_FEATURES whose GAM terms vary most (a pair of
    two features the GAM ignores rarely matters; the score test's cost grows with the square of the count)."""
    usable = [f for f, e in enumerate(edges) if e is not None]
    if len(usable) > MAX_FEATURES:
        usable = sorted(sorted(usable, key=lambda f: -term_variance[f])[:MAX_FEATURES])
    return usable


def _term_variance(model, features: np.ndarray, weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per structured feature, the variance over `rows` of its terms in the GAM (linear + its bins)."""
    config, wide = model.config, model.wide
    start = np.cumsum([0] + list(config.input_dims))
    bins_start = sum(config.input_dims) + config.n_modalities
    out = []
    for m in wide.binned:
        for c in range(config.input_dims[m]):
            cols = [start[m] + c, *range(bins_start + c * config.wide_bins, bins_start + (c + 1) * config.wide_bins)]
            out.append(float(np.var(features[np.ix_(rows, cols)].astype(np.float64) @ weights[cols])))
        bins_start += config.input_dims[m] * config.wide_bins
    return np.array(out)


def _names(model, pair: tuple[int, int]) -> list:
    """[modality, column, modality, column] of a pair of structured-column indices."""
    config, out = model.config, []
    dims = [config.input_dims[m] for m in model.wide.binned]
    for f in pair:
        m = int(np.searchsorted(np.cumsum(dims), f, side="right"))
        out += [config.modalities[model.wide.binned[m]], int(f - sum(dims[:m]))]
    return out


@torch.no_grad()
def add_pair_interactions(model, data, features: np.ndarray, picked: list[dict]) -> list[dict]:
    """Fill the pair slots of model.wide task by task and add the kept pairs' weights to `picked` (the
    GAM start per task: weights over the wide path's full width, intercept, entry); returns new entries."""
    wide, config = model.wide, model.config
    if wide is None or wide.pairs is None:
        return picked
    module, k, n_bins = wide.pairs, config.wide_pairs, config.wide_pair_bins
    labels, train, val = data.labels.numpy().astype(float), data.rows("train"), data.rows("val")
    values, present = structured_columns(model, data.inputs, data.availability)
    train_values, train_present = values[train], present[train]
    edges = [coarse_edges(train_values[train_present[:, f], f], n_bins) for f in range(values.shape[1])]
    pair_start = features.shape[1]  # `features` has no pair columns; they follow it in the weights
    rng = np.random.default_rng(config.seed)
    out = []
    for t, gam in enumerate(picked):
        base = {**gam, "weights": np.concatenate([gam["weights"], np.zeros(module.width)])}
        base["entry"] = {**gam["entry"], "pairs": [], "pair_gain_se": None}
        slots = range(t * k, (t + 1) * k)
        for s in slots:
            module.clear_slot(s)
        tr = train[~np.isnan(labels[train, t])]
        va = val[~np.isnan(labels[val, t])]
        if base["entry"]["C"] is None or len(va) < 2:
            out.append(base)
            continue
        offset = linear_logit(features, gam["weights"], gam["intercept"])
        search = tr if len(tr) <= SEARCH_ROWS else np.sort(rng.choice(tr, SEARCH_ROWS, replace=False))
        usable = _candidate_features(edges, _term_variance(model, features, gam["weights"], search))
        pairs = np.array([(a, b) for a in range(len(usable)) for b in range(a + 1, len(usable))], dtype=np.int64)
        if len(pairs) == 0:
            out.append(base)
            continue
        rows = torch.as_tensor(search)
        encoded = torch.stack(
            [_encode(values[rows, f], present[rows, f], cast(torch.Tensor, edges[f]), n_bins) for f in usable]
        )
        p = 1.0 / (1.0 + np.exp(-offset[search]))
        scores = score_pairs(encoded.float(), pairs, labels[search, t] - p, p * (1.0 - p))
        ranked = [i for i in np.argsort(-scores, kind="stable")[:k] if scores[i] > 0]
        top = [(usable[pairs[i, 0]], usable[pairs[i, 1]]) for i in ranked]
        if not top:
            out.append(base)
            continue
        for s, pair in zip(slots, top):
            module.set_slot(s, pair, (edges[pair[0]], edges[pair[1]]))
        local = slice(t * k * n_bins**2, (t * k + len(top)) * n_bins**2)
        columns = slice(pair_start + local.start, pair_start + local.stop)
        raw = np.concatenate(
            [
                module(values[start : start + 8192].to(module.lower_.dtype), present[start : start + 8192])[:, local]
                .double()
                .numpy()
                for start in range(0, len(values), 8192)
            ]
        )
        mean, sd = raw[tr].mean(axis=0), raw[tr].std(axis=0)
        sd = np.where(sd > 1e-9, sd, np.inf)  # a column constant on train gets weight 0
        standard = (raw - mean) / sd
        w, b, c, _ = _fit_offset(standard, offset, labels[:, t], tr, va)
        with_pairs = offset + standard @ w + b
        gain, se = paired_gain(row_log_loss(with_pairs[va], labels[va, t]), row_log_loss(offset[va], labels[va, t]))
        record = {"pair_C": c, "pair_gain_se": round(gain / se, 2) if se > 0 else None}
        if gain > config.wide_pair_gate_se * se and gain > 0:
            weights = base["weights"].copy()
            weights[columns] = w / sd
            intercept = base["intercept"] + b - float((w / sd) @ mean)
            names = [_names(model, pair) for pair in top]
            out.append(
                {"weights": weights, "intercept": intercept, "entry": {**base["entry"], **record, "pairs": names}}
            )
        else:
            for s in slots:
                module.clear_slot(s)
            out.append({**base, "entry": {**base["entry"], **record, "pairs": []}})
    return out
