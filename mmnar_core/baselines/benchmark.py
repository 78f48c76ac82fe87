"""Run every model over several seeds, calibrate each on val, evaluate on test, aggregate mean ± sd.

Per run: temperature per task fit on the val log-odds, then the pattern rectifier on the temperature-
scaled val probabilities (source "val"; the test split is used for nothing but metrics). The test
report is the one `evaluate` writes (mmnar_core.evaluation.report.compute_report: raw, calibrated and
rectified, overall and per pattern, with bootstrap intervals). The table reports, per task, the mean
and sample standard deviation (ddof=1) over seeds of the overall AUROC, the overall ECE, and the
unweighted mean of the per-pattern ECEs (patterns with at least 30 labelled test rows, as in the
report), each for the probabilities the model is defined with (ModelSpec.probabilities).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from mmnar_core.baselines.gbt import GBTConfig
from mmnar_core.baselines.models import (
    DEFAULT_MODALITY_DROPOUT,
    MODELS,
    REFERENCES,
    FittedLogits,
    check_model_names,
    fit_model,
)
from mmnar_core.evaluation.bootstrap import DEFAULT_MIN_N
from mmnar_core.evaluation.metrics import auroc, ece
from mmnar_core.evaluation.paired import paired_auroc, paired_true_risk_error
from mmnar_core.evaluation.report import headline
from mmnar_core.model import MMNARConfig
from mmnar_core.training.data import ModelData
from mmnar_core.training.pipeline import calibrate_from_logits, report_from_logits
from mmnar_core.training.trainer import validation_score

RESULTS_FORMAT = "mmnar-benchmark-models/1"
TABLE_METRICS = ("auroc", "ece", "pattern_ece")
HEADLINE_METRICS = ("auroc", "auprc", "brier", "ece")
VERSIONS = ("calibrated", "rectified")
SHIPPED = "mmnar"  # the model the product ships; every other row is compared with it, paired


# ------------------------------------------------------------------------------------------ one run


def calibrate_and_evaluate(
    data: ModelData, val_logits: np.ndarray, test_logits: np.ndarray, n_resamples: int = 200
) -> tuple[dict, dict, dict]:
    """(metrics, report, probabilities): temperature and rectifier fit on val, everything measured on test.

    metrics = {task: {version: {auroc, auprc, brier, ece, pattern_ece, n_patterns}}} for the calibrated
    and rectified probabilities; report = compute_report of the test predictions; probabilities =
    {version: (test rows, tasks) array}, kept for the paired comparisons.
    """
    temperature, rectifiers = calibrate_from_logits(data, val_logits, data.rows("val"))
    frame, report = report_from_logits(
        temperature, rectifiers, data, data.rows("test"), test_logits, n_resamples, versions=VERSIONS
    )
    metrics = {task: {version: headline_metrics(report, task, version) for version in VERSIONS} for task in data.tasks}
    columns = {"rectified": "{}_prob", "calibrated": "{}_prob_calibrated"}
    probabilities = {
        version: np.stack([frame[columns[version].format(t)].to_numpy(dtype=float) for t in data.tasks], axis=1)
        for version in VERSIONS
    }
    return metrics, report, probabilities


def headline_metrics(report: dict, task: str, version: str) -> dict:
    values = {m: headline(report, task, version, m)["value"] for m in HEADLINE_METRICS}
    pattern = [
        r["value"]
        for r in report["tasks"][task][version]
        if r["level"] == "group" and r["metric"] == "ece" and r["value"] is not None
    ]
    values["pattern_ece"] = float(np.mean(pattern)) if pattern else None
    values["n_patterns"] = len(pattern)
    return values


def oracle_metrics(data: ModelData, min_n: int = DEFAULT_MIN_N) -> dict | None:
    """AUROC, ECE and mean per-pattern ECE of the true probabilities on the labelled test rows (synthetic data):
    the ceiling for AUROC and the sampling-noise floor for ECE."""
    if data.true_probs is None:
        return None
    rows = data.rows("test")
    labels = data.labels[rows].numpy().astype(float)
    out = {}
    for t, task in enumerate(data.tasks):
        known = ~np.isnan(labels[:, t])
        y, p, g = labels[known, t].astype(int), data.true_probs[rows][known, t], data.patterns[rows][known]
        pattern = [ece(y[g == k], p[g == k]) for k in np.unique(g) if (g == k).sum() >= min_n]
        out[task] = {
            "auroc": float(auroc(y, p)),
            "ece": float(ece(y, p)),
            "pattern_ece": float(np.mean(pattern)) if pattern else None,
            "n_patterns": len(pattern),
        }
    return out


# ------------------------------------------------------------------------------------------ all runs


def run_benchmark(
    data: ModelData,
    models: list[str],
    seeds: Iterable[int],
    config: MMNARConfig,
    device: torch.device,
    structured: list[int] | None = None,
    modality_dropout: float = DEFAULT_MODALITY_DROPOUT,
    gbt_config: GBTConfig | None = None,
    n_resamples: int = 200,
    on_run: Callable[[dict, dict], None] | None = None,
    progress: bool = False,
) -> dict:
    """Every (seed, model): train, calibrate on val, evaluate on test. Returns the results dict
    (runs + summary + oracle); `on_run(run, results_so_far)` is called after each run."""
    models = check_model_names(models)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct: {seeds}")
    gbt_config = gbt_config or GBTConfig()
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "models": models,
        "descriptions": {name: MODELS[name].description for name in models},
        "seeds": seeds,
        "tasks": list(data.tasks),
        "modalities": list(data.modalities),
        "structured_modalities": [data.modalities[i] for i in structured or []],
        "n_test": int(len(data.rows("test"))),
        "config": config.to_dict(),
        "modality_dropout": modality_dropout,
        "gbt": asdict(gbt_config),
        "n_resamples": n_resamples,
        "oracle": oracle_metrics(data),
        "runs": [],
        "summary": [],
    }
    test_probabilities: dict[str, list[np.ndarray]] = {name: [] for name in models}
    val_labels = data.labels[data.rows("val")].numpy()
    for seed in seeds:
        trained: dict[str, tuple[FittedLogits, dict, dict, dict]] = {}
        for name in models:
            spec = MODELS[name]
            key = spec.run_key
            if key not in trained:
                fitted = fit_model(
                    MODELS[key], data, config, seed, device, structured, modality_dropout, gbt_config, progress
                )
                trained[key] = (fitted, *calibrate_and_evaluate(data, fitted.val, fitted.test, n_resamples))
            fitted, metrics, report, probabilities = trained[key]
            test_probabilities[name].append(probabilities[spec.probabilities])
            run = {
                "model": name,
                "seed": seed,
                "probabilities": spec.probabilities,
                "same_run_as": spec.same_run_as,
                "info": fitted.info,
                # the selection criterion (mean validation BCE of the uncalibrated log-odds): choose variants on this
                "val_log_loss": validation_score(fitted.val, val_labels),
                "metrics": metrics,
            }
            if not any(
                r["seed"] == seed and "report" in r and (r["same_run_as"] or r["model"]) == key for r in results["runs"]
            ):
                run["report"] = report  # once per trained network and seed
            results["runs"].append(run)
            results["summary"] = summarise(results["runs"], list(data.tasks), models)
            if on_run is not None:
                on_run(run, results)
    results["paired"] = paired_comparisons(data, test_probabilities, models, max(n_resamples, 1000))
    results["test_probabilities"] = test_probabilities
    return results


# ------------------------------------------------------------------------------------------ paired


def paired_comparisons(
    data: ModelData,
    test_probabilities: dict[str, list[np.ndarray]],
    models: list[str],
    n_resamples: int = 1000,
    shipped: str = SHIPPED,
) -> dict | None:
    """Each model against the shipped one on the same test rows, all seeds: the paired bootstrap interval
    of the AUROC difference (model - shipped) and, on synthetic data, of the mean |p - p_true|
    difference, overall and per pattern; plus which reference is closest to the truth."""
    if shipped not in models:
        return None
    rows = data.rows("test")
    labels = data.labels[rows].numpy()
    truth = data.true_probs[rows] if data.true_probs is not None else None
    out: dict[str, Any] = {"shipped": shipped, "n_resamples": n_resamples, "tasks": {}}
    for t, task in enumerate(data.tasks):
        known = ~np.isnan(labels[:, t])
        y = labels[known, t].astype(int)
        ours = [p[known, t] for p in test_probabilities[shipped]]
        entry: dict[str, Any] = {"auroc": {}, "true_risk_error": {}}
        for name in models:
            if name == shipped:
                continue
            theirs = [p[known, t] for p in test_probabilities[name]]
            entry["auroc"][name] = paired_auroc(y, theirs, ours, n_resamples)
            if truth is not None:
                all_ours = [p[:, t] for p in test_probabilities[shipped]]
                all_theirs = [p[:, t] for p in test_probabilities[name]]
                entry["true_risk_error"][name] = paired_true_risk_error(
                    truth[:, t], all_theirs, all_ours, data.patterns[rows], n_resamples
                )
        for name, (score_task, scores) in (data.reference_scores or {}).items():
            if score_task != task:
                continue
            score = scores[rows]
            has = known & np.isfinite(score)
            if has.sum() >= 2 and len(np.unique(labels[has, t])) == 2:
                # a published score on the stays that have it: the same rows for both
                entry["auroc"][f"score:{name}"] = paired_auroc(
                    labels[has, t].astype(int),
                    [score[has]],
                    [p[has, t] for p in test_probabilities[shipped]],
                    n_resamples,
                )
        references = [m for m in models if m in REFERENCES]
        if references:
            best = max(references, key=lambda m: entry["auroc"][m]["a"])
            entry["best_reference_auroc"] = best
            if truth is not None:
                entry["best_reference_error"] = min(
                    references, key=lambda m: entry["true_risk_error"][m]["overall"]["a"]
                )
        out["tasks"][task] = entry
    return out


# ------------------------------------------------------------------------------------------ aggregation


def mean_sd(values: list[float | None]) -> dict:
    """Mean and sample standard deviation (ddof=1) of the defined values; sd is None for fewer than two."""
    defined = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not defined:
        return {"mean": None, "sd": None, "n": 0}
    sd = float(np.std(defined, ddof=1)) if len(defined) >= 2 else None
    return {"mean": float(np.mean(defined)), "sd": sd, "n": len(defined)}


def summarise(runs: list[dict], tasks: list[str], models: list[str] | None = None) -> list[dict]:
    """One row per model (in `models` order, else first appearance): per task and table metric, mean ± sd
    over the model's runs, each run read at the model's own probabilities ("calibrated" or "rectified")."""
    order = list(models) if models is not None else list(dict.fromkeys(r["model"] for r in runs))
    rows = []
    for name in order:
        mine = [r for r in runs if r["model"] == name]
        if not mine:
            continue
        version = mine[0]["probabilities"]
        row = {
            "model": name,
            "probabilities": version,
            "seeds": [r["seed"] for r in mine],
            "seconds": mean_sd([r.get("info", {}).get("seconds") for r in mine if not r.get("same_run_as")]),
            "tasks": {},
        }
        for task in tasks:
            row["tasks"][task] = {
                metric: mean_sd([r["metrics"][task][version][metric] for r in mine]) for metric in TABLE_METRICS
            }
        rows.append(row)
    return rows


def format_mean_sd(stats: dict, digits: int = 3) -> str:
    if stats is None or stats.get("mean") is None:
        return "n/a"
    if stats.get("sd") is None:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['sd']:.{digits}f}"


def markdown_table(results: dict, title: str = "Baselines and ablations") -> str:
    """results.md: one table, rows = models (+ the oracle when known), columns = per task AUROC, ECE,
    mean per-pattern ECE (mean ± sd over seeds)."""
    tasks = results["tasks"]
    seeds = results["seeds"]
    header = ["model", "probabilities"]
    for task in tasks:
        header += [f"{task} AUROC", f"{task} ECE", f"{task} pattern ECE"]
    header.append("train s")
    lines = [
        f"# {title}",
        "",
        f"Test split ({results['n_test']} patients); mean ± sample sd over seeds {', '.join(map(str, seeds))}. "
        "Temperature (and, for `rectified` rows, the pattern rectifier) fit on the validation split only. "
        "`pattern ECE` is the unweighted mean of the per-pattern ECEs (patterns with >= 30 labelled test rows). "
        "`train s`: wall-clock seconds to train one seed (n/a for a row that reuses another row's network).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in results["summary"]:
        cells = [row["model"], row["probabilities"]]
        for task in tasks:
            cells += [format_mean_sd(row["tasks"][task][m]) for m in TABLE_METRICS]
        cells.append(format_mean_sd(row["seconds"], 1))
        lines.append("| " + " | ".join(cells) + " |")
    oracle = results.get("oracle")
    if oracle:
        cells = ["oracle (true risk)", "true"]
        for task in tasks:
            cells += [format_mean_sd({"mean": oracle[task].get(m), "sd": None}) for m in TABLE_METRICS]
        cells.append("")
        lines.append("| " + " | ".join(cells) + " |")
    lines += paired_table(results)
    lines += ["", "Models:", ""]
    lines += [f"- `{name}`: {description}" for name, description in results["descriptions"].items()]
    if results.get("structured_modalities"):
        lines.append(f"- structured (tabular) modalities: {', '.join(results['structured_modalities'])}")
    lines.append("")
    return "\n".join(lines)


def paired_table(results: dict) -> list[str]:
    """Markdown lines: per task, each model against the shipped one (model - shipped), paired intervals."""
    paired = results.get("paired")
    if not paired:
        return []
    shipped = paired["shipped"]
    synthetic = any(entry.get("true_risk_error") for entry in paired["tasks"].values())
    lines = [
        "",
        f"## Paired comparison with `{shipped}` (same test rows, seeds {', '.join(map(str, results['seeds']))})",
        "",
        f"AUROC difference = model − {shipped}, mean over seeds, with a paired stratified bootstrap 95 % interval "
        f'({paired["n_resamples"]} resamples, the same rows for every seed). "better"/"worse" (for the model '
        f'against {shipped}) only when the interval excludes 0; otherwise "tied".'
        + (
            " `|p − p_true|`: mean absolute error against the true risk, model / "
            f"{shipped} (ratio > 1: {shipped} is closer to the truth), with the verdict of the paired interval "
            "of the difference."
            if synthetic
            else ""
        ),
        "",
    ]
    tasks = list(paired["tasks"])
    header = ["model"] + [f"{t} ΔAUROC [95 % CI]" for t in tasks]
    if synthetic:
        header += [f"{t} |p − p_true| ratio" for t in tasks]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    names = list(dict.fromkeys(name for t in tasks for name in paired["tasks"][t]["auroc"]))
    for name in names:
        cells = [name]
        for t in tasks:
            r = paired["tasks"][t]["auroc"].get(name)
            cells.append(
                ""
                if r is None
                else f"{r['difference']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}] {r['verdict']}"
                + (f" (n = {r['n']}; {r['a']:.3f} vs {r['b']:.3f})" if name.startswith("score:") else "")
            )
        if synthetic and name.startswith("score:"):
            cells += [""] * len(tasks)
        elif synthetic:
            for t in tasks:
                e = paired["tasks"][t]["true_risk_error"][name]["overall"]
                cells.append(f"{e['a']:.4f} / {e['b']:.4f} = {e['ratio']:.2f} {e['verdict']}")
        lines.append("| " + " | ".join(cells) + " |")
    best = [
        f"{t}: AUROC {paired['tasks'][t].get('best_reference_auroc')}"
        + (f", error {paired['tasks'][t].get('best_reference_error')}" if synthetic else "")
        for t in tasks
        if paired["tasks"][t].get("best_reference_auroc")
    ]
    if best:
        lines += ["", "Best reference per task: " + "; ".join(best) + "."]
    return lines
