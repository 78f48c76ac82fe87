"""The models `benchmark-models` compares: the MMNAR model, its ablations and the baselines.

Every model is trained on the train split, early-stopped on val, and turned into log-odds for any rows;
calibration (temperature, rectifier) and evaluation are shared (mmnar_core.baselines.benchmark).
`probabilities` says which probabilities the table reports for the model: "rectified" (temperature then
the pattern rectifier, our method) or "calibrated" (temperature only: the baselines as a practitioner
would deploy them, and the no-rectifier ablation). Both are computed for every run and kept in results.json.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from mmnar_core.baselines.gbt import GBTConfig, fit_gbt, gbt_features
from mmnar_core.baselines.mlp import ConcatMLP
from mmnar_core.baselines.names import DEFAULT_MODALITY_DROPOUT
from mmnar_core.baselines.references import fit_lightgbm, fit_logistic
from mmnar_core.model import MMNARConfig, MMNARModel
from mmnar_core.training.data import ModelData
from mmnar_core.training.trainer import predict_logits, train
from mmnar_core.training.wide_init import init_wide_from_logistic


@dataclass(frozen=True)
class ModelSpec:
    name: str
    # "mmnar", "wide" (its untrained start), "mlp", "gbt", "logistic", "lightgbm" or "ensemble" (mmnar, 5 seeds)
    kind: str
    description: str
    overrides: dict = field(default_factory=dict)  # MMNARConfig fields (mmnar kind)
    use_availability: bool = False  # mlp kind
    structured_only: bool = False  # mlp kind
    modality_dropout: bool = False  # mlp kind: train with random modality dropout
    probabilities: str = "calibrated"
    same_run_as: str | None = None  # reuse another model's trained network (no extra training)

    @property
    def run_key(self) -> str:
        return self.same_run_as or self.name


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "mmnar",
            "mmnar",
            "MMNAR model (ours, shipped): 4 fusion members + wide path (tuned logistic regression, or a GAM of the structured features where it wins on val), "
            "reconstruction + contrastive, rectifier",
            probabilities="rectified",
        ),
        ModelSpec(
            "mmnar_no_rectifier",
            "mmnar",
            "ours without the rectifier (temperature only; same network as mmnar)",
            same_run_as="mmnar",
        ),
        ModelSpec(
            "mmnar_single",
            "mmnar",
            "ours as one fusion network without the wide path (the first edition's shape)",
            {"n_members": 1, "use_wide": False},
            probabilities="rectified",
        ),
        ModelSpec(
            "mmnar_no_wide",
            "mmnar",
            "ours without the wide linear path",
            {"use_wide": False},
            probabilities="rectified",
        ),
        ModelSpec(
            "mmnar_wide_only",
            "wide",
            "ours' wide path alone, no members: the start the members train from (the tuned logistic "
            "regression or GAM, embedding weights at their own penalty); what the members add is mmnar minus this",
        ),
        ModelSpec(
            "mmnar_ensemble5", "ensemble", "ours trained with 5 seeds, log-odds averaged", probabilities="rectified"
        ),
        ModelSpec(
            "mmnar_no_gating",
            "mmnar",
            "ours without the missingness-conditioned gates",
            {"use_gating": False},
            probabilities="rectified",
        ),
        ModelSpec(
            "mmnar_no_pattern_embedding",
            "mmnar",
            "ours with one shared token instead of a learned token per pattern",
            {"use_pattern_embedding": False},
            probabilities="rectified",
        ),
        ModelSpec(
            "mmnar_no_reconstruction",
            "mmnar",
            "ours without the reconstruction MSE (contrastive term kept)",
            {"use_reconstruction": False},
            probabilities="rectified",
        ),
        ModelSpec(
            "mmnar_no_contrastive",
            "mmnar",
            "ours without the InfoNCE term (reconstruction MSE kept)",
            {"use_contrastive": False},
            probabilities="rectified",
        ),
        ModelSpec("concat_zero_fill", "mlp", "concatenation MLP, absent modalities zero-filled, no availability input"),
        ModelSpec("concat_mask", "mlp", "concatenation MLP with the availability mask appended", use_availability=True),
        ModelSpec(
            "concat_dropout",
            "mlp",
            "zero-fill concatenation MLP trained with random modality dropout (MAR assumption)",
            modality_dropout=True,
        ),
        ModelSpec(
            "structured_only", "mlp", "MLP on the tabular modalities only", use_availability=True, structured_only=True
        ),
        ModelSpec("hgb", "gbt", "HistGradientBoosting per task on structured features + pooled embeddings + mask"),
        ModelSpec(
            "logistic", "logistic", "L2 logistic regression per task on standardised embeddings + mask, C chosen on val"
        ),
        ModelSpec("lightgbm", "lightgbm", "LightGBM per task on the boosting features, grid and early stopping on val"),
    ]
}

REFERENCES = ("logistic", "lightgbm", "hgb", "structured_only", "concat_mask")  # the practitioner's references
ENSEMBLE_SEEDS = 5


def check_model_names(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown} (accepted: {', '.join(MODELS)})")
    if len(set(names)) != len(names):
        raise ValueError(f"--models lists a model twice: {names}")
    return list(names)


def baseline_config(config: MMNARConfig, modality_dropout: float = 0.0) -> MMNARConfig:
    """The MLP baselines' config: the shared optimisation settings, no auxiliary objective, no pretraining."""
    values = config.to_dict()
    values.update(use_reconstruction=False, use_contrastive=False, pretrain_epochs=0, modality_dropout=modality_dropout)
    return MMNARConfig.from_dict(values)


def spec_config(
    spec: ModelSpec, config: MMNARConfig, seed: int, modality_dropout: float = DEFAULT_MODALITY_DROPOUT
) -> MMNARConfig:
    """The MMNARConfig a spec trains with, for one seed."""
    if spec.kind in ("mmnar", "wide"):
        values = config.to_dict()
        values.update(spec.overrides, seed=seed)
        return MMNARConfig.from_dict(values)
    values = baseline_config(config, modality_dropout if spec.modality_dropout else 0.0).to_dict()
    values["seed"] = seed
    return MMNARConfig.from_dict(values)


def builder(spec: ModelSpec, structured: list[int] | None = None) -> Callable[[MMNARConfig], torch.nn.Module]:
    """build_model for trainer.train()."""
    if spec.kind == "mmnar":
        return MMNARModel
    if spec.kind == "mlp":
        if spec.structured_only and not structured:
            raise ValueError(f"model {spec.name!r} needs at least one tabular modality; this dataset has none")
        return partial(
            ConcatMLP, use_availability=spec.use_availability, modalities=structured if spec.structured_only else None
        )
    raise ValueError(f"model {spec.name!r} is not a network")


@dataclass
class FittedLogits:
    """Log-odds (rows, tasks) of one trained model on the val and test rows, and how training went."""

    val: np.ndarray
    test: np.ndarray
    info: dict


def fit_model(
    spec: ModelSpec,
    data: ModelData,
    config: MMNARConfig,
    seed: int,
    device: torch.device,
    structured: list[int] | None = None,
    modality_dropout: float = DEFAULT_MODALITY_DROPOUT,
    gbt_config: GBTConfig | None = None,
    progress: bool = False,
) -> FittedLogits:
    """Train one model for one seed (train split, early stopping on val) and predict val and test."""
    val_rows, test_rows = data.rows("val"), data.rows("test")
    started = time.perf_counter()
    threads = (gbt_config or GBTConfig()).threads
    if spec.kind == "gbt":
        result = fit_gbt(data, seed, gbt_config)
        features = gbt_features(data)
        return FittedLogits(
            result.logits(features[val_rows]),
            result.logits(features[test_rows]),
            {"n_trees": result.n_trees, "seconds": round(time.perf_counter() - started, 2)},
        )
    if spec.kind in ("logistic", "lightgbm"):
        fitted = fit_logistic(data, threads) if spec.kind == "logistic" else fit_lightgbm(data, seed, threads)
        return FittedLogits(
            fitted.val, fitted.test, {"chosen": fitted.chosen, "seconds": round(time.perf_counter() - started, 2)}
        )
    if spec.kind == "wide":  # the untrained network is its wide path (the heads start at zero)
        model = MMNARModel(spec_config(spec, config, seed, modality_dropout))
        if model.wide is None:
            raise ValueError(f"model {spec.name!r} needs the wide path, but the config has use_wide false")
        model.fit_inputs(*data.take(data.rows("train"))[:2])
        chosen = init_wide_from_logistic(model, data, threads)
        model = model.to(device)
        return FittedLogits(
            predict_logits(model, data, val_rows, device),
            predict_logits(model, data, test_rows, device),
            {"chosen": chosen, "seconds": round(time.perf_counter() - started, 2)},
        )
    if spec.kind == "ensemble":
        members = [
            fit_model(
                MODELS["mmnar"],
                data,
                config,
                seed * 1000 + i,
                device,
                structured,
                modality_dropout,
                gbt_config,
                progress,
            )
            for i in range(ENSEMBLE_SEEDS)
        ]
        return FittedLogits(
            np.mean([m.val for m in members], axis=0),
            np.mean([m.test for m in members], axis=0),
            {
                "member_seeds": [seed * 1000 + i for i in range(ENSEMBLE_SEEDS)],
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
    run_config = spec_config(spec, config, seed, modality_dropout)
    trained = train(run_config, data, device, progress=progress, build_model=builder(spec, structured))
    return FittedLogits(
        predict_logits(trained.model, data, val_rows, device),
        predict_logits(trained.model, data, test_rows, device),
        {
            "best_epoch": trained.best_epoch,
            "epochs_run": len(trained.history),
            "n_parameters": int(sum(p.numel() for p in trained.model.parameters())),
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
