"""Tables of the model card page, from the bundle's test-split metrics and calibration state."""

from __future__ import annotations

import json
from pathlib import Path

from mmnar_app.display import pattern_name
from mmnar_core.patterns import decode_pattern


def _interval(row: dict, digits: int = 3) -> str:
    if row.get("value") is None:
        return f"n/a ({row.get('note') or 'not evaluated'})"
    if row.get("low") is None:
        return f"{row['value']:.{digits}f}"
    return f"{row['value']:.{digits}f} [{row['low']:.{digits}f}, {row['high']:.{digits}f}]"


def overall_table(metrics: dict, task: str) -> list[dict]:
    """One row per probability version (raw, calibrated, rectified): AUROC, AUPRC, Brier, ECE with 95 % CIs."""
    entry = metrics["tasks"][task]
    rows = []
    for version in ("raw", "calibrated", "rectified"):
        cells = {r["metric"]: _interval(r) for r in entry.get(version, []) if r["level"] == "overall"}
        rows.append({"probabilities": version, **{k.upper() if k != "brier" else "Brier": v for k, v in cells.items()}})
    return rows


def pattern_table(metrics: dict, task: str) -> list[dict]:
    """Per missingness pattern (rectified risks): n, AUROC, AUPRC, ECE with 95 % CIs."""
    groups: dict[str, dict] = {}
    for row in metrics["tasks"][task]["rectified"]:
        if row["level"] != "group":
            continue
        group = groups.setdefault(
            row["group"],
            {"pattern": pattern_name(row["group"].split("+")), "n": row["n"], "positives": row.get("n_pos")},
        )
        group[row["metric"].upper() if row["metric"] != "brier" else "Brier"] = _interval(row)
    return sorted(groups.values(), key=lambda g: -g["n"])


def rectifier_table(calibration: dict, task: str, modalities: list[str], pattern_counts: dict) -> list[dict]:
    """The site correction per pattern: its logit correction with its interval, how many held-out patients it
    rests on, and whether the gate kept the pattern's own correction (patterns never seen get their parent)."""
    from mmnar_core.calibration import PatternRectifier

    rectifier = PatternRectifier.from_dict(calibration["rectifiers"][task])
    rows = []
    for row in rectifier.report(modalities):
        pattern = row["pattern"]
        if not row["n"] and not pattern_counts.get(str(pattern)):
            continue
        present = [m for m, a in zip(modalities, decode_pattern(pattern, len(modalities))) if a]
        rows.append(
            {
                "pattern": pattern_name(present),
                "held-out patients": row["n"],
                "training patients": pattern_counts.get(str(pattern), 0),
                "correction (log-odds)": f"{row['offset']:+.3f} [{row['low']:+.3f}, {row['high']:+.3f}]",
                "own correction kept": "yes" if row["kept"] else "no (parent)" if row["level"] == "pattern" else "n/a",
            }
        )
    return sorted(rows, key=lambda r: -r["held-out patients"])


def rectifier_summary(calibration: dict, task: str) -> tuple[str, str, bool]:
    """(plain sentence, technical detail, whether a per-pattern table says anything): which correction the
    check on held-out patients chose for this outcome."""
    from mmnar_core.calibration import PatternRectifier

    rectifier = PatternRectifier.from_dict(calibration["rectifiers"][task])
    meaning = {
        "none": "none: no correction beat the calibrated model clearly on held-out patients",
        "global": "one recalibration for every patient",
        "modality": "a recalibration plus one offset for each test the patient has",
        "pattern": "a recalibration plus an offset for each combination of tests",
    }[rectifier.level_]
    sentence = f"Site correction used: {meaning} (checked on {rectifier.n_fit_:,} held-out patients)."
    return sentence, rectifier.reason_, rectifier.level_ in ("modality", "pattern")


def baselines_table(path: Path, tasks: list[str]) -> tuple[list[dict], dict] | None:
    """Ours against the baselines and ablations on the same synthetic cohort (mean ± sd over seeds)."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for row in data["rows"]:
        out = {"model": row["model"], "what it is": data["descriptions"].get(row["model"], "")}
        for task in tasks:
            cell = row["tasks"].get(task, {}).get("auroc")
            out[f"{task} AUROC"] = (
                f"{cell['mean']:.3f} ± {cell['sd']:.3f}" if cell and cell["mean"] is not None else "n/a"
            )
        rows.append(out)
    oracle = {"model": "oracle (true probability)", "what it is": "the simulator's own probability: the ceiling"}
    for task in tasks:
        oracle[f"{task} AUROC"] = f"{data['oracle'][task]['auroc']:.3f}"
    rows.append(oracle)
    return rows, data


# -------------------------------------------------------------------------------- ordering-policy drift
DRIFT_INTRO = (
    "The model reads *which* tests a patient had (chest X-ray, notes, reports) as part of the clinical picture, "
    "because doctors order them for a reason. If this hospital orders tests differently from the training site, "
    "risks for some groups of patients can be off. This section compares the mix of available tests among the "
    "patients analysed here with the training site's mix. Only counts are kept for this (how many patients had "
    "each combination of tests), never who they were."
)


def drift_report(info, counts: dict[int, int], thresholds=None):
    """The drift report (mmnar_core.drift) of this model's counts here against its training counts, with
    the patterns described by the modalities' display names."""
    from mmnar_app.display import modality_name
    from mmnar_core.drift import compare_patterns

    names = [modality_name(m.name) for m in info.modalities]
    return compare_patterns(info.pattern_counts_train, counts, names, thresholds)


def drift_table(report) -> list[dict]:
    """One row per combination of tests: share at the training site, share here, the difference."""
    rows = []
    for row in report.patterns:
        rows.append(
            {
                "tests available": row.words,
                "training site": f"{row.train_share:.1%}",
                "here": "-" if row.local_share is None else f"{row.local_share:.1%}",
                "difference": "-" if row.difference is None else f"{row.difference * 100:+.1f} pts",
                "patients here": row.local_count,
                "note": "never seen in training" if row.unseen_in_training else "",
            }
        )
    return rows


def drift_rule_text(report) -> str:
    """The documented rule, with its thresholds."""
    t = report.thresholds
    return (
        f"Judged from {t['min_patients']} patients. A refit is advised when the difference is beyond chance "
        f"(p < {t['alpha']:g} against the no-change resampling) and even the low end of its interval is above "
        f'{t["advise_tv"]:.0%}; beyond chance but smaller is "mild drift". Statistic: total variation '
        f'distance, {t["resamples"]:,} bootstrap resamples (docs/app.md, "Ordering-policy drift").'
    )


ADAPTATION_WORDS = {
    "none": "no correction",
    "global": "recalibrated",
    "modality_offsets": "per-test offsets",
    "rectifier_v2": "site correction",
}
POLICY_WORDS = {
    "default": "as at the training site",
    "low_imaging": "fewer X-rays (community hospital)",
    "high_imaging": "X-rays for nearly everyone",
    "mar": "ordering from recorded data only",
    "mcar": "ordering unrelated to the patient",
    "reversed": "X-rays for the least sick (stress test)",
}


MODEL_WORDS = {
    "logistic": "logistic regression",
    "lightgbm": "LightGBM",
    "hgb": "gradient boosting",
    "concat_mask": "MLP with availability flags",
    "concat_zero_fill": "MLP, absent inputs as zeros",
    "concat_dropout": "MLP trained with dropped inputs",
    "structured_only": "MLP on structured data",
}


def _arm_words(arm: str) -> str:
    """'logistic + modality_offsets' -> 'logistic regression, per-test offsets'."""
    model, _, adaptation = arm.partition(" + ")
    return f"{MODEL_WORDS.get(model, model)}, {ADAPTATION_WORDS.get(adaptation, adaptation)}"


def shift_study_table(path: Path, task: str) -> tuple[list[dict], dict] | None:
    """The synthetic site-shift study for one outcome: error against the true risk at a new site, by its ordering
    policy and how strongly clinicians' unrecorded judgement drives ordering
    (mmnar_app/resources/model_card/shift_study.json)."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for row in data["rows"]:
        if row["task"] != task:
            continue
        rows.append(
            {
                "unrecorded judgement": f"{row['judgement']:g}",
                "new site orders": POLICY_WORDS.get(row["policy"], row["policy"]),
                "as shipped": f"{row['ours_none']:.3f}",
                "with site correction": f"{row['ours_rectifier_v2']:.3f}",
                "best other model": f"{_arm_words(row['reference'])}: {row['reference_error']:.3f}",
                "ours / best other": f"{row['ratio']:.2f} ({row['verdict']})",
            }
        )
    return rows, data
