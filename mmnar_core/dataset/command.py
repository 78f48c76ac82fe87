"""`python -m mmnar_core validate DATASET_DIR`: check a dataset directory and summarise it."""

from __future__ import annotations

import json

from mmnar_core.dataset.manifest import true_prob_column
from mmnar_core.dataset.reader import load_dataset
from mmnar_core.patterns import pattern_label


def register(subparsers) -> None:
    parser = subparsers.add_parser("validate", help="check a dataset directory against docs/data_format.md")
    parser.add_argument("dataset", help="dataset directory")
    parser.add_argument("--verify", choices=["none", "tables", "all"], default="all", help="which checksums to verify")
    parser.set_defaults(func=run)


def oracle_auroc(dataset) -> dict[str, float]:
    """AUROC of the true probabilities (synthetic data): the ceiling any model can reach."""
    from sklearn.metrics import roc_auc_score

    result = {}
    for outcome in dataset.manifest.outcomes:
        labels = dataset.labels(outcome.name)
        known = labels.notna().to_numpy()
        probs = dataset.patients[true_prob_column(outcome.name)].to_numpy()[known]
        result[outcome.name] = round(float(roc_auc_score(labels[known].astype(int), probs)), 4)
    return result


def run(args) -> int:
    dataset = load_dataset(args.dataset, verify=args.verify)
    manifest = dataset.manifest
    patterns = dataset.patients["pattern"].value_counts().sort_index()
    summary = {
        "name": manifest.name,
        "patients": len(dataset),
        "splits": manifest.split_counts,
        "availability": dict(zip(manifest.modality_names, dataset.availability().mean(axis=0).round(4).tolist())),
        "label_prevalence": {o.name: round(float(dataset.labels(o.name).mean()), 4) for o in manifest.outcomes},
        "patterns": {pattern_label(p, manifest.modality_names): int(n) for p, n in patterns.items()},
        "content_hash": manifest.content_hash,
    }
    if manifest.has_true_probabilities:
        summary["oracle_auroc"] = oracle_auroc(dataset)
    print(json.dumps(summary, indent=2))
    return 0
