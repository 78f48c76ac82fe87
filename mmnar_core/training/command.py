"""`train`, `evaluate`, `rectify` and `reference-image` commands."""

from __future__ import annotations

import json
from pathlib import Path


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train the MMNAR model on cached embeddings and write a bundle")
    train.add_argument("dataset", help="dataset directory (embeddings cached by `embed`)")
    train.add_argument("--out", required=True, help="bundle directory to create")
    train.add_argument("--config", default=None, help="JSON file of MMNARConfig fields to override")
    train.add_argument("--seed", type=int, default=None, help="random seed (overrides the config)")
    train.add_argument("--cache", default=None, help="embedding cache directory")
    train.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    train.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples for the test metrics")
    train.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (default 1: the model is small and more threads oversubscribe shared cores)",
    )
    train.add_argument("--overwrite", action="store_true", help="replace an existing bundle directory")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser("evaluate", help="evaluate a bundle on a dataset split")
    evaluate.add_argument("bundle")
    evaluate.add_argument("dataset")
    evaluate.add_argument("--split", choices=["test", "all"], default="test")
    evaluate.add_argument("--out", required=True, help="folder for metrics.json, report.md, predictions.parquet")
    evaluate.add_argument("--cache", default=None)
    evaluate.add_argument("--device", default=None)
    evaluate.add_argument("--resamples", type=int, default=1000)
    evaluate.set_defaults(func=run_evaluate)

    rectify = subparsers.add_parser("rectify", help="refit temperature and rectifier on labelled data from a new site")
    rectify.add_argument("bundle")
    rectify.add_argument("dataset")
    rectify.add_argument(
        "--split", choices=["train", "val", "all"], default="val", help="labelled rows to fit on (never test)"
    )
    rectify.add_argument("--out", required=True, help="new bundle directory (the old one is kept)")
    rectify.add_argument("--overwrite", action="store_true", help="replace an existing bundle directory at --out")
    rectify.add_argument("--cache", default=None)
    rectify.add_argument("--device", default=None)
    rectify.set_defaults(func=run_rectify)

    reference = subparsers.add_parser(
        "reference-image",
        help="add the reference X-ray (image IG baseline) to a bundle trained before it existed",
        description="Compute the pixel-wise median of up to --max-images training X-rays of the bundle's own "
        "training dataset (same content hash) and write a new bundle with it; weights, calibration "
        "and every other file are copied unchanged. Bundles trained by this version already have it.",
    )
    reference.add_argument("bundle")
    reference.add_argument("dataset", help="the dataset the bundle was trained on")
    reference.add_argument("--out", required=True, help="new bundle directory (the old one is kept)")
    reference.add_argument("--max-images", type=int, default=500)
    reference.add_argument("--overwrite", action="store_true", help="replace an existing bundle directory at --out")
    reference.set_defaults(func=run_reference_image)


def run_train(args) -> int:
    import torch

    from mmnar_core.training.pipeline import load_config_file, run_training

    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    bundle, figures = run_training(
        args.dataset,
        args.out,
        load_config_file(args.config),
        args.seed,
        args.cache,
        args.device,
        args.overwrite,
        not args.quiet,
        args.resamples,
    )
    if figures.get("rank", 0) != 0:
        return 0  # under torchrun only rank 0 reports
    print(json.dumps({"bundle": str(bundle), **figures}, indent=2))
    return 0


def _bundle_and_data(args):
    from mmnar_core.bundle import load_bundle
    from mmnar_core.dataset import load_dataset
    from mmnar_core.encoders.runtime import pick_device
    from mmnar_core.evaluation.new_site import load_bundle_embeddings
    from mmnar_core.training.data import build_model_data

    device = pick_device(args.device)
    bundle = load_bundle(args.bundle, device)
    dataset = load_dataset(args.dataset)
    if dataset.manifest.modality_names != bundle.config.modalities:
        raise ValueError(
            f"dataset modalities {dataset.manifest.modality_names} differ from the bundle's {bundle.config.modalities}"
        )
    embeddings = load_bundle_embeddings(bundle, dataset, args.bundle, args.cache)  # names the embed command if not
    return bundle, build_model_data(dataset, embeddings.vectors, bundle.config.tasks), device, dataset


def run_evaluate(args) -> int:
    from mmnar_core.evaluation.new_site import unknown_category_counts
    from mmnar_core.evaluation.report import write_evaluation
    from mmnar_core.training.pipeline import evaluate_split

    bundle, data, device, dataset = _bundle_and_data(args)
    frame, report = evaluate_split(
        bundle.model, bundle.temperature, bundle.rectifiers, data, args.split, device, args.resamples
    )
    report["unknown_categories"] = unknown_category_counts(
        bundle, dataset, None if args.split == "all" else data.rows(args.split)
    )
    out = write_evaluation(
        args.out, frame, report, f"Evaluation of {bundle.model_id} on {Path(args.dataset).name} ({args.split})"
    )
    print(json.dumps({"out": str(out), "n": report["n"]}, indent=2))
    return 0


def run_rectify(args) -> int:
    import numpy as np

    from mmnar_core.bundle import kept_files, save_bundle
    from mmnar_core.training.pipeline import fit_calibration

    if Path(args.out).resolve() == Path(args.bundle).resolve():
        raise ValueError("--out must differ from the bundle being refit (the original is kept)")
    bundle, data, device, _ = _bundle_and_data(args)
    rows = np.flatnonzero(data.splits != "test") if args.split == "all" else data.rows(args.split)
    temperature, rectifiers = fit_calibration(bundle.model, data, device, rows, source="external")
    metrics = dict(bundle.metrics)
    reports = {task: {**r.summary(), "patterns": r.report(list(data.modalities))} for task, r in rectifiers.items()}
    metrics["rectifier_refit"] = {
        "from_bundle": bundle.model_id,
        "dataset": Path(args.dataset).name,
        "split": args.split,
        "n": int(len(rows)),
        "tasks": reports,
    }
    card = bundle.model_card + (
        f"\n## Rectifier refit\nTemperature and rectifier refit on {len(rows)} labelled patients of "
        f"`{Path(args.dataset).name}` ({args.split} split); network weights unchanged from {bundle.model_id}.\n"
    )
    out = save_bundle(
        args.out,
        bundle.model,
        temperature,
        rectifiers,
        bundle.dataset,
        bundle.encoders,
        metrics,
        card,
        extra_files=kept_files(bundle),
        overwrite=args.overwrite,
    )
    print(json.dumps({"bundle": str(out), "n_fit": int(len(rows)), "rectifiers": reports}, indent=2))
    print(rectifier_table(reports))
    return 0


def rectifier_table(reports: dict) -> str:
    """Per task and pattern: support, the correction used (logit) with its 95 % interval, and whether the gate
    kept the pattern's own correction; the level chosen and why."""
    lines = []
    for task, report in reports.items():
        lines += [
            f"\n{task}: level {report['level']} (slope {report['slope']:.3f}, intercept {report['intercept']:+.3f}). "
            f"{report['reason']}",
            "| pattern | n | events | own estimate | correction used [95 % CI] | kept |",
            "|---|---|---|---|---|---|",
        ]
        for row in report["patterns"]:
            if row["n"] == 0:
                continue
            own = "" if row["raw_offset"] is None else f"{row['raw_offset']:+.3f} (se {row['raw_offset_se']:.3f})"
            lines.append(
                f"| {row['modalities']} | {row['n']} | {row['events']} | {own} | {row['offset']:+.3f} "
                f"[{row['low']:+.3f}, {row['high']:+.3f}] | {'yes' if row['kept'] else 'no'} |"
            )
    return "\n".join(lines)


def run_reference_image(args) -> int:
    from mmnar_core.bundle import REFERENCE_IMAGE_FILE, load_bundle, save_copy
    from mmnar_core.dataset import load_dataset
    from mmnar_core.training.reference_image import image_encoder_configs, reference_image_file

    if Path(args.out).resolve() == Path(args.bundle).resolve():
        raise ValueError("--out must differ from the bundle (the original is kept)")
    if args.max_images < 1:
        raise ValueError(f"--max-images must be at least 1, got {args.max_images}")
    bundle = load_bundle(args.bundle)
    dataset = load_dataset(args.dataset)
    trained_on = bundle.dataset.get("content_hash")
    if dataset.manifest.content_hash != trained_on:
        raise ValueError(
            f"{args.dataset} (content hash {dataset.manifest.content_hash[:12]}) is not the dataset the bundle "
            f"was trained on ({bundle.dataset.get('name')}, {str(trained_on)[:12]}): the reference X-ray "
            "must come from the training X-rays"
        )
    configs = image_encoder_configs(bundle.encoders, lambda encoder_id: bundle.root / "encoders" / encoder_id)
    files = reference_image_file(dataset, configs, args.max_images)
    if not files:
        raise ValueError(f"{args.dataset} has no training images of {', '.join(configs) or 'any image modality'}")
    out = save_copy(bundle, args.out, files, overwrite=args.overwrite)
    print(json.dumps({"bundle": str(out), "file": REFERENCE_IMAGE_FILE, "modalities": sorted(configs)}, indent=2))
    return 0
