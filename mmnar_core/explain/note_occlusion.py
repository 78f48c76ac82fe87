"""Phrase occlusion for notes: the risk with each phrase deleted, for every outcome at once, forward passes only.

Why: Layer Integrated Gradients on the note transformer costs `text_steps` forward + backward passes over
every window, once per outcome; explaining three outcomes took 9 s on a 2-core CPU. Deleting one phrase
changes only the windows that hold it, and the note embedding is a weighted mean over windows
(`TextEncoder.finish` of summed weighted token states), so the note without phrase p is the cached window
sums of the untouched windows plus a fresh pass over the touched ones. One batch of such windows gives
every phrase's effect on every outcome (the head is cheap): effect_t(p) = risk_t(note) - risk_t(note
without p), positive when the phrase raises the risk.

Deletion removes the phrase's tokens from their windows (the remaining tokens close up, attention and
pooling never see the phrase) rather than replacing them by [PAD]: "the note without this phrase" is a
state a clinician can read, and a run of [PAD] tokens is not text the encoder saw in training. Window
boundaries are kept (a real deletion would shift later windows by the phrase's length).

`baseline` is the note with every content token deleted ([CLS] [SEP] in each window); `delta` =
sum of the phrase effects - (risk(note) - risk(baseline)): what one-at-a-time deletion does not add up to
(interactions between phrases), reported as a check, not a convergence error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mmnar_core.cancel import check_cancelled


@dataclass
class Occlusion:
    value: np.ndarray  # (T,) risk with the whole note
    baseline: np.ndarray  # (T,) risk with every content token deleted
    effects: np.ndarray  # (P, T) risk(note) - risk(note without phrase p)
    n_passes: int  # windows run through the transformer (the cost)


def _sums(model, ids: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor, bf16: bool):
    """Per row: (sum of weighted token states (B, D) in float32, sum of weights (B,))."""
    device = ids.device
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        states = model(input_ids=ids, attention_mask=mask).last_hidden_state
    states = states.float()
    return (states * weights.unsqueeze(-1)).sum(dim=1), weights.sum(dim=1)


def _run(model, rows: list[tuple[torch.Tensor, torch.Tensor]], pad: int, batch: int, bf16: bool, device):
    """Rows of (ids, weights) of varying length -> stacked (sums (R, D), totals (R,)), shortest first."""
    order = sorted(range(len(rows)), key=lambda r: len(rows[r][0]))
    sums: list[torch.Tensor | None] = [None] * len(rows)
    totals: list[torch.Tensor | None] = [None] * len(rows)
    for start in range(0, len(order), batch):
        check_cancelled()
        chunk = order[start : start + batch]
        length = max(len(rows[r][0]) for r in chunk)
        ids = torch.full((len(chunk), length), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), length), dtype=torch.long)
        weights = torch.zeros((len(chunk), length), dtype=torch.float32)
        for i, r in enumerate(chunk):
            n = len(rows[r][0])
            ids[i, :n], mask[i, :n], weights[i, :n] = rows[r][0], 1, rows[r][1]
        s, c = _sums(model, ids.to(device), mask.to(device), weights.to(device), bf16)
        for i, r in enumerate(chunk):
            sums[r], totals[r] = s[i], c[i]
    return torch.stack([s for s in sums if s is not None]), torch.stack([c for c in totals if c is not None])


def occlude_phrases(
    encoder,
    windows,
    token_phrase: np.ndarray,
    n_phrases: int,
    head: Callable[[torch.Tensor], torch.Tensor],
    pad_id: int,
    bf16: bool = False,
    batch: int = 16,
) -> Occlusion:
    """`encoder`: the TextEncoder (its `.model` and `.finish`); `windows`: the note's Windows (one note);
    `token_phrase[k]`: the phrase of note token k (-1: none); `head(embeddings (B, D)) -> (B, T)` risks."""
    device = next(encoder.model.parameters()).device
    ids, mask, weights, positions = windows.input_ids, windows.attention_mask, windows.weights, windows.positions
    n_windows = ids.shape[0]
    owner = torch.as_tensor(np.asarray(token_phrase, dtype=np.int64))
    slot_phrase = torch.where(positions >= 0, owner[positions.clamp_min(0)], torch.full_like(positions, -1))
    full = [(ids[w, mask[w] > 0], weights[w, mask[w] > 0]) for w in range(n_windows)]
    rows: list[tuple[torch.Tensor, torch.Tensor]] = list(full)
    touched: list[list[tuple[int, int]]] = [[] for _ in range(n_phrases)]  # phrase -> (window, row)
    empty_rows: list[int] = []
    for w in range(n_windows):
        live = mask[w] > 0
        present = torch.unique(slot_phrase[w][live & (slot_phrase[w] >= 0)]).tolist()
        for p in present:
            keep = live & (slot_phrase[w] != p)
            touched[p].append((w, len(rows)))
            rows.append((ids[w, keep], weights[w, keep]))
        special = live & (positions[w] < 0)  # the empty note: only the special tokens of each window
        empty_rows.append(len(rows))
        rows.append((ids[w, special], weights[w, special]))
    sums, totals = _run(encoder.model, rows, pad_id, batch, bf16, device)
    note_sum, note_total = sums[:n_windows].sum(0), totals[:n_windows].sum(0)
    variants_sum = note_sum.expand(n_phrases + 2, -1).clone()
    variants_total = note_total.expand(n_phrases + 2).clone()
    for p, pairs in enumerate(touched):
        for w, r in pairs:
            variants_sum[p] += sums[r] - sums[w]
            variants_total[p] += totals[r] - totals[w]
    variants_sum[n_phrases] = sums[empty_rows].sum(0)
    variants_total[n_phrases] = totals[empty_rows].sum(0)
    # the last variant is the note itself, through the same float32 head
    with torch.no_grad():
        risks = head(encoder.finish(variants_sum, variants_total)).float().cpu().numpy()
    value, baseline = risks[n_phrases + 1], risks[n_phrases]
    return Occlusion(value, baseline, value[None, :] - risks[:n_phrases], len(rows))
