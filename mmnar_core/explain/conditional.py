"""What an absent modality would most likely contain, given what is known about the patient.

`ConditionalModality` is a ridge regression of one modality's embedding on the embeddings of the modalities a
patient has (and on whether each other modality was obtained, since in this data the ordering pattern itself
tells about the patient), fitted on the training reference patients who had them all. Its draws are the
predicted mean plus the fit's leave-one-out residuals: each residual is what the model missed for a training
patient it did not see, so the draws spread as much as real content does around the prediction. Nearest
neighbours in the fused representation carry near-identical content and gave a spread of almost zero.

The ridge penalty is chosen by the closed-form leave-one-out error (no folds, nothing fitted on test).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

ALPHA_GRID = tuple(float(a) for a in np.logspace(-5, 2, 15))  # penalties, as fractions of the largest s^2
MAX_RESIDUALS = 400  # leave-one-out residuals kept as draws (a fixed subsample when more patients were fitted)


@dataclass
class ConditionalModality:
    """Ridge model of modality `target` given the modalities in `regressors` and the availability of the
    others. Fit on rows that have `target` and every regressor; `sample` gives draws of the target's
    embedding for patients that have the regressors."""

    target: int
    regressors: tuple[int, ...]
    alpha_grid: tuple[float, ...] = ALPHA_GRID
    max_residuals: int = MAX_RESIDUALS
    seed: int = 0
    indicators_: tuple[int, ...] = ()  # modalities whose availability is a feature
    x_mean_: np.ndarray | None = field(default=None, repr=False)
    x_scale_: np.ndarray | None = field(default=None, repr=False)
    y_mean_: np.ndarray | None = field(default=None, repr=False)
    coef_: np.ndarray | None = field(default=None, repr=False)  # (p, dim) on standardised features
    residuals_: np.ndarray | None = field(default=None, repr=False)  # (<= max_residuals, dim) leave-one-out
    alpha_: float = 0.0
    n_fit_: int = 0

    def _features(self, inputs: Sequence[np.ndarray], availability: np.ndarray) -> np.ndarray:
        blocks = [np.asarray(inputs[m], dtype=np.float64) for m in self.regressors]
        blocks.append(np.asarray(availability, dtype=np.float64)[:, list(self.indicators_)])
        return np.concatenate(blocks, axis=1)

    def fit(self, inputs: Sequence[np.ndarray], availability: np.ndarray) -> ConditionalModality:
        """Fit on the rows of `inputs` (per modality (R, dim)) that have the target and every regressor."""
        availability = np.asarray(availability, dtype=bool)
        rows = availability[:, [self.target, *self.regressors]].all(axis=1)
        n = int(rows.sum())
        if n < 3:
            raise ValueError(f"{n} reference patients have modality {self.target} and {self.regressors}: need >= 3")
        others = [m for m in range(availability.shape[1]) if m != self.target and m not in self.regressors]
        self.indicators_ = tuple(m for m in others if 0 < availability[rows, m].sum() < n)  # constant: no feature
        x = self._features([np.asarray(v)[rows] for v in inputs], availability[rows])
        y = np.asarray(inputs[self.target], dtype=np.float64)[rows]
        self.x_mean_, self.y_mean_ = x.mean(axis=0), y.mean(axis=0)
        scale = x.std(axis=0)
        self.x_scale_ = np.where(scale > 1e-8, scale, 1.0)
        xs, yc = (x - self.x_mean_) / self.x_scale_, y - self.y_mean_
        self.alpha_, coef, loo = _ridge_leave_one_out(xs, yc, self.alpha_grid)
        self.coef_ = coef
        keep = np.arange(n)
        if n > self.max_residuals:
            keep = np.sort(np.random.default_rng(self.seed).choice(n, self.max_residuals, replace=False))
        self.residuals_ = loo[keep]
        self.n_fit_ = n
        return self

    def _check(self) -> None:
        if self.coef_ is None:
            raise RuntimeError("ConditionalModality is not fitted")

    def predict(self, inputs: Sequence[np.ndarray], availability: np.ndarray) -> np.ndarray:
        """(B, dim) expected embedding of the target for patients (inputs per modality (B, dim))."""
        self._check()
        assert self.x_mean_ is not None and self.x_scale_ is not None and self.coef_ is not None
        x = self._features(inputs, np.asarray(availability, dtype=bool).reshape(len(inputs[0]), -1))
        return (x - self.x_mean_) / self.x_scale_ @ self.coef_ + self.y_mean_

    def sample(self, inputs: Sequence[np.ndarray], availability: np.ndarray) -> np.ndarray:
        """(n_draws, dim) draws of the target's embedding for one patient: the prediction plus each kept
        leave-one-out residual."""
        mean = self.predict([np.asarray(x).reshape(1, -1) for x in inputs], np.asarray(availability).reshape(1, -1))
        assert self.residuals_ is not None
        return mean + self.residuals_

    def to_dict(self) -> dict[str, Any]:
        self._check()

        def listed(a: np.ndarray | None) -> list:
            return np.asarray(a).tolist()

        return {
            "target": self.target,
            "regressors": list(self.regressors),
            "alpha_grid": list(self.alpha_grid),
            "max_residuals": self.max_residuals,
            "seed": self.seed,
            "indicators": list(self.indicators_),
            "x_mean": listed(self.x_mean_),
            "x_scale": listed(self.x_scale_),
            "y_mean": listed(self.y_mean_),
            "coef": listed(self.coef_),
            "residuals": listed(self.residuals_),
            "alpha": self.alpha_,
            "n_fit": self.n_fit_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConditionalModality:
        model = cls(
            int(data["target"]),
            tuple(int(m) for m in data["regressors"]),
            tuple(float(a) for a in data["alpha_grid"]),
            int(data["max_residuals"]),
            int(data["seed"]),
        )
        model.indicators_ = tuple(int(m) for m in data["indicators"])
        model.x_mean_, model.x_scale_ = np.asarray(data["x_mean"], float), np.asarray(data["x_scale"], float)
        model.y_mean_, model.coef_ = np.asarray(data["y_mean"], float), np.asarray(data["coef"], float)
        model.residuals_ = np.asarray(data["residuals"], float)
        model.alpha_, model.n_fit_ = float(data["alpha"]), int(data["n_fit"])
        return model


def _ridge_leave_one_out(x: np.ndarray, y: np.ndarray, grid: Sequence[float]) -> tuple[float, np.ndarray, np.ndarray]:
    """(penalty, coefficients, leave-one-out residuals) of the ridge fit of centred y on centred x whose penalty
    (from `grid`, as fractions of the largest squared singular value) has the smallest leave-one-out error,
    in closed form from one SVD: residual_i / (1 - leverage_i). In torch, not numpy: it follows the process's
    torch thread setting (OpenBLAS's own threads oversubscribed the shared cores, 20x slower when busy)."""
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    u, s, vt = torch.linalg.svd(xt, full_matrices=False)
    uty = u.T @ yt
    top = float(s[0] ** 2) if len(s) and float(s[0]) > 0 else 1.0
    best: tuple[float, float, torch.Tensor] | None = None
    for fraction in grid:
        alpha = fraction * top
        shrink = s**2 / (s**2 + alpha)
        leverage = (u**2) @ shrink + 1.0 / len(x)  # the intercept's share too
        loo = (yt - u @ (shrink[:, None] * uty)) / torch.clamp(1.0 - leverage, min=1e-6)[:, None]
        error = float((loo**2).sum())
        if best is None or error < best[0]:
            best = (error, alpha, loo)
    assert best is not None
    _, alpha, loo = best
    coef = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
    return alpha, coef.numpy(), loo.numpy()
