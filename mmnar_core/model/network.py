"""The MMNAR network (pure nn.Module). Training logic lives in mmnar_core.training.

    inputs -> per-feature standardisation (fit on train) -> K fusion members (MMNAR-aware fusion, one head
    per outcome, per-modality reconstruction decoders) -> mean of the members' logits + a wide linear path.

Why K members: independently initialised members trained side by side (each on its own loss) and
averaged are a deep ensemble inside one module, so the bundle, the predictor and every explanation see
one network; averaging removes most of the seed-to-seed spread that made single networks lose to
tuned linear and boosted references. Why the wide path: a linear function of the standardised inputs
and the availability flags (a logistic regression inside the model) carries the strong additive
signal of structured data directly to the logits; the members model what it cannot (interactions,
images, notes, the meaning of a pattern).
"""

from __future__ import annotations

import torch
from torch import nn

from mmnar_core.model.config import MMNARConfig
from mmnar_core.model.fusion import MMNARFusion
from mmnar_core.model.inputs import InputStandardizer, fit_standardizers


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


class FusionMember(nn.Module):
    """One member: MMNAR-aware fusion, multitask heads, reconstruction decoders."""

    def __init__(self, config: MMNARConfig):
        super().__init__()
        self.fusion = MMNARFusion(config)
        self.heads = MultitaskHeads(config.d_model, len(config.tasks), config.dropout)
        self.decoders = nn.ModuleList(
            nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.GELU(), nn.Linear(config.d_model, dim))
            for dim in config.input_dims
        )


class WidePath(nn.Module):
    """Linear logits from the standardised inputs (zero where absent) and the availability flags."""

    def __init__(self, config: MMNARConfig):
        super().__init__()
        self.linear = nn.Linear(sum(config.input_dims) + config.n_modalities, len(config.tasks))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, standardised: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        present = availability.bool()
        parts = [torch.where(present[:, m:m + 1], x, torch.zeros_like(x)) for m, x in enumerate(standardised)]
        parts.append(present.to(standardised[0].dtype))
        return self.linear(torch.cat(parts, dim=-1))


class MMNARModel(nn.Module):
    def __init__(self, config: MMNARConfig):
        super().__init__()
        self.config = config
        self.standardizers = nn.ModuleList(InputStandardizer(dim) for dim in config.input_dims)
        self.members = nn.ModuleList(FusionMember(config) for _ in range(config.n_members))
        self.wide = WidePath(config) if config.use_wide else None

    # ---------------------------------------------------------------- fitted input statistics
    def fit_inputs(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> None:
        """Fit the standardisation and the set of seen patterns on the training split (called by the trainer)."""
        fit_standardizers(self.standardizers, inputs, availability)
        for member in self.members:
            member.fusion.fit_patterns(availability)

    def standardise(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [s(x) for s, x in zip(self.standardizers, inputs)]

    # ---------------------------------------------------------------- prediction
    def member_logits(self, inputs: list[torch.Tensor], availability: torch.Tensor,
                      unseen: torch.Tensor | None = None) -> torch.Tensor:
        """(K, B, n_tasks): each member's logits, the wide path included in every one."""
        x = self.standardise(inputs)
        logits = torch.stack([m.heads(m.fusion(x, availability, unseen)) for m in self.members])
        if self.wide is not None:
            logits = logits + self.wide(x, availability)
        return logits

    def forward(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_tasks): the mean of the members' logits."""
        return self.member_logits(inputs, availability).mean(dim=0)

    def represent(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        """(B, K * d_model): the members' fused representations side by side."""
        x = self.standardise(inputs)
        return torch.cat([m.fusion(x, availability) for m in self.members], dim=-1)

    # ---------------------------------------------------------------- auxiliary objective
    def fuse_without(self, member: int, standardised: list[torch.Tensor], availability: torch.Tensor,
                     hidden: torch.Tensor) -> torch.Tensor:
        """Member `member`'s representation of each row b re-fused with modality `hidden[b]` treated as absent."""
        reduced = availability.clone()
        reduced[torch.arange(len(hidden)), hidden] = False
        return self.members[member].fusion(standardised, reduced)

    def decode(self, member: int, h: torch.Tensor, modality: int) -> torch.Tensor:
        """Member `member`'s reconstruction of modality `modality`'s standardised embedding."""
        return self.members[member].decoders[modality](h)
