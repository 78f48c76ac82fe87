"""Small datasets with planted structured-feature effects, and wide-path helpers, for the wide path's tests
(test_wide_gam, test_wide_pairs): one structured modality always present, one other present for half."""

from collections.abc import Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from mmnar_core.model import MMNARConfig, MMNARModel
from mmnar_core.numeric import sigmoid
from mmnar_core.patterns import encode_pattern
from mmnar_core.training.data import ModelData


def planted_structured(
    tasks: dict[str, Callable[[np.ndarray], np.ndarray]], n: int, seed: int, n_structured: int, n_other: int
) -> ModelData:
    """Each task's label drawn with probability sigmoid(logit(structured)) from its planted logit."""
    rng = np.random.default_rng(seed)
    structured = rng.normal(size=(n, n_structured)).astype(np.float32)
    other = rng.normal(size=(n, n_other)).astype(np.float32)
    availability = np.stack([np.ones(n, bool), rng.random(n) < 0.5], axis=1)
    other = np.where(availability[:, 1:2], other, 0).astype(np.float32)
    labels = np.stack([rng.random(n) < sigmoid(logit(structured)) for logit in tasks.values()], axis=1)
    splits = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    return ModelData(
        ["structured", "image"],
        list(tasks),
        [torch.from_numpy(structured), torch.from_numpy(other)],
        torch.from_numpy(availability),
        torch.from_numpy(labels.astype(np.float32)),
        encode_pattern(availability),
        splits,
        np.array([f"p{i}" for i in range(n)]),
        structured=["structured"],
    )


def wide_model(data: ModelData, **overrides) -> MMNARModel:
    """A small model with its inputs (and wide bins) fit on the training rows."""
    config = MMNARConfig(**{**data.config_fields(), "d_model": 16, "n_heads": 2, **overrides})
    model = MMNARModel(config)
    model.fit_inputs(*data.take(data.rows("train"))[:2])
    return model


def wide_test_auroc(model: MMNARModel, data: ModelData, task: int) -> float:
    """Test AUROC of the wide path alone."""
    inputs, availability, labels = data.take(data.rows("test"))
    with torch.no_grad():
        logits = model.wide(model.standardise(inputs), availability)
    return roc_auc_score(labels[:, task].numpy(), logits[:, task].numpy())
