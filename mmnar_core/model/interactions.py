"""Pairwise interactions of structured features for the wide path (a GA2M inside the model).

Why: the GAM gives each structured feature its own curve, but risk often depends on two values together
(a low blood pressure matters more on a ventilator; a readmission risk that depends on the number of
medications differently per admission type). Gradient boosting finds such pairs on its own, which is
where it still beat the GAM on real records (UCI diabetes-130). Each slot holds one pair of structured
features; its columns are the outer product of the two features' coarse piecewise-linear encodings
(`n_bins` quantile bins each, the same clamp as model.piecewise), so one linear layer fits a bilinear
surface over the pair, still differentiable for the explanations. Which pairs fill the slots, and whether
they are used at all, is chosen on the training and validation splits (training.wide_pairs).

    slot s = (features i, j), encodings a (n_bins), b (n_bins):  columns a_k * b_l, zero where either
    feature's modality is absent or the slot is unused
"""

from __future__ import annotations

import torch
from torch import nn

from mmnar_core.model.piecewise import bin_positions


class PairInteractions(nn.Module):
    """(B, F) standardised structured values + (B, F) presence -> (B, n_slots * n_bins**2)."""

    features_: torch.Tensor
    lower_: torch.Tensor
    width_: torch.Tensor
    used_: torch.Tensor
    slot_used_: torch.Tensor

    def __init__(self, n_slots: int, n_bins: int):
        super().__init__()
        self.n_slots, self.n_bins = n_slots, n_bins
        self.register_buffer("features_", torch.zeros(n_slots, 2, dtype=torch.long))
        self.register_buffer("lower_", torch.zeros(n_slots, 2, n_bins))
        self.register_buffer("width_", torch.ones(n_slots, 2, n_bins))
        self.register_buffer("used_", torch.zeros(n_slots, 2, n_bins, dtype=torch.bool))
        self.register_buffer("slot_used_", torch.zeros(n_slots, dtype=torch.bool))

    @property
    def width(self) -> int:
        return self.n_slots * self.n_bins**2

    @torch.no_grad()
    def set_slot(self, slot: int, pair: tuple[int, int], edges: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Put features `pair` (indices into the structured columns) with their bin edges into `slot`."""
        self.features_[slot] = torch.as_tensor(pair, dtype=torch.long)
        self.used_[slot] = False
        for side, e in enumerate(edges):
            k = len(e) - 1
            self.lower_[slot, side, :k] = e[:-1].to(self.lower_.dtype)
            self.width_[slot, side, :k] = (e[1:] - e[:-1]).to(self.width_.dtype)
            self.used_[slot, side, :k] = True
        self.slot_used_[slot] = True

    @torch.no_grad()
    def clear_slot(self, slot: int) -> None:
        self.slot_used_[slot] = False
        self.used_[slot] = False

    def encode(self, structured: torch.Tensor) -> torch.Tensor:
        """(B, S, 2, n_bins): each slot's two features' bin positions in [0, 1] (0 in unused bins)."""
        values = structured[:, self.features_]  # (B, S, 2)
        return bin_positions(values, self.lower_, self.width_) * self.used_

    def forward(self, structured: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        position = self.encode(structured)
        surface = position[:, :, 0, :, None] * position[:, :, 1, None, :]  # (B, S, n_bins, n_bins)
        both = present[:, self.features_].all(dim=-1) & self.slot_used_  # (B, S)
        return (surface * both[..., None, None].to(surface.dtype)).flatten(start_dim=1)


@torch.no_grad()
def coarse_edges(values: torch.Tensor, n_bins: int) -> torch.Tensor | None:
    """Bin edges of one feature from its training values: quantile edges (ties collapse); two values
    (a flag, a one-hot level) give one bin from the lower to the upper; a constant gives None."""
    column = values.double()
    if len(column) == 0:
        return None
    low, high = column.min(), column.max()
    if not high > low:
        return None
    if len(torch.unique(column)) < 3:
        return torch.stack([low, high])
    edges = torch.unique(torch.quantile(column, torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)))
    return edges if len(edges) >= 3 else torch.stack([low, high])
