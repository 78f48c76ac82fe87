"""Piecewise-linear encoding of structured features for the wide path (a GAM inside the model).

Why: a lab value's effect on risk is rarely a straight line (a temperature, a heart rate, a sodium are
dangerous at both ends), which is where gradient boosting beat a logistic regression on real records.
Encoding each standardised structured feature by its position in quantile bins (Gorishniy et al., "On
Embeddings for Numerical Features in Tabular Deep Learning", 2022) lets one linear layer fit any
piecewise-linear function of each feature: the wide path becomes a generalised additive model, still
fit as one logistic regression and still differentiable for the explanations.

    bin k of feature j, edges e_0 < ... < e_n (train quantiles):  clamp((x - e_{k-1}) / (e_k - e_{k-1}), 0, 1)

Features with fewer than three distinct training values (flags, one-hot levels) get no bins: their
linear term already says everything. Bins collapsed by ties are dropped the same way (output 0).
"""

from __future__ import annotations

import torch
from torch import nn

MIN_DISTINCT = 3  # a feature needs this many distinct training values to be binned


def bin_positions(x: torch.Tensor, lower: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """(..., n_bins) position of each value of x (...) inside each bin [lower, lower + width], in [0, 1]."""
    return ((x.unsqueeze(-1) - lower) / width).clamp(0.0, 1.0)


class PiecewiseLinearEncoding(nn.Module):
    """(B, F) standardised values -> (B, F * n_bins) bin positions in [0, 1]; zero for unused bins."""

    lower_: torch.Tensor
    width_: torch.Tensor
    used_: torch.Tensor

    def __init__(self, n_features: int, n_bins: int):
        super().__init__()
        self.n_bins = n_bins
        self.register_buffer("lower_", torch.zeros(n_features, n_bins))
        self.register_buffer("width_", torch.ones(n_features, n_bins))
        self.register_buffer("used_", torch.zeros(n_features, n_bins, dtype=torch.bool))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, present: torch.Tensor) -> PiecewiseLinearEncoding:
        """Edges at the quantiles of each feature over the rows where its modality is present (train)."""
        rows = x[present.bool()].double()
        self.used_.zero_()
        if len(rows) < MIN_DISTINCT:
            return self
        levels = torch.linspace(0, 1, self.n_bins + 1, dtype=torch.float64)
        for j in range(x.shape[1]):
            column = rows[:, j]
            if len(torch.unique(column)) < MIN_DISTINCT:
                continue
            edges = torch.unique(torch.quantile(column, levels))  # sorted; ties collapse
            k = len(edges) - 1
            self.lower_[j, :k] = edges[:-1].to(self.lower_.dtype)
            self.width_[j, :k] = (edges[1:] - edges[:-1]).to(self.width_.dtype)
            self.used_[j, :k] = True
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position = bin_positions(x, self.lower_, self.width_)
        return (position * self.used_).flatten(start_dim=-2)
