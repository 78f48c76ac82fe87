"""Concatenation MLP baselines (pure nn.Module): what a practitioner builds without modelling why a
modality is missing.

Each modality's embedding is zero-filled where absent (torch.where, so even NaN in an absent slot has no
effect), standardised per feature with statistics fit on the training split (encoders differ in scale), concatenated, and passed through a
two-layer MLP to the same multitask heads the MMNAR model uses. Variants:

- zero-fill (use_availability=False): the network sees only the zero-filled concatenation. Its output
  is a function of the zero-filled inputs alone: an absent modality and an observed all-zero vector give
  the same output (tested). It can still guess absence from the zeros, as any zero-filled model can;
  what it lacks is an explicit availability signal.
- with mask (use_availability=True): the 0/1 availability vector is appended to the concatenation.
- modality dropout: the zero-fill variant trained with config.modality_dropout > 0 (the trainer drops
  observed modalities at random, i.e. the missing-at-random assumption); the module is the same.
- structured only: `modalities` restricts the inputs to the tabular modalities; the others are never read.

Trained by mmnar_core.training.trainer.train(config, data, device, build_model=...), so optimisation,
schedule, clipping and early stopping are exactly those of the MMNAR model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mmnar_core.model.config import MMNARConfig
from mmnar_core.model.inputs import InputStandardizer, fit_standardizers
from mmnar_core.model.network import MultitaskHeads


class ConcatMLP(nn.Module):
    """(embeddings per modality, availability) -> logits (B, n_tasks)."""

    def __init__(self, config: MMNARConfig, use_availability: bool, modalities: Sequence[int] | None = None):
        super().__init__()
        if config.use_reconstruction or config.use_contrastive or config.pretrain_epochs:
            raise ValueError(
                "ConcatMLP has no auxiliary objective: set use_reconstruction=False, use_contrastive=False "
                "and pretrain_epochs=0 (mmnar_core.baselines.models.baseline_config does)"
            )
        keep = list(range(config.n_modalities)) if modalities is None else [int(m) for m in modalities]
        if not keep:
            raise ValueError("ConcatMLP needs at least one modality")
        bad = [m for m in keep if not 0 <= m < config.n_modalities]
        if bad or len(set(keep)) != len(keep):
            raise ValueError(f"ConcatMLP: modality indices {keep} must be distinct and in 0..{config.n_modalities - 1}")
        self.config = config
        self.use_availability = use_availability
        self.keep = keep
        d = config.d_model
        self.norms = nn.ModuleList(InputStandardizer(config.input_dims[m]) for m in keep)
        width = sum(config.input_dims[m] for m in keep) + (len(keep) if use_availability else 0)
        self.body = nn.Sequential(
            nn.Linear(width, d),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(d, d),
            nn.GELU(),
            nn.Dropout(config.dropout),
        )
        self.heads = MultitaskHeads(1, d, len(config.tasks), config.dropout)

    def fit_inputs(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> None:
        """Per-feature standardisation fit on the training split (called by the trainer)."""
        fit_standardizers(self.norms, [inputs[m] for m in self.keep], availability[:, self.keep])

    def features(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        """The concatenated network input (zero-filled, normalised, plus the mask when used)."""
        present = availability.bool()
        parts = []
        for norm, m in zip(self.norms, self.keep):
            x = inputs[m]
            parts.append(norm(torch.where(present[:, m : m + 1], x, torch.zeros_like(x))))
        if self.use_availability:
            parts.append(present[:, self.keep].to(parts[0].dtype))
        return torch.cat(parts, dim=-1)

    def forward(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        return self.heads(self.body(self.features(inputs, availability)).unsqueeze(0))[0]
