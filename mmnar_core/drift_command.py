"""`python -m mmnar_core drift BUNDLE --counts FILE.json`: has the local ordering policy drifted from the
training site's? Compares the availability-pattern counts of patients analysed here (the file the model
server writes with `serve --pattern-counts-file`, or `python -m mmnar_app.drift export` from the app's
database) with the bundle's training counts (mmnar_core.drift; docs/serving.md, "Ordering-policy drift").

Why a command: the counts live where the model is used (a server, an app database), the training mix in
the bundle; an operator checks one against the other without either importing the other."""

from __future__ import annotations

import json
from pathlib import Path

from mmnar_core.arg_types import non_negative_int, positive


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "drift",
        help="compare the availability patterns seen here with the training mix (ordering-policy drift)",
        description="Total variation distance between the mix of availability patterns among patients analysed "
        "here and the bundle's training mix, with a 95 % bootstrap interval, the distance expected with no "
        "drift, a chi-square test, the per-pattern table and a verdict (too few patients / no drift / mild "
        "drift / drift: rectify advised). Counts only: no patient data. See docs/serving.md.",
    )
    parser.add_argument("bundle", metavar="BUNDLE_DIR", help="the model bundle the counts were made with")
    parser.add_argument(
        "--counts",
        required=True,
        metavar="FILE.json",
        help="pattern counts: the JSON of `serve --pattern-counts-file`, of GET /pattern-counts, or "
        'of `python -m mmnar_app.drift export`; or a plain {"pattern": count} object (pattern ids or '
        "modality names joined by '+')",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of the table")
    parser.add_argument("--out", default=None, metavar="FILE.json", help="also write the report as JSON to FILE")
    parser.add_argument(
        "--any-model",
        action="store_true",
        help="accept counts recorded under another model id (e.g. before a rectify that kept the same training data)",
    )
    parser.add_argument(
        "--resamples", type=positive(int), default=None, metavar="N", help="bootstrap and null resamples (default 2000)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=None, help="resampling seed (default 0)")
    parser.set_defaults(func=run_drift)


def training_distribution(bundle_dir: str | Path) -> tuple[str, list[str], dict]:
    """(model id, modality names, training pattern counts) of a verified bundle."""
    from mmnar_core.bundle import verify_bundle

    root = Path(bundle_dir)
    if not (root / "bundle.json").is_file():
        from mmnar_core.resources import DEMO_BUNDLE

        raise FileNotFoundError(
            f"{root} is not a model bundle (no bundle.json); accepted: a directory written by "
            f"`python -m mmnar_core train`, e.g. the demo bundle {DEMO_BUNDLE}"
        )
    index = verify_bundle(root)  # the training mix compared with is the one the bundle was signed / hashed with
    dataset = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    return index["model_id"], [m["name"] for m in dataset["modalities"]], dataset.get("pattern_counts_train") or {}


def read_counts_file(path: str | Path, modalities: list[str], model_id: str | None) -> dict[int, int]:
    from mmnar_core.drift import DriftError, read_counts_document

    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such counts file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DriftError(f"{path} is not a JSON file of pattern counts ({error})") from None
    return read_counts_document(document, modalities, model_id, where=str(path))


def format_report(report, bundle: str) -> str:
    """The report as text: the figures, the verdict and the per-pattern table (shares in %)."""
    from mmnar_core.drift import rectify_command

    lines = [
        f"Ordering-policy drift: {report.n_local} patients analysed here vs {report.n_train} training patients",
        f"verdict: {report.title}",
        report.message,
    ]
    if report.tv is not None:
        lines.append(
            f"total variation distance {report.tv:.3f} [95 % interval {report.tv_low:.3f}, {report.tv_high:.3f}]; "
            f"expected with no drift {report.null_tv_mean:.3f} (95th percentile {report.null_tv_high:.3f}); "
            f"p = {report.p_value:.4f}"
        )
        if report.chi2 is not None:
            pooled = f"; pooled (expected < 5): {', '.join(report.chi2_pooled)}" if report.chi2_pooled else ""
            lines.append(f"chi-square {report.chi2:.1f} on {report.chi2_df} df, p = {report.chi2_p_value:.2g}{pooled}")
    if report.rectify_advised:
        lines += [
            "",
            "advised: refit the pattern correction on local patients with known outcomes:",
            "  " + rectify_command(bundle),
        ]
    width = max([len(r.words) for r in report.patterns] + [7])
    lines += ["", f"{'pattern':<{width}}  {'training':>9}  {'here':>9}  {'difference':>10}  n here"]
    for row in report.patterns:
        here = "-" if row.local_share is None else f"{row.local_share:.1%}"
        diff = "-" if row.difference is None else f"{row.difference * 100:+.1f} pts"
        flag = "  (never seen in training)" if row.unseen_in_training else ""
        lines.append(f"{row.words:<{width}}  {row.train_share:>9.1%}  {here:>9}  {diff:>10}  {row.local_count}{flag}")
    return "\n".join(lines)


def run_drift(args) -> int:
    from dataclasses import replace

    from mmnar_core.drift import DriftThresholds, compare_patterns

    model_id, modalities, train = training_distribution(args.bundle)
    local = read_counts_file(args.counts, modalities, None if args.any_model else model_id)
    thresholds = DriftThresholds()
    if args.resamples is not None:
        thresholds = replace(thresholds, resamples=args.resamples)
    if args.seed is not None:
        thresholds = replace(thresholds, seed=args.seed)
    report = compare_patterns(train, local, modalities, thresholds)
    document = {"bundle": str(args.bundle), "model_id": model_id, **report.to_dict()}
    if args.out:
        from mmnar_core.atomic_write import write_text_atomic

        write_text_atomic(args.out, json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2) if args.json else format_report(report, str(args.bundle)))
    return 0
