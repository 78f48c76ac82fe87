"""MMNAR-aware fusion (pure nn.Module): per-modality projection, missingness embedding, gates, masked
self-attention over the available tokens plus a pattern token, availability-weighted readout.

Inputs arrive standardised per feature (mmnar_core.model.inputs). A pattern never seen in training gets
one learned "unseen pattern" token instead of its own never-trained random embedding; the trainer swaps
a small share of training rows to that token so it learns what an average pattern means.

Absent modalities are removed with torch.where, not multiplied away, so their inputs (even NaN) have
no effect on the output at all: the missing path of the model is exact.
"""

from __future__ import annotations

import torch
from torch import nn

from mmnar_core.model.config import MMNARConfig


def pattern_ids(availability: torch.Tensor) -> torch.Tensor:
    """Torch twin of mmnar_core.patterns.encode_pattern (bit m = modality m), tested against it."""
    weights = 2 ** torch.arange(availability.shape[-1], device=availability.device)
    return (availability.long() * weights).sum(dim=-1)


class ModalityProjection(nn.Module):
    """Standardised encoder embedding of one modality -> d_model."""

    def __init__(self, input_dim: int, d_model: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_dim, d_model), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MMNARFusion(nn.Module):
    """(embeddings per modality, availability) -> patient representation h of width d_model."""

    def __init__(self, config: MMNARConfig):
        super().__init__()
        self.config = config
        m, d = config.n_modalities, config.d_model
        self.projections = nn.ModuleList(ModalityProjection(k, d, config.dropout) for k in config.input_dims)
        self.missingness = nn.Sequential(nn.Linear(m, config.missingness_hidden), nn.GELU(),
                                         nn.Linear(config.missingness_hidden, config.missingness_hidden), nn.GELU())
        self.gates = nn.Linear(config.missingness_hidden, m * d)
        self.type_embedding = nn.Parameter(torch.randn(m, d) * 0.02)
        # the pattern token: a learned embedding per pattern id plus one for patterns unseen in training
        # (the last row), or one shared token in the ablation
        self.n_patterns = 2**m if config.use_pattern_embedding else 0
        self.pattern_embedding = nn.Embedding(self.n_patterns + 1, d)
        nn.init.normal_(self.pattern_embedding.weight, std=0.02)
        self.register_buffer("seen_patterns_", torch.ones(max(1, self.n_patterns), dtype=torch.bool))
        layer = nn.TransformerEncoderLayer(d, config.n_heads, config.ff_mult * d, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def project(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        """(B, M, d) projected embeddings e_m, exactly zero where the modality is absent."""
        present = availability.bool().unsqueeze(-1)
        projected = torch.stack([proj(torch.where(present[:, i], x, torch.zeros_like(x)))
                                 for i, (proj, x) in enumerate(zip(self.projections, inputs))], dim=1)
        return torch.where(present, projected, torch.zeros_like(projected))

    @torch.no_grad()
    def fit_patterns(self, availability: torch.Tensor) -> None:
        """Remember which patterns the training split has; the others use the unseen-pattern token."""
        if self.n_patterns:
            seen = torch.zeros_like(self.seen_patterns_)
            seen[pattern_ids(availability.bool().to(seen.device)).unique()] = True
            self.seen_patterns_.copy_(seen)

    def pattern_tokens(self, present: torch.Tensor, unseen: torch.Tensor | None = None) -> torch.Tensor:
        """(B, d) pattern token per row; `unseen` (B,) bool forces the unseen-pattern token (training)."""
        if not self.n_patterns:
            index = torch.zeros(len(present), dtype=torch.long, device=present.device)
        else:
            index = pattern_ids(present)
            known = self.seen_patterns_[index]
            if unseen is not None:
                known = known & ~unseen
            index = torch.where(known, index, torch.full_like(index, self.n_patterns))
        return self.pattern_embedding(index)

    def forward(self, inputs: list[torch.Tensor], availability: torch.Tensor,
                unseen: torch.Tensor | None = None) -> torch.Tensor:
        return self.fuse(self.project(inputs, availability), availability, unseen)

    def fuse(self, projected: torch.Tensor, availability: torch.Tensor, unseen: torch.Tensor | None = None) -> torch.Tensor:
        batch, m, d = projected.shape
        present = availability.bool()
        delta = present.to(projected.dtype)
        z = self.missingness(delta)
        gates = torch.sigmoid(self.gates(z)).view(batch, m, d) if self.config.use_gating else torch.ones_like(projected)
        tokens = gates * projected + self.type_embedding
        tokens = torch.where(present.unsqueeze(-1), tokens, torch.zeros_like(tokens))
        sequence = torch.cat([self.pattern_tokens(present, unseen).unsqueeze(1), tokens], dim=1)
        padding = torch.cat([torch.zeros(batch, 1, dtype=torch.bool, device=present.device), ~present], dim=1)
        out = self.encoder(sequence, src_key_padding_mask=padding)
        out = torch.where(padding.unsqueeze(-1), torch.zeros_like(out), out)
        weights = torch.cat([torch.ones(batch, 1, dtype=delta.dtype, device=delta.device), delta], dim=1)
        pooled = (out * weights.unsqueeze(-1)).sum(dim=1) / weights.sum(dim=1, keepdim=True)
        return self.norm(pooled)
