"""A planted-signal ModelData without any encoder: for fast tests and the training benchmark.

A latent z drives the risk; every modality is a noisy linear view of z; the clearest view is present
more often when z is high (missing not at random). Hand-checkable: a model that learns z gets a test
AUROC close to the oracle's.
"""

from __future__ import annotations

import numpy as np
import torch

from mmnar_core.numeric import sigmoid
from mmnar_core.patterns import encode_pattern
from mmnar_core.training.data import ModelData

# (embedding width, noise sd, availability: "always", "mnar" (P = sigmoid(z)) or a fixed rate)
DEFAULT_MODALITIES = ((6, 1.0, "always"), (8, 0.3, "mnar"), (4, 1.5, 0.6))


def planted_data(n: int = 3000, seed: int = 0, modalities=DEFAULT_MODALITIES) -> ModelData:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    inputs = []
    for dim, noise, _ in modalities:
        direction = rng.normal(size=dim)
        inputs.append((z[:, None] * direction[None] + noise * rng.normal(size=(n, dim))).astype(np.float32))
    columns = []
    for _, _, rule in modalities:
        if rule == "always":
            columns.append(np.ones(n, bool))
        elif rule == "mnar":
            columns.append(rng.random(n) < sigmoid(z))
        else:
            columns.append(rng.random(n) < float(rule))
    availability = np.stack(columns, axis=1)
    labels = np.stack([(rng.random(n) < sigmoid(5 * z - 2)), rng.random(n) < 0.5], axis=1).astype(np.float32)
    labels[rng.random(n) < 0.1, 1] = np.nan
    names = [chr(ord("a") + i) for i in range(len(modalities))]
    return model_data(
        names,
        ["risk", "noise"],
        inputs,
        availability,
        labels,
        structured=[name for name, (_, _, rule) in zip(names, modalities) if rule == "always"],
    )


def model_data(
    names: list[str], tasks: list[str], inputs: list[np.ndarray], availability: np.ndarray, labels: np.ndarray, **extra
) -> ModelData:
    """A planted cohort as ModelData: absent modalities zeroed, patients split 70 / 15 / 15 in order (train,
    val, test), ids p0, p1, ...; `extra` goes to ModelData (true_probs, structured)."""
    n = len(availability)
    n_train, n_val = int(n * 0.7), int(n * 0.15)
    splits = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * (n - n_train - n_val))
    tensors = [
        torch.from_numpy(np.where(availability[:, i : i + 1], x, 0).astype(np.float32)) for i, x in enumerate(inputs)
    ]
    return ModelData(
        names,
        tasks,
        tensors,
        torch.from_numpy(availability),
        torch.from_numpy(labels),
        encode_pattern(availability),
        splits,
        np.array([f"p{i}" for i in range(n)]),
        **extra,
    )
