"""Evaluation of a trained model on a split: predictions table, metrics overall and per missingness
pattern (before and after the rectifier) with bootstrap intervals, reliability data, the oracle where
the data has true probabilities, and a readable report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmnar_core.calibration.calibrated import CalibratedModel
from mmnar_core.evaluation.bootstrap import evaluate_groups
from mmnar_core.evaluation.metrics import auroc, reliability_curve
from mmnar_core.patterns import pattern_label


def predictions_frame(patient_ids, patterns, labels, raw_logits, calibrated_model: CalibratedModel) -> pd.DataFrame:
    """patient_id, pattern, and per task <task>_label, <task>_prob (rectified, calibrated: the displayed risk),
    <task>_prob_raw, <task>_prob_calibrated (temperature only), all from the calibrated model's one map."""
    frame = pd.DataFrame({"patient_id": patient_ids, "pattern": np.asarray(patterns, dtype=np.int64)})
    stages = calibrated_model.stages(raw_logits, frame["pattern"].to_numpy())
    for t, task in enumerate(calibrated_model.tasks):
        frame[f"{task}_label"] = pd.array([None if math.isnan(v) else int(v) for v in labels[:, t]], dtype="Int8")
        frame[f"{task}_prob"] = stages.risk[:, t]
        frame[f"{task}_prob_raw"] = stages.raw[:, t]
        frame[f"{task}_prob_calibrated"] = stages.calibrated[:, t]
    return frame


def _table_to_json(table: pd.DataFrame) -> list[dict]:
    records = table.to_dict("records")
    for record in records:
        for key, value in list(record.items()):
            if isinstance(value, float) and math.isnan(value):
                record[key] = None
            elif hasattr(value, "item"):
                record[key] = value.item()
    return records


def compute_report(
    frame: pd.DataFrame,
    tasks: list[str],
    modality_names: list[str],
    true_probs: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    reference_scores: dict[str, tuple[str, np.ndarray]] | None = None,
    versions: tuple[str, ...] = ("rectified", "calibrated", "raw"),
) -> dict:
    """Metrics per task: overall and per pattern, for the rectified and the unrectified probabilities;
    a published reference score (e.g. APACHE IV) is compared with the model on the same rows."""
    frame = frame.copy()
    frame["pattern_name"] = [pattern_label(p, modality_names) for p in frame["pattern"]]
    report: dict[str, Any] = {"n": int(len(frame)), "n_resamples": n_resamples, "tasks": {}}
    for t, task in enumerate(tasks):
        known = frame[f"{task}_label"].notna().to_numpy()
        rows = frame[known].copy()
        rows[f"{task}_label"] = rows[f"{task}_label"].astype(int)
        entry: dict[str, Any] = {
            "n_labelled": int(known.sum()),
            "prevalence": float(rows[f"{task}_label"].mean()) if len(rows) else None,
        }
        columns = {"rectified": f"{task}_prob", "calibrated": f"{task}_prob_calibrated", "raw": f"{task}_prob_raw"}
        for version in versions:
            column = columns[version]
            table = evaluate_groups(
                rows, f"{task}_label", column, group_col="pattern_name", n_resamples=n_resamples, seed=seed
            )
            entry[version] = _table_to_json(table)
        curve = reliability_curve(rows[f"{task}_label"].to_numpy(), rows[f"{task}_prob"].to_numpy())
        entry["reliability"] = curve.to_dict()
        if true_probs is not None:
            entry["oracle_auroc"] = float(auroc(rows[f"{task}_label"].to_numpy(), true_probs[known, t]))
        for name, (score_task, scores) in (reference_scores or {}).items():
            if score_task != task:
                continue
            scored = rows.assign(reference=scores[known])
            scored = scored[scored["reference"].between(0, 1)]  # scores outside [0, 1] mark "not computed"
            entry.setdefault("reference", {})[name] = {
                "n": int(len(scored)),
                "reference": _table_to_json(
                    evaluate_groups(scored, f"{task}_label", "reference", n_resamples=n_resamples, seed=seed)
                ),
                "model_same_rows": _table_to_json(
                    evaluate_groups(scored, f"{task}_label", f"{task}_prob", n_resamples=n_resamples, seed=seed)
                ),
            }
        report["tasks"][task] = entry
    return report


def headline(
    report: dict, task: str, version: str = "rectified", metric: str = "auroc", level: str = "overall"
) -> dict:
    for row in report["tasks"][task][version]:
        if row["level"] == level and row["metric"] == metric:
            return row
    raise KeyError((task, version, metric, level))


def _fmt(row: dict) -> str:
    if row.get("value") is None:
        return "n/a"
    if row.get("low") is None:
        return f"{row['value']:.3f}"
    return f"{row['value']:.3f} [{row['low']:.3f}, {row['high']:.3f}]"


def markdown_report(report: dict, title: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"{report['n']} patients; 95 % stratified bootstrap intervals ({report['n_resamples']} resamples).",
        "",
    ]
    for task, entry in report["tasks"].items():
        lines += [
            f"## {task}",
            "",
            f"Labelled: {entry['n_labelled']}, prevalence {entry['prevalence']:.3f}"
            + (f"; oracle AUROC {entry['oracle_auroc']:.3f}" if "oracle_auroc" in entry else ""),
            "",
        ]
        lines += ["| probabilities | AUROC | AUPRC | Brier | ECE |", "|---|---|---|---|---|"]
        for version in (v for v in ("raw", "calibrated", "rectified") if v in entry):
            cells = [_fmt(headline(report, task, version, m)) for m in ("auroc", "auprc", "brier", "ece")]
            lines.append(f"| {version} | " + " | ".join(cells) + " |")
        for name, ref in entry.get("reference", {}).items():
            lines += [
                "",
                f"Reference score `{name}` on the same {ref['n']} rows:",
                "",
                "| | AUROC | AUPRC | Brier | ECE |",
                "|---|---|---|---|---|",
            ]
            for label, table in (("reference", ref["reference"]), ("this model", ref["model_same_rows"])):
                cells = [_fmt(next(r for r in table if r["metric"] == m)) for m in ("auroc", "auprc", "brier", "ece")]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "Per missingness pattern (rectified; ECE before -> after the rectifier):",
            "",
            "| pattern | n | positives | AUROC | ECE before | ECE after |",
            "|---|---|---|---|---|---|",
        ]
        groups = sorted({r["group"] for r in entry["rectified"] if r["level"] == "group"})
        for group in groups:
            auc = next(r for r in entry["rectified"] if r["group"] == group and r["metric"] == "auroc")
            before = next(r for r in entry["calibrated"] if r["group"] == group and r["metric"] == "ece")
            after = next(r for r in entry["rectified"] if r["group"] == group and r["metric"] == "ece")
            lines.append(f"| {group} | {auc['n']} | {auc['n_pos']} | {_fmt(auc)} | {_fmt(before)} | {_fmt(after)} |")
        lines.append("")
    if "unknown_categories" in report:
        lines += unknown_categories_markdown(report["unknown_categories"])
    return "\n".join(lines)


def unknown_categories_markdown(counts: dict[str, dict[str, dict[str, int]]], shown: int = 5) -> list[str]:
    """Report section: per tabular modality and feature, the values the bundle's encoders had not seen
    (encoded as <unknown>), so a new site's results are read knowing which of its codes the model ignored."""
    lines = ["## Categorical values not seen in training", ""]
    rows = [(m, f, values) for m, features in counts.items() for f, values in features.items() if values]
    if not rows:
        return lines + [
            "None: every categorical value of these patients is one the model's encoders were fitted with.",
            "",
        ]
    lines += [
        "Encoded as `<unknown>` (patients per value, most frequent first):",
        "",
        "| modality | feature | patients | distinct values | values |",
        "|---|---|---|---|---|",
    ]
    for modality, feature, values in rows:
        listed = ", ".join(f"`{v}` {n}" for v, n in list(values.items())[:shown])
        more = f", ... ({len(values) - shown} more)" if len(values) > shown else ""
        lines.append(f"| {modality} | {feature} | {sum(values.values())} | {len(values)} | {listed}{more} |")
    return lines + [""]


def write_evaluation(out: str | Path, frame: pd.DataFrame, report: dict, title: str) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "predictions.parquet", index=False)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown_report(report, title), encoding="utf-8")
    return out
