"""`python -m mmnar_core shift-study --out DIR`: the site-shift experiment as one command (docs/results.md)."""

from __future__ import annotations

import json
from pathlib import Path

from mmnar_core.arg_types import non_negative_int, positive
from mmnar_core.atomic_write import write_text_atomic

LARGE = {
    "n_site_a": 20000,
    "n_site_b": 20000,
    "cohort_seeds": (0, 1, 2),
    "judgements": (0.0, 0.5, 1.0, 2.0),
    "models": (
        "mmnar",
        "mmnar_no_gating",
        "mmnar_no_pattern_embedding",
        "logistic",
        "lightgbm",
        "hgb",
        "structured_only",
        "concat_mask",
        "concat_zero_fill",
    ),
}


def register(subparsers) -> None:
    from types import SimpleNamespace

    from mmnar_lab.shift_study.config import ADAPTATION_NAMES
    from mmnar_lab.shift_study.config import defaults as study_defaults

    defaults = SimpleNamespace(**study_defaults())
    parser = subparsers.add_parser(
        "shift-study",
        help="train at one simulated site, deploy under other ordering policies, adapt, score vs truth",
        description="Site A (default policy) trains every model; site B (same population) is deployed under each "
        "policy; each adaptation (" + ", ".join(ADAPTATION_NAMES) + ") is fit on 100-3,000 labelled site-B "
        "patients; everything is scored against the true risk with paired bootstrap intervals over "
        "training seeds. The defaults run in about 20 minutes on a 2-core CPU; --large is the big run.",
    )
    parser.add_argument("--out", required=True, help="folder for results.json and results.md")
    parser.add_argument(
        "--large",
        action="store_true",
        help="20,000 patients per site, 3 cohort seeds, judgements 0/0.5/1/2, more models",
    )
    parser.add_argument(
        "--n-site-a", type=positive(int), default=None, help=f"site A patients (default {defaults.n_site_a})"
    )
    parser.add_argument(
        "--n-site-b", type=positive(int), default=None, help=f"site B patients (default {defaults.n_site_b})"
    )
    parser.add_argument(
        "--pools",
        type=positive(int),
        nargs="+",
        default=None,
        help=f"labelled site-B pool sizes (default {' '.join(map(str, defaults.pools))})",
    )
    parser.add_argument(
        "--policies", nargs="+", default=None, help=f"deployment policies (default: {' '.join(defaults.policies)})"
    )
    parser.add_argument(
        "--judgements", type=float, nargs="+", default=None, help="unrecorded-judgement strengths (default 0 2)"
    )
    parser.add_argument("--cohort-seeds", type=non_negative_int, nargs="+", default=None)
    parser.add_argument("--training-seeds", type=non_negative_int, nargs="+", default=None)
    parser.add_argument(
        "--models", nargs="+", default=None, help=f"models of benchmark-models (default: {' '.join(defaults.models)})"
    )
    parser.add_argument("--scenario", default=None, help=f"simulator scenario (default {defaults.scenario})")
    parser.add_argument(
        "--resamples", type=positive(int), default=None, help=f"bootstrap resamples (default {defaults.n_resamples})"
    )
    parser.add_argument("--epochs", type=positive(int), default=None, help="maximum training epochs of the networks")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=positive(int), default=2, help="torch threads")
    parser.add_argument("--overwrite", action="store_true", help="replace results in an existing --out folder")
    parser.set_defaults(func=run)

    estimators = subparsers.add_parser(
        "rectifier-estimators",
        help="REML against the method of moments for the rectifier, on planted pattern biases",
        description="Simulated sites with additive per-modality offsets plus a pattern deviation of known sd: the "
        "share of fits whose between-pattern variance hits the zero floor, and the offset error.",
    )
    estimators.add_argument("--sizes", type=positive(int), nargs="+", default=[300, 1000, 1500])
    estimators.add_argument("--sites", type=positive(int), default=100)
    estimators.add_argument("--deviation-sd", type=positive(float), default=0.4)
    estimators.set_defaults(func=run_estimators)


def run_estimators(args) -> int:
    from mmnar_lab.shift_study.estimators import compare_estimators

    rows = compare_estimators(tuple(args.sizes), args.sites, args.deviation_sd)
    print(json.dumps(rows, indent=1))
    print("\n| n | estimator | fits with tau^2 = 0 | mean offset error (logit) |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['n']} | {row['estimator']} | {row['share_tau2_zero']:.0%} | {row['offset_error']:.3f} |")
    return 0


def study_config(args):
    from mmnar_lab.shift_study.config import StudyConfig

    values = dict(LARGE) if args.large else {}
    given = {
        "n_site_a": args.n_site_a,
        "n_site_b": args.n_site_b,
        "pools": args.pools,
        "policies": args.policies,
        "judgements": args.judgements,
        "cohort_seeds": args.cohort_seeds,
        "training_seeds": args.training_seeds,
        "models": args.models,
        "scenario": args.scenario,
        "n_resamples": args.resamples,
    }
    values.update({k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if v is not None})
    if args.epochs is not None:
        values["model_overrides"] = {"epochs": args.epochs}
    return StudyConfig(**values)


def run(args) -> int:
    import torch

    from mmnar_core.encoders.runtime import pick_device
    from mmnar_lab.shift_study.report import card_summary, markdown
    from mmnar_lab.shift_study.run import run_study

    config = study_config(args)  # every check before any work
    out = Path(args.out)
    if (out / "results.json").exists() and not args.overwrite:
        raise ValueError(f"{out / 'results.json'} exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    results = run_study(config, pick_device(args.device))
    write_text_atomic(out / "results.json", json.dumps(results, indent=1))
    table = markdown(results)
    write_text_atomic(out / "results.md", table)
    write_text_atomic(out / "card.json", json.dumps(card_summary(results), indent=1))
    print(table)
    print(
        f"\nwrote {out / 'results.json'}, {out / 'results.md'} and {out / 'card.json'} (the model card's summary: "
        "copy it to mmnar_app/resources/model_card/shift_study.json for the demo bundle)"
    )
    return 0
