"""The auxiliary objective of the method: for each patient with at least two observed modalities,
hide one observed modality (chosen uniformly), re-fuse the rest, reconstruct the hidden modality's
encoder embedding (MSE) and align reconstruction and original with a symmetric InfoNCE per modality.

Targets are the encoder embeddings standardised per vector (zero mean, unit variance over their
dimensions), so every modality's MSE is on the same scale whatever its encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmnar_core.model.losses import reconstruction_mse, symmetric_info_nce
from mmnar_core.model.network import MMNARModel


def choose_hidden(availability: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows with >= 2 observed modalities, and for each the index of one observed modality to hide."""
    present = availability.bool()
    rows = torch.nonzero(present.sum(dim=1) >= 2).flatten()
    scores = torch.rand(present.shape, generator=generator, device=present.device)
    scores = torch.where(present, scores, torch.full_like(scores, -1.0))
    return rows, scores.argmax(dim=1)[rows]


def auxiliary_losses(model: MMNARModel, inputs: list[torch.Tensor], availability: torch.Tensor,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction MSE, symmetric InfoNCE), each averaged over the rows that had a modality hidden."""
    config = model.config
    zero = inputs[0].new_zeros(())
    rows, hidden = choose_hidden(availability, generator)
    if len(rows) == 0:
        return zero, zero
    h = model.fuse_without([x[rows] for x in inputs], availability[rows], hidden)
    mse, nce, total = zero, zero, 0
    for m in range(config.n_modalities):
        chosen = hidden == m
        count = int(chosen.sum())
        if count == 0:
            continue
        target = inputs[m][rows][chosen]
        target = F.layer_norm(target, target.shape[-1:])
        reconstructed = model.decode(h[chosen], m)
        mse = mse + reconstruction_mse(reconstructed, target) * count
        if count >= 2:
            nce = nce + symmetric_info_nce(reconstructed, target, config.temperature) * count
        total += count
    return mse / total, nce / total
