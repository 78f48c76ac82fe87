"""The decisive experiment: train at site A, deploy at site B under other ordering policies, adapt on a few
labelled site-B patients, score against the true risk.

For each judgement strength and cohort seed: simulate site A (default policy) and site B (same
population, another seed); train every model on site A (train split, early stopping and temperature on
site A's validation split) for each training seed; predict every site-B patient under every policy; for
each pool size, fit each adaptation on the first `pool` patients of a seeded permutation of site B's
pool rows (never on test rows) and score the test rows (the rest of site B) against the true risk.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict

import numpy as np
import torch

from mmnar_core.baselines.models import MODELS, builder, fit_model, spec_config
from mmnar_core.calibration import PatternRectifier, TemperatureScaler
from mmnar_core.calibration.rectifier import Z_95, RectifierConfig
from mmnar_core.model import MMNARConfig
from mmnar_core.numeric import logit, sigmoid
from mmnar_core.training.trainer import predict_logits, predict_logits_and_spread, train
from mmnar_lab.shift_study.config import ADAPTATION_NAMES, REFERENCE_MODELS, StudyConfig
from mmnar_lab.shift_study.score import Resampler, compare, interval_summary
from mmnar_lab.shift_study.sites import MODALITIES, simulate_site, study_data

RESULTS_FORMAT = "mmnar-shift-study/1"
ADAPTATIONS = {  # name -> rectifier configuration (None: no adaptation, the site-A model as shipped)
    "none": None,
    "global": RectifierConfig(level="global"),
    "modality_offsets": RectifierConfig(level="modality"),
    "rectifier_v2": RectifierConfig(),
}
assert tuple(ADAPTATIONS) == ADAPTATION_NAMES, "the command line lists config.ADAPTATION_NAMES"
# ------------------------------------------------------------------------------------------ one model


def fit_arm(
    name: str, data, config: MMNARConfig, seed: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(val logits, test logits, test member spread) of one model trained on site A."""
    spec = MODELS[name]
    if spec.kind != "mmnar":
        fitted = fit_model(spec, data, config, seed, device, [0])
        return fitted.val, fitted.test, np.zeros_like(fitted.test)
    model = train(spec_config(spec, config, seed), data, device, progress=False, build_model=builder(spec, [0])).model
    test, spread = predict_logits_and_spread(model, data, data.rows("test"), device)
    return predict_logits(model, data, data.rows("val"), device), test, spread


def adapt(adaptation: str, pool_patterns, pool_probs, pool_labels, test_patterns, test_probs, model_sd):
    """(test risks, interval low, interval high, the fitted rectifier or None) after fitting `adaptation` on the pool."""
    rectifier_config = ADAPTATIONS[adaptation]
    if rectifier_config is None:
        z = logit(test_probs)
        half = Z_95 * model_sd
        return test_probs, sigmoid(z - half), sigmoid(z + half), None
    rectifier = PatternRectifier(len(MODALITIES), rectifier_config).fit(
        pool_patterns, pool_probs, pool_labels, "external"
    )
    low, high = rectifier.interval(test_patterns, test_probs, model_sd)
    return rectifier.transform(test_patterns, test_probs), low, high, rectifier


# ------------------------------------------------------------------------------------------ the study


def site_pair(config: StudyConfig, judgement: float, cohort_seed: int):
    site_a, tabular = simulate_site(config.n_site_a, 1000 * cohort_seed + 1, config.scenario, judgement)
    site_b, _ = simulate_site(config.n_site_b, 1000 * cohort_seed + 2, config.scenario, judgement, tabular)
    return site_a, site_b


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # progress on stderr, shown at once; the tables go to stdout


def run_study(config: StudyConfig, device: torch.device, log=_progress) -> dict:
    results = {
        "format": RESULTS_FORMAT,
        "config": asdict(config),
        "adaptations": list(ADAPTATIONS),
        "modalities": list(MODALITIES),
        "groups": [],
    }
    started = time.perf_counter()
    for judgement in config.judgements:
        for cohort_seed in config.cohort_seeds:
            group = _run_group(config, judgement, cohort_seed, device, log)
            results["groups"].append(group)
            log(f"judgement {judgement:g}, cohort seed {cohort_seed}: done at {time.perf_counter() - started:.0f} s")
    results["seconds"] = round(time.perf_counter() - started, 1)
    results["headline"] = headline(results)
    return results


def _run_group(config: StudyConfig, judgement: float, cohort_seed: int, device, log) -> dict:
    site_a, site_b = site_pair(config, judgement, cohort_seed)
    data = study_data(site_a, site_b, list(config.policies))
    base = MMNARConfig.from_dict({**MMNARConfig().to_dict(), **config.model_overrides, **data.config_fields()})
    n_b, tasks = len(site_b.frame), list(data.tasks)
    test_rows_all = data.rows("test")
    max_pool = config.pools[-1]
    local_test = np.arange(max_pool, n_b)
    truth_b, labels_b = site_b.true_probs, site_b.labels.astype(float)
    val_labels = data.labels[data.rows("val")].numpy().astype(float)

    probs: dict[tuple, list[np.ndarray]] = {}
    inside: dict[tuple, list[np.ndarray]] = {}
    levels: dict[tuple, list[str]] = {}
    ppi: dict[tuple, list[float]] = {}
    seconds: dict[str, float] = {}
    for seed in config.training_seeds:
        pool_order = np.random.default_rng([cohort_seed, seed, 403]).permutation(max_pool)
        for name in config.models:
            started = time.perf_counter()
            val_logits, test_logits, test_sd = fit_arm(name, data, base, seed, device)
            temperature = TemperatureScaler().fit(val_logits, val_labels)
            calibrated = sigmoid(temperature.transform(test_logits))
            model_sd = test_sd / temperature.temperatures
            for k, policy in enumerate(config.policies):
                block = slice(k * n_b, (k + 1) * n_b)
                site = (calibrated[block], model_sd[block], data.patterns[test_rows_all[block]], labels_b, truth_b)
                for pool in config.pools:
                    _adapt_and_record(
                        name, policy, pool, tasks, site, pool_order[:pool], local_test, probs, inside, levels, ppi
                    )
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
            log(
                f"  judgement {judgement:g} cohort {cohort_seed} seed {seed}: {name} trained and adapted "
                f"({time.perf_counter() - started:.0f} s)"
            )
    return _score_group(
        config, judgement, cohort_seed, data, n_b, local_test, truth_b, tasks, probs, inside, levels, ppi, seconds
    )


def _adapt_and_record(name, policy, pool, tasks, site, chosen, local_test, probs, inside, levels, ppi) -> None:
    """Every adaptation of one model at one policy and pool size, fit on the `chosen` pool rows and applied to the
    test rows; records risks, chosen levels and (ours) interval hits and pattern-mean coverage."""
    cal, sd, patterns, labels, truth_all = site
    for adaptation in ADAPTATIONS:
        for t, task in enumerate(tasks):
            risk, low, high, rectifier = adapt(
                adaptation,
                patterns[chosen],
                cal[chosen, t],
                labels[chosen, t],
                patterns[local_test],
                cal[local_test, t],
                sd[local_test, t],
            )
            key = (name, adaptation, policy, pool, task)
            probs.setdefault(key, []).append(risk)
            levels.setdefault(key, []).append(rectifier.level_ if rectifier is not None else "none")
            if name != "mmnar":
                continue
            truth = truth_all[local_test, t]
            inside.setdefault(key, []).append((truth >= low) & (truth <= high))
            if adaptation == "rectifier_v2":
                ppi.setdefault((policy, pool, task), []).extend(
                    _ppi_hits(rectifier, patterns[local_test], cal[local_test, t], truth)
                )


def _ppi_hits(rectifier: PatternRectifier, test_patterns, test_probs, truth) -> list[float]:
    """Per pattern with >= 50 test rows and >= 2 labelled pool rows: does the prediction-powered interval of
    the pattern's mean risk (the fit's unshrunk residuals, whatever level the gate chose) hold the true mean?"""
    out = []
    for g, row in rectifier.pattern_mean_risk(test_patterns, test_probs).items():
        if row["n"] >= 50 and row["estimate"] is not None:
            target = truth[test_patterns == g].mean()
            out.append(float(row["low"] <= target <= row["high"]))
    return out


def _score_group(
    config, judgement, cohort_seed, data, n_b, local_test, truth_b, tasks, probs, inside, levels, ppi, seconds
) -> dict:
    group = {
        "judgement": judgement,
        "cohort_seed": cohort_seed,
        "n_test": int(len(local_test)),
        "cells": [],
        "no_shift": [],
        "bias_cut": [],
        "architecture": [],
        "coverage": [],
        "seconds_per_model": seconds,
        "oracle_auroc": {},
    }
    test_rows_all = data.rows("test")
    references = [m for m in config.models if m in REFERENCE_MODELS]
    for k, policy in enumerate(config.policies):
        patterns = data.patterns[test_rows_all[k * n_b : (k + 1) * n_b]][local_test]
        resampler = Resampler.make(patterns, config.n_resamples, seed=cohort_seed)
        for t, task in enumerate(tasks):
            truth = truth_b[local_test, t]
            for pool in config.pools:
                stats = {}
                for name in config.models:
                    for adaptation in ADAPTATIONS:
                        runs = probs[(name, adaptation, policy, pool, task)]
                        error, bias = resampler.error(runs, truth), resampler.pattern_bias(runs, truth)
                        stats[(name, adaptation)] = (error, bias, resampler.rmse(runs, truth))
                        chosen = levels[(name, adaptation, policy, pool, task)]
                        group["cells"].append(
                            {
                                "policy": policy,
                                "task": task,
                                "pool": pool,
                                "model": name,
                                "adaptation": adaptation,
                                "error": interval_summary(error),
                                "rmse": interval_summary(stats[(name, adaptation)][2]),
                                "pattern_bias": interval_summary(bias),
                                "levels": {lv: chosen.count(lv) for lv in sorted(set(chosen))},
                            }
                        )
                key = {"policy": policy, "task": task, "pool": pool}
                if policy == "default":
                    for name in config.models:
                        group["no_shift"].append(
                            {
                                **key,
                                "model": name,
                                "error": compare(stats[(name, "rectifier_v2")][0], stats[(name, "none")][0]),
                                "rmse": compare(stats[(name, "rectifier_v2")][2], stats[(name, "none")][2]),
                                "pattern_bias": compare(stats[(name, "rectifier_v2")][1], stats[(name, "none")][1]),
                            }
                        )
                for name in config.models:
                    group["bias_cut"].append(
                        {
                            **key,
                            "model": name,
                            "pattern_bias": compare(stats[(name, "rectifier_v2")][1], stats[(name, "global")][1]),
                            "error": compare(stats[(name, "rectifier_v2")][0], stats[(name, "global")][0]),
                        }
                    )
                ours = min(ADAPTATIONS, key=lambda a: stats[("mmnar", a)][0][0])
                best = min(((m, a) for m in references for a in ADAPTATIONS), key=lambda ma: stats[ma][0][0])
                group["architecture"].append(
                    {
                        **key,
                        "ours_adaptation": ours,
                        "reference": best[0],
                        "reference_adaptation": best[1],
                        "error": compare(stats[("mmnar", ours)][0], stats[best][0]),
                        "with_rectifier_v2": compare(
                            stats[("mmnar", "rectifier_v2")][0],
                            min((stats[(m, "rectifier_v2")][0] for m in references), key=lambda e: e[0]),
                        ),
                    }
                )
                for adaptation in ADAPTATIONS:
                    covered = resampler.coverage(inside[("mmnar", adaptation, policy, pool, task)])
                    row = {**key, "adaptation": adaptation, "patient_coverage": interval_summary(covered)}
                    if adaptation == "rectifier_v2":
                        hits = ppi.get((policy, pool, task), [])
                        row["pattern_mean_coverage"] = {"value": float(np.mean(hits)) if hits else None, "n": len(hits)}
                    group["coverage"].append(row)
    return group


# ------------------------------------------------------------------------------------------ headline


def headline(results: dict) -> dict:
    """The issue's figures, pooled over groups: no-shift harm, bias cut under strong shift, coverage, architecture."""
    out = {"no_shift": [], "bias_cut": [], "coverage": {}, "architecture": []}
    for group in results["groups"]:
        tag = {"judgement": group["judgement"], "cohort_seed": group["cohort_seed"]}
        for row in group["no_shift"]:
            if row["model"] == "mmnar":
                out["no_shift"].append(
                    {
                        **tag,
                        "task": row["task"],
                        "pool": row["pool"],
                        "error_ratio": row["error"]["ratio"],
                        "error_ratio_interval": [row["error"]["ratio_low"], row["error"]["ratio_high"]],
                        "rmse_ratio": row["rmse"]["ratio"],
                        "rmse_ratio_interval": [row["rmse"]["ratio_low"], row["rmse"]["ratio_high"]],
                        "pattern_bias_difference": row["pattern_bias"]["difference"],
                        "pattern_bias_interval": [row["pattern_bias"]["low"], row["pattern_bias"]["high"]],
                    }
                )
        for row in group["bias_cut"]:
            if row["model"] == "mmnar" and row["policy"] != "default" and row["pool"] <= 1000:
                b = row["pattern_bias"]
                out["bias_cut"].append(
                    {
                        **tag,
                        "policy": row["policy"],
                        "task": row["task"],
                        "pool": row["pool"],
                        "cut": 1 - b["ratio"],
                        "cut_interval": [1 - b["ratio_high"], 1 - b["ratio_low"]],
                        "verdict": b["verdict"],
                    }
                )
        for row in group["coverage"]:
            if row["adaptation"] == "rectifier_v2":
                out["coverage"].setdefault("patient", []).append(row["patient_coverage"]["value"])
                if row.get("pattern_mean_coverage", {}).get("value") is not None:
                    out["coverage"].setdefault("pattern_mean", []).append(row["pattern_mean_coverage"]["value"])
        for row in group["architecture"]:
            if row["pool"] <= 1000:
                e = row["error"]
                out["architecture"].append(
                    {
                        **tag,
                        "policy": row["policy"],
                        "task": row["task"],
                        "pool": row["pool"],
                        "reference": f"{row['reference']}+{row['reference_adaptation']}",
                        "ours": f"mmnar+{row['ours_adaptation']}",
                        "error_ratio": e["ratio"],
                        "interval": [e["ratio_low"], e["ratio_high"]],
                        "verdict": e["verdict"],
                    }
                )
    for name, values in list(out["coverage"].items()):
        out["coverage"][name] = {"mean": float(np.mean(values)), "min": float(np.min(values)), "cells": len(values)}
    return out
