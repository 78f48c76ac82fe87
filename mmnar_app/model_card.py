"""Tables of the model card page, from the bundle's test-split metrics and calibration state."""

from __future__ import annotations

import json
from pathlib import Path

from mmnar_app.display import pattern_name


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
        group = groups.setdefault(row["group"], {"pattern": pattern_name(row["group"].split("+")), "n": row["n"],
                                                 "positives": row.get("n_pos")})
        group[row["metric"].upper() if row["metric"] != "brier" else "Brier"] = _interval(row)
    return sorted(groups.values(), key=lambda g: -g["n"])


def rectifier_table(calibration: dict, task: str, modalities: list[str], pattern_counts: dict) -> list[dict]:
    """The pattern rectifier's logit correction per pattern with its interval and how many validation
    patients it rests on (patterns never seen get the shrunk global value)."""
    from mmnar_core.patterns import decode_pattern

    state = calibration["rectifiers"][task]
    rows = []
    for pattern, n in enumerate(state["n"]):
        if not n and not pattern_counts.get(str(pattern)):
            continue
        present = [m for m, a in zip(modalities, decode_pattern(pattern, len(modalities))) if a]
        rows.append({"pattern": pattern_name(present), "validation patients": n,
                     "training patients": pattern_counts.get(str(pattern), 0),
                     "correction (logit)": f"{state['offset'][pattern]:+.3f} [{state['offset_low'][pattern]:+.3f}, "
                                           f"{state['offset_high'][pattern]:+.3f}]"})
    return sorted(rows, key=lambda r: -r["validation patients"])


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
            out[f"{task} AUROC"] = f"{cell['mean']:.3f} ± {cell['sd']:.3f}" if cell and cell["mean"] is not None else "n/a"
        rows.append(out)
    oracle = {"model": "oracle (true probability)", "what it is": "the simulator's own probability: the ceiling"}
    for task in tasks:
        oracle[f"{task} AUROC"] = f"{data['oracle'][task]['auroc']:.3f}"
    rows.append(oracle)
    return rows, data
