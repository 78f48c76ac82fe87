"""What training reads: per-modality embedding matrices, availability, labels and splits, as tensors.

Built only from a loaded Dataset and its cached embeddings. Split disjointness by patient (group_id)
is asserted here, on the data path itself, not only when the dataset was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import numpy as np
import torch

from mmnar_core.dataset import Dataset, label_column, reference_column
from mmnar_core.patterns import encode_pattern
from mmnar_core.schema import ModalityKind


class SplitLeakError(AssertionError):
    """A patient (group) appears in more than one split."""


def assert_disjoint_splits(group_ids: np.ndarray, splits: np.ndarray) -> None:
    seen: dict[str, str] = {}
    for group, split in zip(np.asarray(group_ids).astype(str).tolist(), np.asarray(splits).astype(str).tolist()):
        first = seen.setdefault(group, split)
        if first != split:
            raise SplitLeakError(f"patient group {group!r} is in both {first!r} and {split!r}")


@dataclass
class ModelData:
    modalities: list[str]
    tasks: list[str]
    inputs: list[torch.Tensor]  # per modality (N, dim) float32, zeros where absent
    availability: torch.Tensor  # (N, M) bool
    labels: torch.Tensor  # (N, T) float32, NaN where undefined
    patterns: np.ndarray  # (N,) int64
    splits: np.ndarray  # (N,) str
    patient_ids: np.ndarray
    true_probs: np.ndarray | None = None  # (N, T) for synthetic data
    reference_scores: dict[str, tuple[str, np.ndarray]] | None = None  # name -> (task, (N,) probability, NaN if none)
    structured: list[str] = field(default_factory=list)  # the tabular modalities (the wide path bins their features)

    def __len__(self) -> int:
        return len(self.patient_ids)

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    @property
    def input_dims(self) -> list[int]:
        return [int(x.shape[1]) for x in self.inputs]

    def config_fields(self) -> dict:
        """What a model config takes from the data: names, widths, tasks and the modalities to bin."""
        return {
            "modalities": list(self.modalities),
            "input_dims": self.input_dims,
            "tasks": list(self.tasks),
            "wide_binned": list(self.structured),
        }

    def take(self, rows: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(rows, dtype=torch.long)
        return [x[index] for x in self.inputs], self.availability[index], self.labels[index]


def build_model_data(dataset: Dataset, vectors: dict[str, np.ndarray], tasks: list[str] | None = None) -> ModelData:
    """Join a dataset with its embeddings (dict modality -> (N, dim) array in patient row order)."""
    manifest = dataset.manifest
    tasks = tasks or [o.name for o in manifest.outcomes]
    unknown = [t for t in tasks if t not in {o.name for o in manifest.outcomes}]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown} (this dataset has: {[o.name for o in manifest.outcomes]})")
    missing = [m for m in manifest.modality_names if m not in vectors]
    if missing:
        raise ValueError(f"no embeddings for modality(ies) {missing}; run: python -m mmnar_core embed {dataset.root}")
    patients = dataset.patients
    assert_disjoint_splits(patients["group_id"].to_numpy(), patients["split"].to_numpy())
    availability = dataset.availability()
    inputs = []
    for i, modality in enumerate(manifest.modality_names):
        array = np.asarray(vectors[modality], dtype=np.float32)
        if array.shape[0] != len(patients):
            raise ValueError(f"embeddings of {modality!r} have {array.shape[0]} rows, dataset has {len(patients)}")
        array = np.where(availability[:, i : i + 1], array, 0.0).astype(np.float32)
        inputs.append(torch.from_numpy(array))
    labels = np.stack(
        [patients[label_column(t)].astype("Float64").to_numpy(dtype=float, na_value=np.nan) for t in tasks], axis=1
    )
    true_probs = None
    if manifest.has_true_probabilities:
        true_probs = np.stack([patients[f"true_prob_{t}"].to_numpy(dtype=float) for t in tasks], axis=1)
    return ModelData(
        modalities=list(manifest.modality_names),
        tasks=list(tasks),
        inputs=inputs,
        availability=torch.from_numpy(availability.copy()),
        labels=torch.from_numpy(labels.astype(np.float32)),
        # (N, M) availability: encode_pattern gives the array of N ids
        patterns=cast(np.ndarray, encode_pattern(availability)) if len(availability) else np.zeros(0, np.int64),
        splits=patients["split"].to_numpy().astype(str),
        patient_ids=patients["patient_id"].to_numpy().astype(str),
        true_probs=true_probs,
        reference_scores={
            s.name: (s.outcome, patients[reference_column(s.name)].to_numpy(dtype=float, na_value=np.nan))
            for s in manifest.reference_scores
            if s.outcome in tasks
        },
        structured=[m.name for m in manifest.modalities_of_kind(ModalityKind.TABULAR)],
    )
