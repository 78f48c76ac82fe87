"""The auxiliary objective of the method: for each patient with at least two observed modalities,
hide one observed modality (chosen uniformly), re-fuse the rest, reconstruct the hidden modality's
embedding (MSE) and align reconstruction and original with a symmetric InfoNCE per modality.

Targets are the embeddings standardised per feature with the statistics fit on train (the model's own
input standardisation), so every modality's MSE is on the same scale whatever its encoder. With several
fusion members each member reconstructs from its own representation and the losses are averaged.
"""

from __future__ import annotations

import torch

from mmnar_core.model.losses import reconstruction_mse, symmetric_info_nce
from mmnar_core.model.network import MMNARModel


def uniform(
    shape: torch.Size | tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """U(0, 1) numbers drawn on the generator's own device, then moved to `device`.

    PyTorch refuses a CPU generator for a CUDA draw; drawing where the generator lives also keeps the
    random choices of a seed identical on CPU and GPU."""
    source = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=source).to(device)


def choose_hidden(
    availability: torch.Tensor, generator: torch.Generator | None = None, fraction: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows with >= 2 observed modalities (each kept with probability `fraction`), and for each the index of
    one observed modality to hide."""
    present = availability.bool()
    eligible = present.sum(dim=1) >= 2
    if fraction < 1.0:  # drawn only then, so the default keeps the random choices it always made
        eligible &= uniform(eligible.shape, generator, present.device) < fraction
    rows = torch.nonzero(eligible).flatten()
    scores = uniform(present.shape, generator, present.device)
    scores = torch.where(present, scores, torch.full_like(scores, -1.0))
    return rows, scores.argmax(dim=1)[rows]


def auxiliary_losses(
    model: MMNARModel, inputs: list[torch.Tensor], availability: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction MSE, symmetric InfoNCE), each averaged over the rows that had a modality hidden
    and over the fusion members (a pass of its own; the trainer's stage 2 shares the task's pass)."""
    rows, hidden = choose_hidden(availability, generator)
    if len(rows) == 0:
        zero = inputs[0].new_zeros(())
        return zero, zero
    standardised = model.standardise(inputs)
    h = model.fuse_without([x[rows] for x in standardised], availability[rows], hidden)  # (K, R, d)
    return reconstruction_losses(model, standardised, rows, hidden, h)


def reconstruction_losses(
    model: MMNARModel, standardised: list[torch.Tensor], rows: torch.Tensor, hidden: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(MSE, InfoNCE) of reconstructing modality `hidden[r]` of row `rows[r]` (standardised inputs of the
    whole batch) from `h` (K, R, d), its representation re-fused without that modality."""
    config = model.config
    zero = standardised[0].new_zeros(())
    if len(rows) == 0:
        return zero, zero
    mse, nce, total = zero, zero, 0
    for m in range(config.n_modalities):
        chosen = hidden == m
        count = int(chosen.sum())
        if count == 0:
            continue
        target = standardised[m][rows[chosen]]
        reconstructed = model.decode(h[:, chosen], m)  # (K, count, dim)
        mse = mse + reconstruction_mse(reconstructed, target.expand_as(reconstructed)) * count
        if count >= 2:  # each member's InfoNCE, averaged over the members
            nce = nce + symmetric_info_nce(reconstructed, target, config.temperature) * count
        total += count
    return mse / total, nce / total
