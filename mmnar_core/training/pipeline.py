"""From a dataset with cached embeddings to a model bundle: train (train split), early-stop and
calibrate (val split: temperature per task, then the pattern rectifier), evaluate (test split only,
never used for any fitting), write the bundle with its metrics and model card."""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from mmnar_core.bundle import save_bundle
from mmnar_core.calibration import PatternRectifier, TemperatureScaler
from mmnar_core.calibration.calibrated import CalibratedModel
from mmnar_core.dataset import Dataset, load_dataset
from mmnar_core.evaluation.report import compute_report, headline, markdown_report, predictions_frame
from mmnar_core.model import MMNARConfig
from mmnar_core.ood import fit_distribution_check
from mmnar_core.training.data import ModelData, build_model_data
from mmnar_core.training.reference_image import image_encoder_configs, reference_image_file
from mmnar_core.training.trainer import predict_logits, train


def calibrate_from_logits(
    data: ModelData, logits: np.ndarray, rows: np.ndarray, source: str = "val"
) -> tuple[TemperatureScaler, dict[str, PatternRectifier]]:
    """Temperature per task, then the rectifier on the temperature-scaled probabilities, both fit on the
    held-out labelled `rows` whose network logits are given; `source` says where those rows come from."""
    labels = data.labels[rows].numpy().astype(float)
    temperature = TemperatureScaler().fit(logits, labels)
    no_correction = CalibratedModel.from_parts(None, data.tasks, temperature, {}, len(data.modalities))
    probs = no_correction.stages(logits, data.patterns[rows]).calibrated  # temperature only
    rectifiers = {
        task: PatternRectifier(len(data.modalities)).fit(data.patterns[rows], probs[:, t], labels[:, t], source=source)
        for t, task in enumerate(data.tasks)
    }
    return temperature, rectifiers


def fit_calibration(
    model, data: ModelData, device, rows: np.ndarray | None = None, source: str = "val"
) -> tuple[TemperatureScaler, dict[str, PatternRectifier]]:
    """calibrate_from_logits on `rows` (default: the val split) scored by `model`."""
    rows = data.rows("val") if rows is None else rows
    return calibrate_from_logits(data, predict_logits(model, data, rows, device), rows, source)


def report_from_logits(
    temperature,
    rectifiers,
    data: ModelData,
    rows: np.ndarray,
    logits: np.ndarray,
    n_resamples: int = 1000,
    versions: tuple[str, ...] = ("rectified", "calibrated", "raw"),
):
    """(predictions frame, report) of `rows`: oracle and published reference scores included when present."""
    frame = predictions_frame(
        data.patient_ids[rows],
        data.patterns[rows],
        data.labels[rows].numpy(),
        logits,
        CalibratedModel.from_parts(None, data.tasks, temperature, rectifiers, len(data.modalities)),
    )
    true_probs = data.true_probs[rows] if data.true_probs is not None else None
    references = {name: (task, scores[rows]) for name, (task, scores) in (data.reference_scores or {}).items()}
    return frame, compute_report(
        frame,
        data.tasks,
        data.modalities,
        true_probs,
        n_resamples=n_resamples,
        reference_scores=references,
        versions=versions,
    )


def evaluate_split(model, temperature, rectifiers, data: ModelData, split: str, device, n_resamples: int = 1000):
    rows = np.arange(len(data)) if split == "all" else data.rows(split)
    return report_from_logits(
        temperature, rectifiers, data, rows, predict_logits(model, data, rows, device), n_resamples
    )


def dataset_summary(dataset: Dataset) -> dict:
    manifest = dataset.manifest
    return {
        "name": manifest.name,
        "content_hash": manifest.content_hash,
        "provenance": manifest.provenance,
        "n_patients": manifest.n_patients,
        "split_counts": manifest.split_counts,
        "modalities": [m.to_dict() for m in manifest.modalities],
        "features": [f.to_dict() for f in manifest.features],
        "outcomes": [o.to_dict() for o in manifest.outcomes],
        "pattern_counts_train": {
            str(k): int(v)
            for k, v in dataset.patients.loc[dataset.patients["split"] == "train", "pattern"]
            .value_counts()
            .sort_index()
            .items()
        },
    }


def model_card(summary: dict, report: dict, config: MMNARConfig, synthetic: bool) -> str:
    outcomes = "\n".join(
        f"- **{o['name']}**: {o['description']}. Label: {o['definition']} (anchor: {o['anchor']}; "
        f"defined for {o['defined_for']})."
        for o in summary["outcomes"]
    )
    performance = markdown_report(report, "Performance on the held-out test split").split("\n", 1)[1]
    wide = (
        ", plus a wide linear path that starts as the tuned L2 logistic regression of the same inputs (with"
        " piecewise-linear curves of the structured features and pairwise interactions where validation keeps them)"
        if config.use_wide
        else ""
    )
    kept = [
        f"- {task}: {', '.join(entry['pairs'])}"
        for task, entry in zip(config.tasks, report.get("training", {}).get("wide_path_logistic") or [])
        if entry.get("pairs")
    ]
    pairs = (
        "\nPairs of structured features the wide path models together (kept on validation):\n" + "\n".join(kept) + "\n"
        if kept
        else ""
    )
    warning = (
        "**Synthetic demo model. Not for clinical use.** Trained on patients generated by this project's "
        "simulator; its numbers say how well the method recovers a known structure, not how it would do in a hospital."
        if synthetic
        else "**Research model. Not a medical device; not validated for clinical use.**"
    )
    return f"""# Model card

{warning}

## Intended use
Estimate post-discharge risks ({", ".join(config.tasks)}) from whichever of {", ".join(config.modalities)} a patient
has, and explain them, for research, teaching and demonstration. Not for decisions about individual patients.

## Training data
Dataset `{summary["name"]}` (content hash `{summary["content_hash"][:16]}`), {summary["n_patients"]} patients split by
patient into {summary["split_counts"]}. Provenance: {summary["provenance"].get("source", "unknown")}
({summary["provenance"].get("licence", "licence not stated")}).

## Labels
{outcomes}

## Method
{config.n_members} MMNAR-aware fusion members averaged in one network (missingness embedding, per-modality gates,
masked self-attention with a pattern token, multitask heads; inputs standardised per feature on the training
split){wide}, reconstruction + contrastive auxiliary losses; temperature scaling and the pattern rectifier fit on the
validation split only; metrics on the test split only. How it compares with a tuned logistic regression and
LightGBM on the same patients (paired intervals): docs/results.md.
{pairs}
{performance}

## Limitations
- Performance is reported per missingness pattern; rare patterns have wide intervals and their corrections
  lean on the shrinkage toward patterns with as many modalities.
- A change of ordering habits (another hospital) changes the patterns' meaning: refit the rectifier on a few hundred
  labelled local patients (`python -m mmnar_core rectify`) and re-check calibration.
- Inputs must be restricted to before the prediction time, as the training data was.
"""


def name_wide_pairs(wide: list[dict] | None, embeddings) -> list[dict] | None:
    """The wide path's kept pairs by column name ("encounter:age x encounter:num_medications") instead of
    [modality, column, modality, column], for the report and the model card."""
    from mmnar_core.encoders.tabular import TabularEncoder

    names: dict[str, list[str]] = {}

    def name(modality: str, column: int) -> str:
        if modality not in names:
            names[modality] = TabularEncoder.load(embeddings.tabular_state_path(modality)).output_names
        return f"{modality}:{names[modality][column]}"

    return [
        {**entry, "pairs": [f"{name(*p[:2])} x {name(*p[2:])}" for p in entry["pairs"]]}
        if entry.get("pairs")
        else entry
        for entry in wide or []
    ] or wide


def encoder_state_files(embeddings) -> dict[str, bytes]:
    """Each encoder's description and fitted state (e.g. the tabular scaling fit on train), so the bundle
    can rebuild the exact input path at prediction time."""
    files = {}
    for info in embeddings.encoders.values():
        folder = embeddings.cache_dir / info["encoder_id"]
        for name in ("encoder.json", "tabular_state.json"):
            if (folder / name).is_file():
                files[f"encoders/{info['encoder_id']}/{name}"] = (folder / name).read_bytes()
    return files


def reference_file(data: ModelData, max_patients: int = 2000, seed: int = 0) -> dict[str, bytes]:
    """Embeddings of up to `max_patients` training patients (float16), from which the predictor estimates
    the value of a modality a patient lacks. Training patients only: never validation or test."""
    from safetensors.torch import save

    rows = data.rows("train")
    if len(rows) > max_patients:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_patients, replace=False))
    index = torch.as_tensor(rows, dtype=torch.long)
    tensors = {f"input_{i}": x[index].to(torch.float16).contiguous() for i, x in enumerate(data.inputs)}
    tensors["availability"] = data.availability[index].to(torch.uint8).contiguous()
    return {"reference.safetensors": save(tensors)}


def run_training(
    dataset_dir: str | Path,
    out: str | Path,
    config: MMNARConfig | None = None,
    seed: int | None = None,
    cache_dir: str | Path | None = None,
    device: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    n_resamples: int = 1000,
) -> tuple[Path, dict]:
    from mmnar_core.encoders.cache import load_embeddings
    from mmnar_core.training.distributed import init_distributed, shutdown_distributed

    started = time.perf_counter()
    dataset = load_dataset(dataset_dir)
    embeddings = load_embeddings(dataset, cache_dir)
    data = build_model_data(dataset, embeddings.vectors)
    base = (config or MMNARConfig()).to_dict()
    base.update(data.config_fields())
    if seed is not None:
        base["seed"] = seed
    config = MMNARConfig.from_dict(base)
    rank, world, torch_device = init_distributed(device)
    log_path = Path(out).with_name(f".{Path(out).name}.training-log.jsonl")
    if rank == 0:
        log_path.unlink(missing_ok=True)
    result = train(config, data, torch_device, log_path=log_path, progress=progress)
    if rank != 0:
        shutdown_distributed()
        return Path(out), {"rank": rank}
    temperature, rectifiers = fit_calibration(result.model, data, torch_device)
    _, report = evaluate_split(result.model, temperature, rectifiers, data, "test", torch_device, n_resamples)
    report["training"] = {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "initial_val_loss": result.initial_val_loss,
        "wide_path_logistic": name_wide_pairs(result.wide, embeddings),
        "train_seconds": round(result.seconds, 1),
        "device": str(torch_device),
        "processes": world,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    summary = dataset_summary(dataset)
    image_encoders = image_encoder_configs(embeddings.encoders, lambda encoder_id: embeddings.cache_dir / encoder_id)
    extra = {
        "training_log.jsonl": log_path.read_bytes(),
        **encoder_state_files(embeddings),
        **reference_file(data),
        **reference_image_file(dataset, image_encoders),
        **fit_distribution_check(dataset, embeddings),  # out-of-distribution warnings, fit on the training split
    }
    synthetic = bool(dataset.manifest.has_true_probabilities)
    bundle = save_bundle(
        out,
        result.model,
        temperature,
        rectifiers,
        summary,
        embeddings.encoders,
        report,
        model_card(summary, report, config, synthetic),
        extra_files=extra,
        overwrite=overwrite,
    )
    log_path.unlink(missing_ok=True)
    shutdown_distributed()
    figures: dict[str, dict[str, float | None] | float] = {
        task: {"auroc": headline(report, task)["value"], "oracle_auroc": report["tasks"][task].get("oracle_auroc")}
        for task in data.tasks
    }
    figures["seconds"] = round(time.perf_counter() - started, 1)
    return bundle, figures


def load_config_file(path: str | Path | None) -> MMNARConfig | None:
    """A JSON file of MMNARConfig fields (data fields are filled from the dataset and may be omitted)."""
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--config {path}: file not found") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"--config {path}: invalid JSON at line {error.lineno}: {error.msg}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: must be a JSON object of config fields")
    return MMNARConfig.from_dict(data)
