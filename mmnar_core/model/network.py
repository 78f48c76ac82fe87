"""The MMNAR network (pure nn.Module): fusion, one head per outcome, and per-modality reconstruction
decoders used by the auxiliary objective. Training logic lives in mmnar_core.training."""

from __future__ import annotations

import torch
from torch import nn

from mmnar_core.model.config import MMNARConfig
from mmnar_core.model.fusion import MMNARFusion


class MultitaskHeads(nn.Module):
    """Shared representation -> one logit per outcome."""

    def __init__(self, d_model: int, n_tasks: int, dropout: float):
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_model, 1))
            for _ in range(n_tasks)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(h) for head in self.heads], dim=-1)


class MMNARModel(nn.Module):
    def __init__(self, config: MMNARConfig):
        super().__init__()
        self.config = config
        self.fusion = MMNARFusion(config)
        self.heads = MultitaskHeads(config.d_model, len(config.tasks), config.dropout)
        self.decoders = nn.ModuleList(
            nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.GELU(), nn.Linear(config.d_model, dim))
            for dim in config.input_dims
        )

    def forward(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_tasks)."""
        return self.heads(self.fusion(inputs, availability))

    def represent(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        return self.fusion(inputs, availability)

    def fuse_without(self, inputs: list[torch.Tensor], availability: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """Representation of each row b re-fused with modality `hidden[b]` treated as absent."""
        reduced = availability.clone()
        reduced[torch.arange(len(hidden)), hidden] = False
        return self.fusion(inputs, reduced)

    def decode(self, h: torch.Tensor, modality: int) -> torch.Tensor:
        """Reconstruct modality `modality`'s encoder embedding from a representation."""
        return self.decoders[modality](h)
