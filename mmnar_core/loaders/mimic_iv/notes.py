"""Discharge summaries and radiology reports from MIMIC-IV-Note (note/discharge.csv[.gz],
note/radiology.csv[.gz]: note_id, subject_id, hadm_id, note_type, note_seq, charttime, storetime, text).

Windows (per the cohort definition, so nothing written after them can enter the input):
- discharge summary of the index admission (same hadm_id) charted in [admittime, dischtime + 24 h];
  the last one when there are several (an addendum replaces the summary);
- radiology reports of the subject charted in [admittime - 6 h, dischtime] (hadm_id is often empty
  for radiology, so they are matched by subject and time), most recent first, at most `max_reports`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmnar_core.loaders.duck import Engine

DISCHARGE_AFTER = pd.Timedelta(hours=24)
RADIOLOGY_BEFORE = pd.Timedelta(hours=6)
REPORT_SEPARATOR = "\n\n-----\n\n"


def note_windows(cohort: pd.DataFrame) -> pd.DataFrame:
    """Per subject: the discharge-note window and the radiology/CXR window (inclusive both ends)."""
    return pd.DataFrame(
        {
            "subject_id": cohort["subject_id"].to_numpy(),
            "hadm_id": cohort["hadm_id"].to_numpy(),
            "ds_start": cohort["admittime"].to_numpy(),
            "ds_end": (cohort["dischtime"] + DISCHARGE_AFTER).to_numpy(),
            "rr_start": (cohort["admittime"] - RADIOLOGY_BEFORE).to_numpy(),
            "rr_end": cohort["dischtime"].to_numpy(),
        }
    )


def discharge_notes(engine: Engine, path: Path, cohort: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(text per cohort row or None, charttime of the note used)."""
    engine.register("note_windows", note_windows(cohort))
    source = engine.scan(
        path, {"hadm_id": "BIGINT", "charttime": "TIMESTAMP", "text": "VARCHAR"}, {"note_seq": "BIGINT"}
    )
    notes = engine.query(
        f"""SELECT n.hadm_id, arg_max(n.text, (n.charttime, coalesce(n.note_seq, 0))) AS text, max(n.charttime) AS latest
            FROM {source} n JOIN note_windows w ON n.hadm_id = w.hadm_id
            WHERE n.charttime BETWEEN w.ds_start AND w.ds_end AND n.text IS NOT NULL AND trim(n.text) <> ''
            GROUP BY n.hadm_id""",
        path,
    ).set_index("hadm_id")
    return _aligned(cohort, "hadm_id", notes)


def radiology_reports(
    engine: Engine, path: Path, cohort: pd.DataFrame, max_reports: int = 3
) -> tuple[pd.Series, pd.Series]:
    """(concatenated reports per cohort row or None, charttime of the latest report used)."""
    engine.register("note_windows", note_windows(cohort))
    source = engine.scan(
        path, {"subject_id": "BIGINT", "charttime": "TIMESTAMP", "text": "VARCHAR"}, {"note_seq": "BIGINT"}
    )
    reports = engine.query(
        f"""WITH r AS (
                SELECT n.subject_id, n.charttime, n.text,
                       row_number() OVER (PARTITION BY n.subject_id ORDER BY n.charttime DESC, n.note_seq DESC) AS k
                FROM {source} n JOIN note_windows w ON n.subject_id = w.subject_id
                WHERE n.charttime BETWEEN w.rr_start AND w.rr_end AND n.text IS NOT NULL AND trim(n.text) <> ''
            )
            SELECT subject_id, list(text ORDER BY k) AS texts, max(charttime) AS latest
            FROM r WHERE k <= {int(max_reports)} GROUP BY subject_id""",
        path,
    ).set_index("subject_id")
    reports["text"] = [REPORT_SEPARATOR.join(texts) for texts in reports["texts"]]
    return _aligned(cohort, "subject_id", reports)


def _aligned(cohort: pd.DataFrame, key: str, found: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    text = cohort[key].map(found["text"]).astype(object)
    text = text.where(text.notna(), None)
    return text.reset_index(drop=True), cohort[key].map(found["latest"]).reset_index(drop=True)
