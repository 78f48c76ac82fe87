"""Losses of the method, each with a hand-checked test: masked multitask BCE / focal loss, the
reconstruction MSE, and the symmetric InfoNCE between reconstructions and originals."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_task_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
    kind: str = "bce",
    gamma: float = 2.0,
) -> torch.Tensor:
    """Mean over the (row, task) cells that have a label; labels are 0/1 with NaN where undefined.

    Each task is averaged over its labelled rows, then tasks are averaged, so a rare-label task is
    not drowned by a task defined for everyone.
    """
    known = ~torch.isnan(labels)
    targets = torch.where(known, labels, torch.zeros_like(labels))
    if kind == "bce":
        cell = F.binary_cross_entropy_with_logits(logits, targets, reduction="none", pos_weight=pos_weight)
    elif kind == "focal":
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p = torch.sigmoid(logits)
        p_true = torch.where(targets > 0.5, p, 1 - p)
        cell = (1 - p_true) ** gamma * bce
        if pos_weight is not None:
            cell = torch.where(targets > 0.5, cell * pos_weight, cell)
    else:
        raise ValueError(f"task loss {kind!r} is not accepted (accepted: bce, focal)")
    cell = torch.where(known, cell, torch.zeros_like(cell))
    per_task = cell.sum(dim=0) / known.sum(dim=0).clamp(min=1)
    has_labels = known.any(dim=0)
    if not has_labels.any():
        return logits.sum() * 0.0
    return per_task[has_labels].mean()


def symmetric_info_nce(reconstructed: torch.Tensor, original: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE over a batch of pairs (r_i, x_i), cosine similarities s_ik = cos(r_i, x_k):

    L = 1/(2n) * sum_i [ -log exp(s_ii/T) / sum_k exp(s_ik/T)  -  log exp(s_ii/T) / sum_k exp(s_ki/T) ].

    `reconstructed` (n, dim) or (K, n, dim): K sets of reconstructions of the same originals (n, dim), e.g.
    one per fusion member; the result is the mean of their K losses, computed in one batch of operations."""
    r = F.normalize(reconstructed, dim=-1)
    x = F.normalize(original, dim=-1)
    similarity = r @ x.T / temperature  # (..., n, n)
    matched_rows = similarity.log_softmax(dim=-1).diagonal(dim1=-2, dim2=-1)
    matched_columns = similarity.log_softmax(dim=-2).diagonal(dim1=-2, dim2=-1)
    return -0.5 * (matched_rows.mean() + matched_columns.mean())


def reconstruction_mse(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(reconstructed, original)
