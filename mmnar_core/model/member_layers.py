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


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout (F.dropout's distribution) with the mask drawn by torch.rand_like: on the CPU,
    F.dropout's bernoulli_ took 15 % of a training step and is 2.6x slower than this."""
    if not training or p == 0.0:
        return x
    return x * (torch.rand_like(x) >= p).to(x.dtype) * (1.0 / (1.0 - p))


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


def flat(layer: MemberLinear, x: torch.Tensor) -> torch.Tensor:
    """Apply a MemberLinear to x (K, B, L, in) -> (K, B, L, out)."""
    k, b, length, _ = x.shape
    return layer(x.reshape(k, b * length, -1)).view(k, b, length, -1)


class MemberEncoderLayer(nn.Module):
    """Pre-norm Transformer encoder layer (attention + GELU feed-forward) for K members at once.

    x (K, B, L, d); `keep` (B, L) bool: which positions may be attended to (absent modalities may not)."""

    def __init__(self, k: int, d: int, n_heads: int, ff: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.norm1, self.norm2 = MemberLayerNorm(k, d), MemberLayerNorm(k, d)
        self.qkv = MemberLinear(k, d, 3 * d, init="xavier")
        nn.init.zeros_(self.qkv.bias)
        self.out = MemberLinear(k, d, d)
        nn.init.zeros_(self.out.bias)
        self.ff1, self.ff2 = MemberLinear(k, d, ff), MemberLinear(k, ff, d)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        k, b, length, d = x.shape
        h, p = self.n_heads, self.dropout if self.training else 0.0
        qkv = flat(self.qkv, self.norm1(x)).view(k * b, length, 3, h, d // h).permute(2, 0, 3, 1, 4)
        mask = keep.view(1, b, 1, 1, length).expand(k, b, 1, 1, length).reshape(k * b, 1, 1, length)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask, dropout_p=p)
        attended = attended.transpose(1, 2).reshape(k, b, length, d)
        x = x + dropout(flat(self.out, attended), p, self.training)
        hidden = dropout(F.gelu(flat(self.ff1, self.norm2(x))), p, self.training)
        return x + dropout(flat(self.ff2, hidden), p, self.training)
