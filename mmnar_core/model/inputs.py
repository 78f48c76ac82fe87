"""Per-feature standardisation of encoder embeddings, fit on the training split and saved with the weights.

Why not LayerNorm over a modality's vector: a structured vector mixes scaled numbers, 0/1 flags and
one-hot columns; normalising each patient's vector by its own mean and sd makes one feature's value
depend on all the others (a high potassium lowers every other lab). Statistics per feature, from the
training rows where the modality is present, keep each feature's meaning.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
from torch import nn

CLIP = 8.0  # standardised values beyond +-8 sd are clipped: one wild value cannot dominate a dot product


class InputStandardizer(nn.Module):
    """x -> clip((x - mean_) / scale_, -CLIP, CLIP); identity until `fit` is called."""

    mean_: torch.Tensor
    scale_: torch.Tensor

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean_", torch.zeros(dim))
        self.register_buffer("scale_", torch.ones(dim))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, present: torch.Tensor) -> InputStandardizer:
        """Mean and sd per feature over the rows where the modality is present (the training split)."""
        rows = x[present.bool()].double()
        if len(rows) >= 2:
            mean = rows.mean(dim=0)
            sd = rows.std(dim=0)
            # constant features (sd 0, e.g. a one-hot level never seen) keep scale 1: they stay constant
            sd = torch.where(sd > 1e-6, sd, torch.ones_like(sd))
            self.mean_.copy_(mean.to(self.mean_.dtype))
            self.scale_.copy_(sd.to(self.scale_.dtype))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean_) / self.scale_).clamp(-CLIP, CLIP)


def fit_standardizers(standardizers: nn.ModuleList, inputs: list[torch.Tensor], availability: torch.Tensor) -> None:
    for m, (standardizer, x) in enumerate(zip(cast(Iterable[InputStandardizer], standardizers), inputs)):
        standardizer.fit(x, availability[:, m])
