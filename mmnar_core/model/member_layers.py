"""Layers that hold K independent members' weights side by side and run them in one batched matmul.

Why: an ensemble of K small fusion networks run one after another costs K times the Python and kernel
overhead of one, which on a CPU dominates networks this small. Holding each weight as (K, in, out) and
activations as (K, B, ...) runs the K members in the same few large operations (torch.baddbmm / matmul),
while every member keeps its own parameters, dropout masks and gradients: mathematically K independent
networks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DROPOUT_LEVELS = 2**15  # the keep test reads 15 random bits per element: p is used as round(p * 2**15) / 2**15


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout: each element kept with probability 1 - p and scaled by 1 / (1 - p).

    Why not F.dropout or torch.rand_like: the CPU draws one random float per element slowly (bernoulli_
    took 15 % of a training step, rand_like 13 %), and one random int32 word costs about what one float
    does. Each word from `random_()` is uniform on [0, 2**31); its two 16-bit halves masked to 15 bits are
    two independent uniform draws on [0, 2**15), one per element, so the masks cost half the draws. The
    rate is exact to 1/32768 (0.1 is used as 0.100006)."""
    if not training or p == 0.0:
        return x
    threshold = round(p * DROPOUT_LEVELS)
    if threshold >= DROPOUT_LEVELS:
        return torch.zeros_like(x)
    n = x.numel()
    words = torch.empty((n + 1) // 2, dtype=torch.int32, device=x.device).random_()
    draws = (words & 0x7FFF7FFF).view(torch.int16)[:n].view(x.shape)
    return torch.where(draws >= threshold, x * (DROPOUT_LEVELS / (DROPOUT_LEVELS - threshold)), 0.0)


class MemberLinear(nn.Module):
    """x (K, B, in) or (B, in) shared by all members -> (K, B, out); weight (K, in, out)."""

    def __init__(self, k: int, fan_in: int, fan_out: int, init: str = "uniform"):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, fan_in, fan_out))
        self.bias = nn.Parameter(torch.zeros(k, 1, fan_out))
        if init == "xavier":  # as nn.MultiheadAttention initialises its projections
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            nn.init.uniform_(self.weight, -bound, bound)
        else:  # as nn.Linear: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
            bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
            nn.init.uniform_(self.weight, -bound, bound)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # the same input for every member
            return torch.matmul(x, self.weight) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class MemberLayerNorm(nn.Module):
    """LayerNorm over the last dimension with a per-member scale and shift; x (K, ..., d)."""

    def __init__(self, k: int, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(k, d))
        self.bias = nn.Parameter(torch.zeros(k, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return F.layer_norm(x, x.shape[-1:]) * self.weight.view(shape) + self.bias.view(shape)


def attend(
    q: torch.Tensor, key: torch.Tensor, value: torch.Tensor, keep: torch.Tensor, p: float, training: bool
) -> torch.Tensor:
    """Masked softmax attention (what F.scaled_dot_product_attention computes) with dropout on its weights.
    q, key, value (..., L, d_head); `keep` (..., L) bool, broadcastable: which keys may be attended to
    (each query must keep at least one: the pattern token always is).

    Why written out: the sequences here are a handful of tokens (a pattern token and one per modality). For
    them PyTorch's CPU attention kernels were 1.6x slower forward and backward than these few operations,
    and its math path draws the dropout mask with bernoulli_. The scores are laid out keys-first
    (..., L_key, L_query) because a softmax over a short last dimension is 2.5x slower on the CPU than over
    the one before it."""
    scores = torch.matmul(key, q.transpose(-1, -2)) * (q.shape[-1] ** -0.5)  # (..., L_key, L_query)
    weights = torch.softmax(scores.masked_fill(~keep.unsqueeze(-1), float("-inf")), dim=-2)
    return torch.matmul(dropout(weights, p, training).transpose(-1, -2), value)


class MemberEncoderLayer(nn.Module):
    """Pre-norm Transformer encoder layer (attention + GELU feed-forward) for K members at once, run on the
    present tokens only.

    x (K, P, d): the P tokens that are present, packed (`positions` (P,) are their indices in the flattened
    (B, L) grid, `keep` (B, L) bool that grid). Why packed: an absent modality's token is never attended to
    and never read out, so its per-token work (norms, projections, feed-forward, a third of the layer's
    tokens on a typical cohort) was thrown away; only the attention itself runs on the (B, L) grid."""

    def __init__(self, k: int, d: int, n_heads: int, ff: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.norm1, self.norm2 = MemberLayerNorm(k, d), MemberLayerNorm(k, d)
        self.qkv = MemberLinear(k, d, 3 * d, init="xavier")
        nn.init.zeros_(self.qkv.bias)
        self.out = MemberLinear(k, d, d)
        nn.init.zeros_(self.out.bias)
        self.ff1, self.ff2 = MemberLinear(k, d, ff), MemberLinear(k, ff, d)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        k, _, d = x.shape
        b, length = keep.shape
        h, p = self.n_heads, self.dropout if self.training else 0.0
        grid = x.new_zeros(k, b * length, 3 * d).index_copy(1, positions, self.qkv(self.norm1(x)))
        q, key, value = grid.view(k, b, length, 3, h, d // h).permute(3, 0, 1, 4, 2, 5).unbind(0)
        attended = attend(q, key, value, keep.view(1, b, 1, length), p, self.training)  # (K, B, H, L, d/H)
        attended = attended.transpose(2, 3).reshape(k, b * length, d).index_select(1, positions)
        x = x + dropout(self.out(attended), p, self.training)
        hidden = dropout(F.gelu(self.ff1(self.norm2(x))), p, self.training)
        return x + dropout(self.ff2(hidden), p, self.training)
