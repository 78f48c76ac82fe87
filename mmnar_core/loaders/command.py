"""`python -m mmnar_core build SOURCE --root PATH --out DIR`: build a canonical dataset from a source in
its published format, then print a summary (rows, label prevalence, availability, time, peak memory)."""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings

from mmnar_core.loaders import SOURCES, build_source


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "build", help="build a dataset from MIMIC-IV, eICU, UCI diabetes-130 or COVID-CXR files"
    )
    parser.add_argument("source", choices=list(SOURCES), help="source layout")
    parser.add_argument(
        "--root",
        required=True,
        help="folder of the source as published (e.g. the MIMIC-IV folder holding hosp/ and icu/)",
    )
    parser.add_argument("--out", required=True, help="dataset directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset directory")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient-level split hash")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    group = parser.add_argument_group("streaming (mimic-iv, eicu)")
    group.add_argument(
        "--memory-limit", default="4GB", help="DuckDB memory limit; it spills to a temporary folder beyond it"
    )
    group.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    group = parser.add_argument_group("eicu")
    group.add_argument(
        "--split-by",
        choices=["patient", "hospital"],
        default="patient",
        help="patient: train/val/test by person (hash of uniquepid); hospital: by hospitalid, test and val "
        "on hospitals absent from train (an external-site evaluation; docs/new_site.md)",
    )
    group = parser.add_argument_group("mimic-iv")
    group.add_argument(
        "--note-root", help="MIMIC-IV-Note folder with discharge.csv[.gz] / radiology.csv[.gz] (default ROOT/note)"
    )
    group.add_argument(
        "--cxr-root", help="MIMIC-CXR-JPG folder with mimic-cxr-2.0.0-metadata.csv[.gz] and files/ (default ROOT/cxr)"
    )
    group.add_argument(
        "--cxr-embeddings",
        help="table (Parquet or csv) of precomputed image embeddings keyed by dicom_id, used instead of the JPEGs",
    )
    group.add_argument(
        "--cxr-max-side",
        type=int,
        default=512,
        help="store CXR JPEGs downsized to this longest side (0: copy unchanged)",
    )
    group.add_argument(
        "--max-reports", type=int, default=3, help="radiology reports kept per patient, most recent first"
    )
    parser.set_defaults(func=run)


def options_for(args) -> dict:
    if args.split_by != "patient" and args.source != "eicu":
        raise ValueError(f"--split-by {args.split_by} is only available for eicu (its stays carry a hospitalid)")
    options = {"seed": args.seed, "overwrite": args.overwrite, "progress": not args.no_progress}
    if args.source == "eicu":
        options["split_by"] = args.split_by
    if args.source in ("mimic-iv", "eicu"):
        options.update(memory_limit=args.memory_limit, threads=args.threads)
    if args.source == "mimic-iv":
        options.update(
            note_root=args.note_root,
            cxr_root=args.cxr_root,
            cxr_embeddings=args.cxr_embeddings,
            cxr_max_side=args.cxr_max_side,
            max_reports=args.max_reports,
        )
    return options


def _one_line_warnings(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def summarize(out, seconds: float | None = None) -> dict:
    """Rows, label prevalence and availability per modality of a built dataset (what the issue asks to report)."""
    from mmnar_core.dataset import load_dataset

    dataset = load_dataset(out, verify="none")
    manifest = dataset.manifest
    summary = {
        "dataset": str(out),
        "rows": len(dataset),
        "splits": manifest.split_counts,
        "label_prevalence": {
            o.name: {
                "positive": int(dataset.labels(o.name).sum()),
                "labelled": int(dataset.labels(o.name).notna().sum()),
                "rate": round(float(dataset.labels(o.name).mean()), 4),
            }
            for o in manifest.outcomes
        },
        "availability": dict(
            zip(manifest.modality_names, [round(float(v), 4) for v in dataset.availability().mean(axis=0)])
        ),
    }
    split = manifest.provenance.get("split") or {}
    if split.get("by") == "hospital":
        summary["hospitals"] = {s: len(ids) for s, ids in split["hospitals"].items()}
    if seconds is not None:
        summary["build_seconds"] = round(seconds, 2)
        summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return summary


def run(args) -> int:
    warnings.showwarning = _one_line_warnings
    started = time.perf_counter()
    out = build_source(args.source, args.root, args.out, **options_for(args))
    print(json.dumps(summarize(out, time.perf_counter() - started), indent=2))
    return 0
