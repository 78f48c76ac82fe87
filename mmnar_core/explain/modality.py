"""Modality-level explanations: risk under every subset of a patient's modalities, exact Shapley values
of the modalities, and the estimated value of obtaining an absent modality.

Removing a modality means marking it absent, i.e. the model's own missing path, with the rectifier
correction of the resulting pattern: exactly what the model would say for a patient who never had it.
All subsets are scored in one batch, from embeddings computed once per patient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import factorial

import numpy as np
import torch

# score(inputs: list of (B, dim) tensors, availability: (B, M) bool) -> (B, T) risks
ScoreFn = Callable[[list[torch.Tensor], torch.Tensor], np.ndarray]
# represent(inputs, availability) -> (B, d) fused representation
RepresentFn = Callable[[list[torch.Tensor], torch.Tensor], np.ndarray]


@dataclass
class WhatIf:
    available: list[int]  # indices of the patient's available modalities, in modality order
    subset_masks: np.ndarray  # (2^k, M) availability of each scored subset; row s keeps available[j] iff bit j of s
    risks: np.ndarray  # (2^k, T)

    def risk_without(self, removed: set[int]) -> np.ndarray:
        keep = sum(1 << j for j, m in enumerate(self.available) if m not in removed)
        return self.risks[keep]


def subset_availability(availability: np.ndarray) -> tuple[list[int], np.ndarray]:
    """All 2^k sub-patterns of one patient's availability (row s keeps available modality j iff bit j of s)."""
    available = [int(i) for i in np.flatnonzero(availability)]
    k = len(available)
    masks = np.zeros((1 << k, len(availability)), dtype=bool)
    for s in range(1 << k):
        for j, m in enumerate(available):
            masks[s, m] = bool((s >> j) & 1)
    return available, masks


def what_if(score: ScoreFn, inputs: list[torch.Tensor], availability: np.ndarray) -> WhatIf:
    """Risks for every subset of the available modalities, in one batched call."""
    available, masks = subset_availability(np.asarray(availability, dtype=bool))
    batch = [x.reshape(1, -1).expand(len(masks), -1) for x in inputs]
    risks = score(batch, torch.from_numpy(masks))
    return WhatIf(available, masks, np.asarray(risks))


def shapley_values(result: WhatIf) -> np.ndarray:
    """Exact Shapley value of each available modality (k, T):
    phi_j = sum over subsets S without j of |S|! (k - |S| - 1)! / k! * (v(S + j) - v(S)).
    They sum to v(all) - v(none) exactly."""
    k = len(result.available)
    phi = np.zeros((k, result.risks.shape[1]))
    for j in range(k):
        bit = 1 << j
        for s in range(1 << k):
            if s & bit:
                continue
            size = bin(s).count("1")
            weight = factorial(size) * factorial(k - size - 1) / factorial(k)
            phi[j] += weight * (result.risks[s | bit] - result.risks[s])
    return phi


@dataclass
class ReferenceSet:
    """Embeddings of training patients (a subsample), used to imagine an absent modality."""

    inputs: list[torch.Tensor]  # per modality (R, dim)
    availability: torch.Tensor  # (R, M) bool
    # (modality, observed pattern) -> fused representations of the candidates: the same for every patient
    # with that pattern, so computed once (a fusion forward over up to 2,000 rows per absent modality)
    _represented: dict = field(default_factory=dict, repr=False, compare=False)
    max_cached: int = 128

    def candidates_represented(self, represent: RepresentFn, modality: int, observed: torch.Tensor):
        """(candidate rows, their inputs, their representation on the patient's observed modalities) for
        the reference patients who had `modality`; cached per (modality, observed pattern)."""
        key = (modality, tuple(bool(b) for b in observed.tolist()))
        cached = self._represented.get(key)
        if cached is None:
            candidates = torch.nonzero(self.availability[:, modality]).flatten()
            ref_inputs = [x[candidates] for x in self.inputs]
            h_ref = represent(ref_inputs, self.availability[candidates] & observed) if len(candidates) else None
            cached = (candidates, ref_inputs, h_ref)
            if len(self._represented) >= self.max_cached:
                self._represented.pop(next(iter(self._represented)))
            self._represented[key] = cached
        return cached


@dataclass
class AbsentValue:
    modality: int
    mean: np.ndarray  # (T,) mean risk if obtained
    p10: np.ndarray
    p90: np.ndarray
    current: np.ndarray  # (T,) risk now
    n_neighbours: int
    n_candidates: int  # reference patients who had the modality


def value_of_absent(
    score: ScoreFn,
    represent: RepresentFn,
    inputs: list[torch.Tensor],
    availability: np.ndarray,
    reference: ReferenceSet,
    modality: int,
    k: int = 25,
) -> AbsentValue | None:
    """Risk distribution if `modality` were obtained, estimated from the k reference patients who had it
    and whose fused representation of the patient's observed modalities is closest to the patient's.
    Each neighbour lends its embedding of the modality; the patient's own inputs stay as they are.
    Returns None when no reference patient had the modality."""
    availability = np.asarray(availability, dtype=bool)
    if availability[modality]:
        raise ValueError("the modality is already available for this patient")
    observed = torch.from_numpy(availability)
    # compared on the patient's observed modalities only
    candidates, ref_inputs, h_ref = reference.candidates_represented(represent, modality, observed)
    if len(candidates) == 0:
        return None
    patient = [x.reshape(1, -1) for x in inputs]
    h_patient = represent(patient, observed.unsqueeze(0))
    distance = np.linalg.norm(h_ref - h_patient, axis=1)
    nearest = np.argsort(distance, kind="stable")[: min(k, len(candidates))]
    batch = [x.reshape(1, -1).expand(len(nearest), -1).clone() for x in inputs]
    batch[modality] = ref_inputs[modality][torch.from_numpy(nearest)]
    with_modality = observed.clone()
    with_modality[modality] = True
    risks = np.asarray(score(batch, with_modality.unsqueeze(0).expand(len(nearest), -1)))
    current = np.asarray(score(patient, observed.unsqueeze(0)))[0]
    return AbsentValue(
        modality,
        risks.mean(axis=0),
        np.percentile(risks, 10, axis=0),
        np.percentile(risks, 90, axis=0),
        current,
        len(nearest),
        int(len(candidates)),
    )
