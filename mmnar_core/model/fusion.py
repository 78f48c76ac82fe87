"""MMNAR-aware fusion (pure nn.Module) for K independent members at once: per-modality projection,
missingness embedding z = MLP(δ), gates g_m = sigmoid(W_m z + b_m), tokens t_m = δ_m (g_m ⊙ e_m + type_m),
masked self-attention over the available tokens plus a pattern token, availability-weighted readout.

Inputs arrive standardised per feature (mmnar_core.model.inputs). Each member has its own weights
(mmnar_core.model.member_layers); the output is (K, B, d). Absent modalities are never computed, not
multiplied away: a modality is projected only for the rows that have it, and only present tokens enter
the layers (packed), so their inputs (even NaN) have no effect on the output at all: the missing path of
the model is exact. A pattern never seen in training gets one learned "unseen pattern"
token instead of its own never-trained random embedding; the trainer shows a small share of training
rows that token so it learns what an average pattern means.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmnar_core.model.config import MMNARConfig
from mmnar_core.model.member_layers import MemberEncoderLayer, MemberLayerNorm, MemberLinear, dropout


def pattern_ids(availability: torch.Tensor) -> torch.Tensor:
    """Torch twin of mmnar_core.patterns.encode_pattern (bit m = modality m), tested against it."""
    weights = 2 ** torch.arange(availability.shape[-1], device=availability.device)
    return (availability.long() * weights).sum(dim=-1)


class MMNARFusion(nn.Module):
    """(standardised embeddings per modality, availability) -> representations h (K, B, d_model)."""

    seen_patterns_: torch.Tensor

    def __init__(self, config: MMNARConfig):
        super().__init__()
        self.config = config
        k, m, d, hidden = config.n_members, config.n_modalities, config.d_model, config.missingness_hidden
        self.project_in = nn.ModuleList(MemberLinear(k, dim, d) for dim in config.input_dims)
        self.project_out = nn.ModuleList(MemberLinear(k, d, d) for _ in config.input_dims)
        self.missingness = nn.ModuleList([MemberLinear(k, m, hidden), MemberLinear(k, hidden, hidden)])
        self.gates = MemberLinear(k, hidden, m * d)
        self.type_embedding = nn.Parameter(torch.randn(k, m, d) * 0.02)
        # the pattern token: a learned embedding per pattern id plus one for patterns unseen in training
        # (the last row), or one shared token in the ablation
        self.n_patterns = 2**m if config.use_pattern_embedding else 0
        self.pattern_embedding = nn.Parameter(torch.randn(k, self.n_patterns + 1, d) * 0.02)
        self.register_buffer("seen_patterns_", torch.ones(max(1, self.n_patterns), dtype=torch.bool))
        self.layers = nn.ModuleList(
            MemberEncoderLayer(k, d, config.n_heads, config.ff_mult * d, config.dropout) for _ in range(config.n_layers)
        )
        self.norm = MemberLayerNorm(k, d)

    @torch.no_grad()
    def fit_patterns(self, availability: torch.Tensor) -> None:
        """Remember which patterns the training split has; the others use the unseen-pattern token."""
        if self.n_patterns:
            seen = torch.zeros_like(self.seen_patterns_)
            seen[pattern_ids(availability.bool().to(seen.device)).unique()] = True
            self.seen_patterns_.copy_(seen)

    def pattern_index(self, present: torch.Tensor, unseen: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) row of the pattern table per patient; `unseen` (B,) bool forces the unseen token (training)."""
        if not self.n_patterns:
            return torch.zeros(len(present), dtype=torch.long, device=present.device)
        index = pattern_ids(present)
        known = self.seen_patterns_[index]
        if unseen is not None:
            known = known & ~unseen
        return torch.where(known, index, torch.full_like(index, self.n_patterns))

    def project(self, inputs: list[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """(K, B, M, d) projected embeddings e_m, exactly zero where the modality is absent. Only the rows
        that have modality m are projected: absent rows cost nothing and (even NaN) cannot affect anything."""
        p = self.config.dropout if self.training else 0.0
        k, batch = self.config.n_members, present.shape[0]
        out = []
        for i, x in enumerate(inputs):
            rows = present[:, i].nonzero().squeeze(1)
            everyone = len(rows) == batch
            e = F.gelu(self.project_in[i](x if everyone else x.index_select(0, rows)))
            e = self.project_out[i](dropout(e, p, self.training))
            out.append(e if everyone else e.new_zeros(k, batch, e.shape[-1]).index_copy(1, rows, e))
        return torch.stack(out, dim=2)

    def forward(
        self, inputs: list[torch.Tensor], availability: torch.Tensor, unseen: torch.Tensor | None = None
    ) -> torch.Tensor:
        present = availability.bool()
        return self.fuse(self.project(inputs, present), present, unseen)

    def forward_and_without(
        self,
        inputs: list[torch.Tensor],
        availability: torch.Tensor,
        rows: torch.Tensor,
        hidden: torch.Tensor,
        unseen: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, B, d) representations of every row, and (K, R, d) of rows `rows` re-fused with modality
        `hidden[r]` absent (the auxiliary objective's input), in one pass.

        Why one pass: a modality's projection does not depend on the others, so the re-fused rows reuse
        the projections just computed (they then share its dropout masks) and run through the attention
        in the same batch: no second projection of the wide embeddings (about a quarter of the auxiliary
        pass's multiply-adds) and one set of operations instead of two (7-16 % off a CPU training epoch,
        benchmarks/README.md). The hidden modality's token is left out of `fuse`'s pack exactly as an
        absent one is, so it has no effect on the result."""
        present = availability.bool()
        projected = self.project(inputs, present)
        batch = present.shape[0]
        reduced = present[rows].clone()
        reduced[torch.arange(len(rows), device=present.device), hidden] = False
        if unseen is not None:  # the re-fused rows keep their own (reduced) pattern, as a separate pass did
            unseen = torch.cat([unseen, torch.zeros(len(rows), dtype=torch.bool, device=unseen.device)])
        h = self.fuse(torch.cat([projected, projected[:, rows]], dim=1), torch.cat([present, reduced]), unseen)
        return h[:, :batch], h[:, batch:]

    def fuse(self, projected: torch.Tensor, present: torch.Tensor, unseen: torch.Tensor | None = None) -> torch.Tensor:
        """(K, B, M, d) projections and (B, M) availability -> (K, B, d): gates, tokens, attention, readout."""
        k, batch, m, d = projected.shape
        delta = present.to(projected.dtype)
        z = F.gelu(self.missingness[1](F.gelu(self.missingness[0](delta))))
        gates = torch.sigmoid(self.gates(z)).view(k, batch, m, d) if self.config.use_gating else 1.0
        tokens = gates * projected + self.type_embedding.unsqueeze(1)
        pattern = self.pattern_embedding[:, self.pattern_index(present, unseen)]  # (K, B, d)
        sequence = torch.cat([pattern.unsqueeze(2), tokens], dim=2)  # (K, B, L = M + 1, d)
        keep = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=present.device), present], dim=1)
        # only the present tokens go through the layers (packed); absent ones are never read
        positions = keep.reshape(-1).nonzero().squeeze(1)
        packed = sequence.reshape(k, batch * (m + 1), d).index_select(1, positions)
        for layer in self.layers:
            packed = layer(packed, keep, positions)
        summed = packed.new_zeros(k, batch, d).index_add(1, positions // (m + 1), packed)
        pooled = summed / keep.sum(dim=1).to(summed.dtype).view(1, batch, 1)
        return self.norm(pooled)
