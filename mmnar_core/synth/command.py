"""`python -m mmnar_core synth --n N --seed S --policy NAME --out DIR`."""

from __future__ import annotations

import json

from mmnar_core.synth.policy import POLICIES, POLICY_NAMES
from mmnar_core.synth.scm import SCENARIO_NAMES, SCENARIOS


def register(subparsers) -> None:
    policies = "; ".join(f"{name}: {policy.description}" for name, policy in POLICIES.items())
    scenarios = "; ".join(f"{name}: {description}" for name, (description, _) in SCENARIOS.items())
    parser = subparsers.add_parser(
        "synth",
        help="simulate a synthetic MMNAR cohort with ground truth (docs/synthetic.md)",
        description=f"Policies: {policies}; mcar: availability independent of everything, at the default policy's "
        "rates; mar: availability from observed data only. --unrecorded-judgement S adds a suspicion no modality "
        "records, which raises the outcomes and (per policy) the ordering of X-rays.",
    )
    parser.add_argument("--n", type=int, required=True, help="number of patients")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--policy", default="default", choices=POLICY_NAMES, help="clinician ordering policy")
    parser.add_argument(
        "--scenario", default="default", choices=SCENARIO_NAMES, help=f"structural equations ({scenarios})"
    )
    parser.add_argument(
        "--unrecorded-judgement",
        type=float,
        default=0.0,
        metavar="S",
        help="strength of a clinical suspicion that drives ordering and the outcomes but is in no "
        "recorded modality (0 = none, the default; 0.5, 1, 2 documented in docs/synthetic.md)",
    )
    parser.add_argument("--out", required=True, help="dataset directory to create")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count, at most 4)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from mmnar_core.dataset import load_dataset
    from mmnar_core.synth.cohort import CohortConfig, build_cohort

    config = CohortConfig(
        n=args.n,
        seed=args.seed,
        policy=args.policy,
        scenario=args.scenario,
        unrecorded_judgement=args.unrecorded_judgement,
    )
    out = build_cohort(config, args.out, overwrite=args.overwrite, workers=args.workers, progress=not args.quiet)
    dataset = load_dataset(out, verify="none")
    summary = {
        "out": str(out),
        "patients": len(dataset),
        "availability": dict(
            zip(dataset.manifest.modality_names, dataset.availability().mean(axis=0).round(4).tolist())
        ),
        "label_prevalence": {o.name: round(float(dataset.labels(o.name).mean()), 4) for o in dataset.manifest.outcomes},
        "content_hash": dataset.manifest.content_hash,
    }
    print(json.dumps(summary, indent=2))
    return 0
