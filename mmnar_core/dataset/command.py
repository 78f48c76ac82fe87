"""`python -m mmnar_core validate DATASET_DIR`: check a dataset directory and summarise it."""

from __future__ import annotations

import json

from mmnar_core.dataset.reader import load_dataset
from mmnar_core.patterns import pattern_label


def register(subparsers) -> None:
    parser = subparsers.add_parser("validate", help="check a dataset directory against docs/data_format.md")
    parser.add_argument("dataset", help="dataset directory")
    parser.add_argument("--verify", choices=["none", "tables", "all"], default="all", help="which checksums to verify")
    parser.set_defaults(func=run)


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
    print(json.dumps(summary, indent=2))
    return 0
