"""Gate variants of rectifier v2 on many labelled pools: harm at no shift, bias cut under shift (docs/calibration.md).

The MMNAR model is trained once per judgement strength at site A (the shift-study sites, seed 0); its
calibrated site-B predictions are cached in the .npz given as the first argument (default
rectifier_gate_predictions.npz), then every gate variant is fit on 15 random pools per size and scored
against the true risk. Run: python benchmarks/rectifier_gate.py [CACHE.npz]  (2.5 min on 2 cores beside another job).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from mmnar_core.calibration import PatternRectifier, TemperatureScaler
from mmnar_core.calibration.rectifier import RectifierConfig
from mmnar_core.model import MMNARConfig
from mmnar_core.numeric import sigmoid
from mmnar_lab.shift_study.run import StudyConfig, fit_arm, site_pair
from mmnar_lab.shift_study.sites import study_data

torch.set_num_threads(1)
POLICIES = ["default", "reversed", "low_imaging", "mcar"]
cache = Path(sys.argv[1] if len(sys.argv) > 1 else "rectifier_gate_predictions.npz")
if not cache.exists():
    saved = {}
    for j in (0.0, 2.0):
        a, b = site_pair(StudyConfig(), j, 0)
        data = study_data(a, b, POLICIES)
        base = MMNARConfig.from_dict({**MMNARConfig().to_dict(), **data.config_fields()})
        val, test, sd = fit_arm("mmnar", data, base, 0, torch.device("cpu"))
        t = TemperatureScaler().fit(val, data.labels[data.rows("val")].numpy().astype(float))
        cal = sigmoid(t.transform(test))
        n = len(b.frame)
        rows = data.rows("test")
        for k, p in enumerate(POLICIES):
            saved[f"cal_{j}_{p}"] = cal[k * n : (k + 1) * n]
            saved[f"pat_{j}_{p}"] = data.patterns[rows[k * n : (k + 1) * n]]
        saved[f"y_{j}"] = b.labels
        saved[f"truth_{j}"] = b.true_probs
    np.savez(cache, **saved)
S = dict(np.load(cache))
VARIANTS = {
    "se1_epv0": RectifierConfig(gate_se=1.0, events_per_parameter=0),
    "se1_epv10": RectifierConfig(gate_se=1.0, events_per_parameter=10),
    "se2_epv10": RectifierConfig(gate_se=2.0, events_per_parameter=10),  # the default
    "se1_epv20": RectifierConfig(gate_se=1.0, events_per_parameter=20),
}
GLOBAL = RectifierConfig(level="global")


def bias(p, t, g):
    out = [abs(p[g == k].mean() - t[g == k].mean()) for k in np.unique(g) if (g == k).sum() >= 50]
    return np.mean(out)


test = np.arange(3000, 8000)
results = []
for j in (0.0, 2.0):
    y, truth = S[f"y_{j}"].astype(float), S[f"truth_{j}"]
    for policy in POLICIES:
        cal, pat = S[f"cal_{j}_{policy}"], S[f"pat_{j}_{policy}"]
        for pool in (100, 300, 1000):
            for rep in range(15):
                chosen = np.random.default_rng([rep, pool, 9]).choice(3000, pool, replace=False)
                for t in range(3):
                    none_p = cal[test, t]
                    row = {
                        "j": j,
                        "policy": policy,
                        "pool": pool,
                        "rep": rep,
                        "task": t,
                        "none_err": float(np.abs(none_p - truth[test, t]).mean()),
                        "none_bias": bias(none_p, truth[test, t], pat[test]),
                    }
                    for name, cfg in {**VARIANTS, "global": GLOBAL}.items():
                        try:
                            r = PatternRectifier(4, cfg).fit(pat[chosen], cal[chosen, t], y[chosen, t], "external")
                            p = r.transform(pat[test], cal[test, t])
                            lvl = r.level_
                        except Exception:
                            p = none_p
                            lvl = "error"
                        row[f"{name}_err"] = float(np.abs(p - truth[test, t]).mean())
                        row[f"{name}_bias"] = bias(p, truth[test, t], pat[test])
                        row[f"{name}_lvl"] = lvl
                    results.append(row)
json.dump(results, open(cache.with_suffix(".json"), "w"))
for j in (0.0, 2.0):
    for policy in POLICIES:
        for pool in (100, 300, 1000):
            rs = [r for r in results if r["j"] == j and r["policy"] == policy and r["pool"] == pool]
            line = f"j{j:g} {policy:12s} {pool:5d}"
            for name in list(VARIANTS) + ["global"]:
                er = np.mean([r[f"{name}_err"] for r in rs]) / np.mean([r["none_err"] for r in rs])
                worst = max(
                    np.mean([r[f"{name}_err"] for r in rs if r["task"] == t])
                    / np.mean([r["none_err"] for r in rs if r["task"] == t])
                    for t in range(3)
                )
                bi = np.mean([r[f"{name}_bias"] for r in rs])
                bg = np.mean([r["global_bias"] for r in rs])
                bn = np.mean([r["none_bias"] for r in rs])
                line += (
                    f" | {name}: err {er:.3f} (worst task {worst:.3f}) bias {bi:.4f} (none {bn:.4f}, global {bg:.4f})"
                )
            print(line)
