"""The MMNAR network (pure nn.Module). Training logic lives in mmnar_core.training.

    inputs -> per-feature standardisation (fit on train) -> K fusion members (MMNAR-aware fusion, one head
    per outcome, per-modality reconstruction decoders) -> mean of the members' logits + a wide linear path.

Why K members: independently initialised members, each trained on its own loss and averaged, are a
deep ensemble inside one module, so the bundle, the predictor and every explanation see one network;
averaging removes most of the seed-to-seed spread that made single networks lose to tuned linear and
boosted references. The members run side by side in batched matmuls (member_layers). Why the wide
path: a linear function of the standardised inputs and the availability flags (a logistic regression
inside the model) carries the strong additive signal of structured data straight to the logits; the
members model what it cannot (interactions, images, notes, the meaning of a pattern).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from mmnar_core.model.config import MMNARConfig
from mmnar_core.model.fusion import MMNARFusion
from mmnar_core.model.inputs import InputStandardizer, fit_standardizers
from mmnar_core.model.interactions import PairInteractions
from mmnar_core.model.member_layers import MemberLinear, dropout
from mmnar_core.model.piecewise import PiecewiseLinearEncoding


class MultitaskHeads(nn.Module):
    """Shared representation -> one logit per outcome (one MLP head per task, per member)."""

    def __init__(self, k: int, d_model: int, n_tasks: int, dropout: float, zero_output: bool = False):
        super().__init__()
        self.dropout = dropout
        self.hidden = nn.ModuleList(MemberLinear(k, d_model, d_model) for _ in range(n_tasks))
        out = [MemberLinear(k, d_model, 1) for _ in range(n_tasks)]
        if zero_output:  # start at zero: the untrained network's logits are the wide path's
            for layer in out:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.out = nn.ModuleList(out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (K, B, d) -> logits (K, B, n_tasks)."""
        p = self.dropout if self.training else 0.0
        return torch.cat(
            [out(dropout(F.gelu(hidden(h)), p, self.training)) for hidden, out in zip(self.hidden, self.out)], dim=-1
        )


class Decoders(nn.Module):
    """Per modality: representation (K, R, d) -> reconstruction of its standardised embedding (K, R, dim)."""

    def __init__(self, k: int, d_model: int, input_dims: list[int]):
        super().__init__()
        self.hidden = nn.ModuleList(MemberLinear(k, d_model, d_model) for _ in input_dims)
        self.out = nn.ModuleList(MemberLinear(k, d_model, dim) for dim in input_dims)

    def forward(self, h: torch.Tensor, modality: int) -> torch.Tensor:
        return self.out[modality](F.gelu(self.hidden[modality](h)))


class WidePath(nn.Module):
    """Linear logits from the standardised inputs (zero where absent), the piecewise-linear bins of the
    structured modalities' features (a GAM; zero where absent), the availability flags and, in
    `wide_pairs` slots per task, pairwise interactions of structured features (a GA2M; zero where absent)."""

    def __init__(self, config: MMNARConfig):
        super().__init__()
        binned = (
            [m for m, name in enumerate(config.modalities) if name in config.wide_binned] if config.wide_bins else []
        )
        self.binned = binned
        self.bins = nn.ModuleList(PiecewiseLinearEncoding(config.input_dims[m], config.wide_bins) for m in binned)
        slots = config.wide_pairs * len(config.tasks) if binned else 0
        self.pairs = PairInteractions(slots, config.wide_pair_bins) if slots else None
        width = (
            sum(config.input_dims) + config.n_modalities + sum(config.input_dims[m] * config.wide_bins for m in binned)
        )
        self.linear = nn.Linear(width, len(config.tasks))
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        # the pairs' weights apart, made without a random draw: a config whose pairs validation turns down
        # builds, trains and predicts exactly as before pairs existed (the same random stream)
        self.pair_weight = (
            nn.Parameter(torch.zeros(len(config.tasks), self.pairs.width)) if self.pairs is not None else None
        )

    def fit(self, standardised: list[torch.Tensor], availability: torch.Tensor) -> None:
        """Bin edges from the training rows (after the standardisation is fit)."""
        for encoding, m in zip(cast(Iterable[PiecewiseLinearEncoding], self.bins), self.binned):
            encoding.fit(standardised[m], availability[:, m])

    def structured(self, standardised: list[torch.Tensor], availability: torch.Tensor):
        """(B, F) the binned modalities' standardised columns side by side and (B, F) their presence."""
        present = availability.bool()
        values = torch.cat([standardised[m] for m in self.binned], dim=-1)
        mask = torch.cat([present[:, m : m + 1].expand_as(standardised[m]) for m in self.binned], dim=-1)
        return values, mask

    def features(self, standardised: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        """(B, width): what the linear layer reads; also the design matrix of its logistic-regression start
        (the pair columns, read by `pair_weight`, come from `pairs` and follow these in `set_weights`)."""
        present = availability.bool()
        parts = [torch.where(present[:, m : m + 1], x, torch.zeros_like(x)) for m, x in enumerate(standardised)]
        parts.append(present.to(standardised[0].dtype))
        for encoding, m in zip(self.bins, self.binned):
            parts.append(encoding(standardised[m]) * present[:, m : m + 1])
        return torch.cat(parts, dim=-1)

    def forward(self, standardised: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        logits = self.linear(self.features(standardised, availability))
        if self.pairs is None or self.pair_weight is None or not bool(self.pairs.slot_used_.any()):
            return logits  # no pair kept: skip their cost
        # each task reads its own slots only (the block diagonal), also if the wide path is trained
        per_task = self.pair_weight.shape[1] // self.pair_weight.shape[0]
        slot_task = torch.arange(self.pair_weight.shape[1], device=self.pair_weight.device) // per_task
        own = slot_task == torch.arange(self.pair_weight.shape[0], device=self.pair_weight.device)[:, None]
        weight = self.pair_weight * own
        return logits + F.linear(self.pairs(*self.structured(standardised, availability)), weight)

    @torch.no_grad()
    def set_weights(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Weights over `features`' columns (pair columns last) and the bias: the logistic start's copy-in."""
        width = self.linear.in_features
        self.linear.weight.copy_(weight[:, :width])
        self.linear.bias.copy_(bias)
        if self.pair_weight is not None:
            self.pair_weight.copy_(weight[:, width:])


class MMNARModel(nn.Module):
    def __init__(self, config: MMNARConfig):
        super().__init__()
        self.config = config
        k = config.n_members
        self.standardizers = nn.ModuleList(InputStandardizer(dim) for dim in config.input_dims)
        self.fusion = MMNARFusion(config)
        self.heads = MultitaskHeads(k, config.d_model, len(config.tasks), config.dropout, zero_output=config.use_wide)
        self.decoders = Decoders(k, config.d_model, config.input_dims)
        self.wide = WidePath(config) if config.use_wide else None

    # ---------------------------------------------------------------- fitted input statistics
    def fit_inputs(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> None:
        """Fit the standardisation, the set of seen patterns and the wide path's bins on the training split."""
        fit_standardizers(self.standardizers, inputs, availability)
        self.fusion.fit_patterns(availability)
        if self.wide is not None:
            self.wide.fit(self.standardise(inputs), availability)

    def standardise(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [s(x) for s, x in zip(self.standardizers, inputs)]

    # ---------------------------------------------------------------- prediction
    def member_logits(
        self, inputs: list[torch.Tensor], availability: torch.Tensor, unseen: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(K, B, n_tasks): each member's logits, the wide path included in every one."""
        x = self.standardise(inputs)
        return self._logits(self.fusion(x, availability, unseen), x, availability)

    def _logits(self, h: torch.Tensor, x: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        """(K, B, n_tasks) logits of representations h (K, B, d): the heads plus the shared wide path."""
        logits = self.heads(h)
        return logits if self.wide is None else logits + self.wide(x, availability)

    def member_logits_and_without(
        self,
        inputs: list[torch.Tensor],
        availability: torch.Tensor,
        rows: torch.Tensor,
        hidden: torch.Tensor,
        unseen: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """One training pass (MMNARFusion.forward_and_without): each member's logits (K, B, n_tasks) as
        `member_logits` gives them, the standardised inputs, and the representations (K, R, d) of rows
        `rows` re-fused with modality `hidden[r]` absent, as `fuse_without` gives them."""
        x = self.standardise(inputs)
        h, without = self.fusion.forward_and_without(x, availability, rows, hidden, unseen)
        return self._logits(h, x, availability), x, without

    def forward(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        """Logits (B, n_tasks): the mean of the members' logits."""
        return self.member_logits(inputs, availability).mean(dim=0)

    def represent(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        """(B, K * d_model): the members' fused representations side by side."""
        h = self.fusion(self.standardise(inputs), availability)
        return h.permute(1, 0, 2).reshape(h.shape[1], -1)

    # ---------------------------------------------------------------- auxiliary objective
    def fuse_without(
        self, standardised: list[torch.Tensor], availability: torch.Tensor, hidden: torch.Tensor
    ) -> torch.Tensor:
        """Every member's representation (K, B, d) of each row b re-fused with modality `hidden[b]` absent."""
        reduced = availability.clone()
        reduced[torch.arange(len(hidden)), hidden] = False
        return self.fusion(standardised, reduced)

    def decode(self, h: torch.Tensor, modality: int) -> torch.Tensor:
        """Each member's reconstruction (K, R, dim) of modality `modality`'s standardised embedding."""
        return self.decoders(h, modality)
