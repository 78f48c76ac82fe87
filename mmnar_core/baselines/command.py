"""`benchmark-models`: the MMNAR model, its ablations and the baselines over several seeds, one table."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mmnar_core.atomic_write import write_text_atomic
from mmnar_core.baselines.names import DEFAULT_MODALITY_DROPOUT, MODEL_NAMES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "benchmark-models",
        help="compare the MMNAR model with its ablations and baselines over several seeds",
        description="For each seed and model: train on train (early stopping on val), fit temperature and the "
        "rectifier on val, evaluate on test. Writes results.json (every run) and results.md (one table, "
        "mean ± sd over seeds).",
    )
    parser.add_argument("dataset", help="dataset directory (embeddings cached by `embed`)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="random seeds (default: 0 1 2)")
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(MODEL_NAMES),
        metavar="MODEL",
        help=f"models to run (default: all of {', '.join(MODEL_NAMES)})",
    )
    parser.add_argument("--cache", default=None, help="embedding cache directory")
    parser.add_argument(
        "--out",
        default=None,
        help="folder for results.json and results.md (default: ./benchmark-models-<dataset name>)",
    )
    parser.add_argument(
        "--config",
        default=None,
        help="JSON file of MMNARConfig fields for every network (the ablations and baselines change "
        "only their own switches)",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=200,
        help="bootstrap resamples for each run's intervals in results.json (default 200; the table's "
        "spread is over seeds)",
    )
    parser.add_argument(
        "--modality-dropout",
        type=float,
        default=DEFAULT_MODALITY_DROPOUT,
        help=f"drop rate of the concat_dropout baseline (default {DEFAULT_MODALITY_DROPOUT})",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch and scikit-learn (default 1: more threads oversubscribe shared cores)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace results in an existing --out folder")
    parser.add_argument("--quiet", action="store_true", help="no per-run lines on stderr")
    parser.set_defaults(func=run)


def _run_line(run: dict, tasks: list[str]) -> str:
    version = run["probabilities"]
    parts = [
        f"{task} AUROC {run['metrics'][task][version]['auroc']:.3f}"
        for task in tasks
        if run["metrics"][task][version]["auroc"] is not None
    ]
    seconds = run["info"].get("seconds")
    shared = f" (network of {run['same_run_as']})" if run.get("same_run_as") else f" ({seconds:.1f} s)"
    return f"{run['model']} seed {run['seed']}: " + ", ".join(parts) + shared


def run(args) -> int:
    import numpy as np
    import torch

    from mmnar_core.baselines.benchmark import markdown_table, run_benchmark
    from mmnar_core.baselines.gbt import GBTConfig
    from mmnar_core.baselines.models import check_model_names
    from mmnar_core.dataset import load_dataset
    from mmnar_core.encoders.cache import load_embeddings
    from mmnar_core.encoders.runtime import pick_device
    from mmnar_core.model import MMNARConfig
    from mmnar_core.schema import ModalityKind
    from mmnar_core.training.data import build_model_data
    from mmnar_core.training.pipeline import load_config_file

    # validate everything before any work or any file is written
    if args.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.threads}")
    if args.resamples < 1:
        raise ValueError(f"--resamples must be at least 1, got {args.resamples}")
    if not 0.0 < args.modality_dropout < 1.0:
        raise ValueError(f"--modality-dropout must be in (0, 1), got {args.modality_dropout}")
    models = check_model_names(args.models)
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds must be distinct, got {args.seeds}")
    base = load_config_file(args.config) or MMNARConfig()
    device = pick_device(args.device)
    torch.set_num_threads(args.threads)

    dataset = load_dataset(args.dataset)
    out = Path(args.out) if args.out else Path.cwd() / f"benchmark-models-{dataset.manifest.name}"
    existing = [p for p in (out / "results.json", out / "results.md") if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(f"{existing[0]} exists; choose another --out or pass --overwrite")
    embeddings = load_embeddings(dataset, args.cache)
    data = build_model_data(dataset, embeddings.vectors)
    values = base.to_dict()
    values.update(data.config_fields())
    config = MMNARConfig.from_dict(values)
    tabular = {m.name for m in dataset.manifest.modalities_of_kind(ModalityKind.TABULAR)}
    structured = [i for i, name in enumerate(data.modalities) if name in tabular]
    if "structured_only" in models and not structured:
        raise ValueError(
            "model 'structured_only' needs a tabular modality; this dataset has none (drop it from --models)"
        )

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    title = f"Baselines and ablations on {dataset.manifest.name}"

    def save(run: dict, results: dict) -> None:
        results["dataset"] = {
            "name": dataset.manifest.name,
            "path": str(Path(args.dataset).resolve()),
            "content_hash": dataset.manifest.content_hash,
            "split_counts": dataset.manifest.split_counts,
            "encoders": embeddings.encoders,
        }
        results["device"] = str(device)
        results["threads"] = args.threads
        results["seconds"] = round(time.perf_counter() - started, 1)
        write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
        write_text_atomic(out / "results.md", markdown_table(results, title))
        if not args.quiet:
            print(_run_line(run, data.tasks), file=sys.stderr, flush=True)

    results = run_benchmark(
        data,
        models,
        args.seeds,
        config,
        device,
        structured,
        args.modality_dropout,
        GBTConfig(threads=args.threads),
        args.resamples,
        on_run=save,
    )
    probabilities = results.pop("test_probabilities")
    np.savez_compressed(
        out / "test_probabilities.npz",
        patient_id=data.patient_ids[data.rows("test")],
        **{f"{name}__seed{seed}": p for name, runs in probabilities.items() for seed, p in zip(args.seeds, runs)},
    )
    results["seconds"] = round(time.perf_counter() - started, 1)
    write_text_atomic(out / "results.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(out / "results.md", markdown_table(results, title))
    print(markdown_table(results, title))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}", file=sys.stderr)
    return 0
