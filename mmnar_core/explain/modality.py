"""Modality-level explanations: risk under every subset of a patient's modalities, exact Shapley values
of the modalities, and the estimated value of obtaining an absent modality.

Removing a modality means marking it absent, i.e. the model's own missing path, with the rectifier
correction of the resulting pattern: exactly what the model would say for a patient who never had it.
All subsets are scored in one batch, from embeddings computed once per patient. The value of an absent
modality scores draws from its conditional distribution given the rest (docs/absent_value.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import factorial

import numpy as np
import torch

from mmnar_core.explain.absent_verdict import verdict
from mmnar_core.explain.conditional import ConditionalModality

# score(inputs: list of (B, dim) tensors, availability: (B, M) bool) -> (B, T) risks
ScoreFn = Callable[[list[torch.Tensor], torch.Tensor], np.ndarray]


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


MIN_REFERENCE = 10  # reference patients a conditional model needs (fewer: no estimate)


@dataclass
class ReferenceSet:
    """Embeddings of training patients (a subsample), from which the content of an absent modality is
    imagined (mmnar_core.explain.conditional)."""

    inputs: list[torch.Tensor]  # per modality (R, dim)
    availability: torch.Tensor  # (R, M) bool
    # (modality, regressors) -> its fitted ConditionalModality: the same for every patient with those
    # modalities, so fitted once (a ridge fit on up to 2,000 rows)
    _conditional: dict = field(default_factory=dict, repr=False, compare=False)
    max_cached: int = 128

    def n_having(self, modalities: list[int]) -> int:
        """Reference patients who had all of `modalities`."""
        return int(self.availability[:, modalities].all(dim=1).sum())

    def regressors_for(self, modality: int, observed: list[int]) -> tuple[int, ...]:
        """The patient's observed modalities the model of `modality` conditions on: all of them when at least
        MIN_REFERENCE reference patients had them and `modality`, else the largest subset that has enough."""
        subsets = [
            tuple(m for j, m in enumerate(observed) if (s >> j) & 1) for s in range((1 << len(observed)) - 1, -1, -1)
        ]
        usable = [s for s in subsets if self.n_having([modality, *s]) >= MIN_REFERENCE]
        return max(usable, key=lambda s: (len(s), self.n_having([modality, *s])))

    def conditional(self, modality: int, regressors: tuple[int, ...]) -> ConditionalModality:
        """The fitted model of `modality` given `regressors`, fitted on first use and kept."""
        key = (modality, regressors)
        model = self._conditional.get(key)
        if model is None:
            arrays = [x.double().numpy() for x in self.inputs]
            model = ConditionalModality(modality, regressors).fit(arrays, self.availability.numpy())
            if len(self._conditional) >= self.max_cached:
                self._conditional.pop(next(iter(self._conditional)))
            self._conditional[key] = model
        return model


@dataclass
class AbsentValue:
    modality: int
    mean: np.ndarray  # (T,) mean risk if obtained, over the draws
    p10: np.ndarray
    p90: np.ndarray
    current: np.ndarray  # (T,) risk now
    n_neighbours: int  # reference patients the conditional model was fitted on (the estimate comes from them)
    n_candidates: int  # reference patients who had the modality
    regressors: tuple[int, ...] = ()  # the patient's modalities the estimate conditions on
    n_draws: int = 0  # imagined contents scored
    verdicts: list[str] = field(default_factory=list)  # per task, mmnar_core.explain.absent_verdict

    @property
    def note(self) -> str:
        return (
            f"estimated from what the {self.n_neighbours} training patients who had it and this patient's other "
            f"data showed: {self.n_draws} plausible contents, scored by the model"
        )


def value_of_absent(
    score: ScoreFn,
    inputs: list[torch.Tensor],
    availability: np.ndarray,
    reference: ReferenceSet,
    modality: int,
) -> AbsentValue | None:
    """Risk distribution if `modality` were obtained: draws of its embedding from its conditional
    distribution given the patient's observed embeddings and availability (mmnar_core.explain.conditional,
    fitted on the reference patients), each scored with the patient's own inputs; their mean and 10th / 90th
    percentiles, and a verdict per task. Returns None when fewer than MIN_REFERENCE reference patients had it."""
    availability = np.asarray(availability, dtype=bool)
    if availability[modality]:
        raise ValueError("the modality is already available for this patient")
    n_candidates = reference.n_having([modality])
    if n_candidates < MIN_REFERENCE:
        return None
    observed = torch.from_numpy(availability)
    regressors = reference.regressors_for(modality, [int(m) for m in np.flatnonzero(availability)])
    model = reference.conditional(modality, regressors)
    patient = [x.reshape(1, -1) for x in inputs]
    draws = model.sample([x.detach().cpu().double().numpy() for x in patient], availability)
    batch = [x.expand(len(draws), -1).clone() for x in patient]
    batch[modality] = torch.from_numpy(draws.astype(np.float32)).to(batch[modality].device)
    with_modality = observed.clone()
    with_modality[modality] = True
    risks = np.asarray(score(batch, with_modality.unsqueeze(0).expand(len(draws), -1)))
    current = np.asarray(score(patient, observed.unsqueeze(0)))[0]
    p10, p90 = np.percentile(risks, 10, axis=0), np.percentile(risks, 90, axis=0)
    return AbsentValue(
        modality,
        risks.mean(axis=0),
        p10,
        p90,
        current,
        model.n_fit_,
        n_candidates,
        regressors,
        len(draws),
        [verdict(float(c), float(lo), float(hi)) for c, lo, hi in zip(current, p10, p90)],
    )
