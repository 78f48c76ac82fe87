"""Ordering-policy drift in the app: the Model card's section, and a shell command over the app's database
(the same one the app uses: `MMNAR_DATABASE_URL` / `MMNAR_DATA_DIR`):

    python -m mmnar_app.drift report [--bundle DIR] [--json]     the drift report of the patients analysed here
    python -m mmnar_app.drift export --out FILE.json [--bundle DIR]   their pattern counts, for
                                                     `python -m mmnar_core drift BUNDLE --counts FILE.json`

Why here and not in the library: the counts live in the app's store, and the library never imports the
app. The statistics are mmnar_core.drift's; the counts are mmnar_app.store.pattern_counts' (no patient
data). See docs/app.md, "Ordering-policy drift".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def section(info, store, bundle_dir: str | Path) -> None:
    """The Model card's "Ordering-policy drift" section: patients analysed here, the distance from the
    training mix with its interval, the verdict in plain words, the table, and the rectify command when
    advised. A problem with the counts is shown as a notice: the rest of the card stays."""
    import streamlit as st

    from mmnar_app import model_card
    from mmnar_app.logging_setup import safe_error
    from mmnar_app.store import pattern_counts
    from mmnar_core.drift import ADVISED, MILD, NO_DRIFT, DriftError, rectify_command

    st.subheader("Ordering-policy drift")
    st.markdown(model_card.DRIFT_INTRO)
    try:
        counts = pattern_counts(store, info.model_id)
        report = model_card.drift_report(info, counts.counts)
    except DriftError as error:
        st.info(f"The drift check is not available for this model: {error}")
        return
    except Exception as error:  # the database: the rest of the card is still worth reading
        st.warning(f"The drift check could not read the counts ({safe_error(error)}).")
        return
    left, right = st.columns(2)
    left.metric(
        "Patients analysed here",
        f"{report.n_local:,}",
        help="Each distinct set of inputs analysed on the Patient page counts once per browser session.",
    )
    right.metric(
        "Difference from the training mix",
        "-" if report.tv is None else f"{report.tv:.0%}",
        help="Total variation distance: the share of patients here who would need a different set of "
        "tests for the two mixes to match.",
    )
    box = {NO_DRIFT: st.success, MILD: st.info, ADVISED: st.warning}.get(report.verdict, st.info)
    box(report.message)  # the verdict first, then the distance with its interval, in plain words
    if report.verdict == ADVISED:
        st.markdown(
            "Refit the pattern correction on local patients whose outcomes are known (a dataset folder of "
            "them, prepared as in docs/new_site.md), then evaluate the new bundle on their test split:"
        )
        st.code(rectify_command(str(bundle_dir)), language="bash")
    st.dataframe(model_card.drift_table(report), hide_index=True)
    since = (
        f"Counted here from {counts.first_seen:%Y-%m-%d} to {counts.last_seen:%Y-%m-%d} (UTC). "
        if counts.first_seen
        else ""
    )
    st.caption(since + model_card.drift_rule_text(report))


# ------------------------------------------------------------------------------------------------ command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmnar_app.drift",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--database-url", help="SQLAlchemy URL (default: MMNAR_DATABASE_URL, else SQLite in MMNAR_DATA_DIR)"
    )
    parser.add_argument("--data-dir", help="folder of the default SQLite database (default: MMNAR_DATA_DIR)")
    parser.add_argument("--bundle", help="the model bundle (default: MMNAR_BUNDLE, else the demo bundle)")
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report", help="compare the patterns analysed here with the bundle's training mix")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    export = sub.add_parser("export", help="write the pattern counts of this model (no patient data) as JSON")
    export.add_argument("--out", required=True, metavar="FILE.json")
    export.add_argument("--overwrite", action="store_true", help="replace an existing file")
    args = parser.parse_args(argv)

    from mmnar_app.settings import AppSettings
    from mmnar_app.store import StoreError, open_store, pattern_counts
    from mmnar_core.bundle import BundleError
    from mmnar_core.drift import DriftError, compare_patterns, counts_document
    from mmnar_core.drift_command import format_report, training_distribution

    settings = AppSettings.from_env()
    bundle = Path(args.bundle) if args.bundle else settings.bundle_dir
    try:
        model_id, modalities, train = training_distribution(bundle)
        with open_store(
            args.database_url or settings.database_url, data_dir=args.data_dir or settings.data_dir
        ) as store:
            counts = pattern_counts(store, model_id)
        if args.command == "export":
            out = Path(args.out)
            if out.exists() and not args.overwrite:
                raise FileExistsError(f"{out} already exists: choose another --out (or pass --overwrite)")
            from mmnar_core.atomic_write import write_text_atomic

            seen = [None if t is None else t.isoformat() for t in (counts.first_seen, counts.last_seen)]
            document = counts_document(model_id, modalities, counts.counts, *seen, source="mmnar_app")
            write_text_atomic(out, json.dumps(document, indent=2) + "\n")
            print(f"wrote the counts of {counts.n} patients ({len(counts.counts)} patterns) of {model_id} to {out}")
            return 0
        result = compare_patterns(train, counts.counts, modalities)
        print(
            json.dumps({"bundle": str(bundle), "model_id": model_id, **result.to_dict()}, indent=2)
            if args.json
            else format_report(result, str(bundle))
        )
        return 0
    except (StoreError, DriftError, BundleError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
