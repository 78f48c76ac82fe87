"""A readable markdown summary of a shift-study results.json (the tables docs/results.md shows)."""

from __future__ import annotations

import numpy as np


def _ci(low: float, high: float, digits: int = 3) -> str:
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def markdown(results: dict) -> str:
    config = results["config"]
    lines = [
        f"# Shift study ({results['format']})",
        "",
        f"Site A {config['n_site_a']:,} patients (default policy, scenario {config['scenario']}); site B "
        f"{config['n_site_b']:,} patients, pools {', '.join(map(str, config['pools']))}, test = the rest; "
        f"training seeds {config['training_seeds']}, cohort seeds {config['cohort_seeds']}; models "
        f"{', '.join(config['models'])}; {config['n_resamples']} paired bootstrap resamples; "
        f"{results['seconds']:.0f} s.",
        "",
    ]
    for group in results["groups"]:
        lines += _group(group, config)
    lines += _headline(results["headline"])
    return "\n".join(lines) + "\n"


def _group(group: dict, config: dict) -> list[str]:
    lines = [
        f"## Unrecorded judgement {group['judgement']:g}, cohort seed {group['cohort_seed']} "
        f"({group['n_test']:,} test patients per policy)",
        "",
    ]
    lines += [
        "### No shift (site B under the default policy): rectifier v2 against no adaptation, ours",
        "",
        "| task | pool | error ratio v2 / none [95 % CI] | RMSE ratio [95 % CI] | pattern bias difference [95 % CI] "
        "| verdict (bias) |",
        "|---|---|---|---|---|---|",
    ]
    for row in group["no_shift"]:
        if row["model"] == "mmnar":
            e, r, b = row["error"], row["rmse"], row["pattern_bias"]
            lines.append(
                f"| {row['task']} | {row['pool']} | {e['ratio']:.3f} {_ci(e['ratio_low'], e['ratio_high'])} | "
                f"{r['ratio']:.3f} {_ci(r['ratio_low'], r['ratio_high'])} | "
                f"{b['difference']:+.4f} {_ci(b['low'], b['high'], 4)} | {b['verdict']} |"
            )
    lines += [
        "",
        "### Per-pattern true bias: rectifier v2 against a global intercept + slope, ours (pools <= 1,000)",
        "",
        "| policy | task | pool | bias v2 | bias global | cut [95 % CI] | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in group["bias_cut"]:
        if row["model"] == "mmnar" and row["pool"] <= 1000 and row["policy"] != "default":
            b = row["pattern_bias"]
            lines.append(
                f"| {row['policy']} | {row['task']} | {row['pool']} | {b['a']:.4f} | {b['b']:.4f} | "
                f"{1 - b['ratio']:+.0%} {_ci(1 - b['ratio_high'], 1 - b['ratio_low'], 2)} | {b['verdict']} |"
            )
    lines += [
        "",
        "### Architecture: ours with its best adaptation against the best reference with its best (pool 1,000)",
        "",
        "| policy | task | ours | error | best reference | error | ratio [95 % CI] | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in group["architecture"]:
        if row["pool"] == _middle_pool(config):
            e = row["error"]
            lines.append(
                f"| {row['policy']} | {row['task']} | {row['ours_adaptation']} | {e['a']:.4f} | "
                f"{row['reference']}+{row['reference_adaptation']} | {e['b']:.4f} | "
                f"{e['ratio']:.3f} {_ci(e['ratio_low'], e['ratio_high'])} | {e['verdict']} |"
            )
    lines += ["", "### Error against the true risk at pool " + f"{_middle_pool(config):,}" + " (mean over tasks)", ""]
    lines += _error_grid(group, config)
    lines += [
        "",
        "### Interval coverage of the true risk (ours, nominal 95 %; pool " + f"{_middle_pool(config):,})",
        "",
        "| policy | task | none (members only) | rectifier v2 (members + correction) | pattern-mean PPI |",
        "|---|---|---|---|---|",
    ]
    cover = {
        (r["policy"], r["task"], r["adaptation"]): r for r in group["coverage"] if r["pool"] == _middle_pool(config)
    }
    for policy in config["policies"]:
        for task in sorted({r["task"] for r in group["coverage"]}):
            none, v2 = cover[(policy, task, "none")], cover[(policy, task, "rectifier_v2")]
            ppi = v2.get("pattern_mean_coverage", {})
            ppi_text = f"{ppi['value']:.2f} (n {ppi['n']})" if ppi.get("value") is not None else "n/a"
            lines.append(
                f"| {policy} | {task} | {none['patient_coverage']['value']:.2f} | "
                f"{v2['patient_coverage']['value']:.2f} | {ppi_text} |"
            )
    return lines + [""]


def _middle_pool(config: dict) -> int:
    pools = config["pools"]
    return 1000 if 1000 in pools else pools[len(pools) // 2]


def _error_grid(group: dict, config: dict) -> list[str]:
    pool = _middle_pool(config)
    adaptations = ["none", "global", "modality_offsets", "rectifier_v2"]
    lines = [
        "| model | adaptation | " + " | ".join(config["policies"]) + " |",
        "|---|---|" + "---|" * len(config["policies"]),
    ]
    for model in config["models"]:
        for adaptation in adaptations:
            values = []
            for policy in config["policies"]:
                cells = [
                    c["error"]["value"]
                    for c in group["cells"]
                    if c["model"] == model
                    and c["adaptation"] == adaptation
                    and c["policy"] == policy
                    and c["pool"] == pool
                ]
                values.append(f"{np.mean(cells):.4f}")
            lines.append(f"| {model} | {adaptation} | " + " | ".join(values) + " |")
    return lines


def _headline(headline: dict) -> list[str]:
    lines = ["## Headline figures", ""]
    ratios = [r["error_ratio"] for r in headline["no_shift"]]
    rmse = [r["rmse_ratio"] for r in headline["no_shift"]]
    worse_bias = [r for r in headline["no_shift"] if r["pattern_bias_interval"][0] > 0]
    if ratios:
        lines.append(
            f"- No shift: error ratio rectifier v2 / none from {min(ratios):.3f} to {max(ratios):.3f} (RMSE "
            f"{min(rmse):.3f} to {max(rmse):.3f}) over {len(ratios)} task x pool cells; pattern bias raised "
            f"beyond noise in {len(worse_bias)} cells."
        )
    for policy in sorted({r["policy"] for r in headline["bias_cut"]}):
        rows = [r for r in headline["bias_cut"] if r["policy"] == policy]
        big = [r for r in rows if r["cut"] >= 0.25 and r["verdict"] == "better"]
        lines.append(
            f"- {policy}: rectifier v2 cut pattern bias vs global by >= 25 % (interval excluding 0) in "
            f"{len(big)} of {len(rows)} judgement x task x pool cells (median cut {np.median([r['cut'] for r in rows]):+.0%})."
        )
    for name, row in headline["coverage"].items():
        lines.append(f"- Coverage ({name}): mean {row['mean']:.2f}, lowest {row['min']:.2f} over {row['cells']} cells.")
    arch = headline["architecture"]
    if arch:
        wins = [r for r in arch if r["error_ratio"] <= 0.9 and r["verdict"] == "better"]
        losses = [r for r in arch if r["verdict"] == "worse"]
        lines.append(
            f"- Architecture (pools <= 1,000): ours >= 10 % lower error than the best reference in {len(wins)} of "
            f"{len(arch)} cells; worse in {len(losses)}; median ratio {np.median([r['error_ratio'] for r in arch]):.3f}."
        )
    return lines


def card_summary(results: dict, pool: int | None = None) -> dict:
    """What the app's model card shows (mmnar_app/resources/model_card/shift_study.json): per judgement, task and
    policy at one pool size, the error against the true risk of ours unadapted and with rectifier v2, and of the
    best reference with its best adaptation, with the paired ratio interval; plus the run's settings."""
    config = results["config"]
    pool = pool or _middle_pool(config)
    rows = []
    for group in results["groups"]:
        cells = {
            (c["model"], c["adaptation"], c["policy"], c["task"]): c["error"]["value"]
            for c in group["cells"]
            if c["pool"] == pool
        }
        for row in group["architecture"]:
            if row["pool"] != pool:
                continue
            policy, task = row["policy"], row["task"]
            rows.append(
                {
                    "judgement": group["judgement"],
                    "policy": policy,
                    "task": task,
                    "ours_none": cells[("mmnar", "none", policy, task)],
                    "ours_rectifier_v2": cells[("mmnar", "rectifier_v2", policy, task)],
                    "reference": f"{row['reference']} + {row['reference_adaptation']}",
                    "reference_error": row["error"]["b"],
                    "ours_best": f"mmnar + {row['ours_adaptation']}",
                    "ratio": row["error"]["ratio"],
                    "ratio_low": row["error"]["ratio_low"],
                    "ratio_high": row["error"]["ratio_high"],
                    "verdict": row["error"]["verdict"],
                }
            )
    return {
        "format": "mmnar-shift-study-card/1",
        "pool": pool,
        "n_site_a": config["n_site_a"],
        "n_site_b": config["n_site_b"],
        "scenario": config["scenario"],
        "training_seeds": config["training_seeds"],
        "models": config["models"],
        "rows": rows,
    }
