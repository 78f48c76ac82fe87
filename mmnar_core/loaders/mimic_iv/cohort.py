"""The default post-discharge cohort and its three labels, as pure pandas functions on small tables.

Cohort: each subject's first admission (by admittime) is the index admission; the subject is dropped when
that admission ended in death (hospital_expire_flag = 1) or the age at admission is under 18
(age = anchor_age + year(admittime) - anchor_year). Prediction time = index dischtime.

admissions, patients and icustays are small even in full MIMIC-IV (< 600 k rows), so pandas is fine;
the label rules live here, apart from the I/O, so they are unit-tested on hand-made timelines.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmnar_core.loaders.tables import LoaderError, find_table, read_small
from mmnar_core.schema import OutcomeSpec

DAY = pd.Timedelta(days=1)

OUTCOMES = (
    OutcomeSpec(
        "readmission_30d",
        "Readmission within 30 days of discharge",
        "some later hospital admission with admittime - index dischtime in (0, 30] days",
        anchor="index dischtime",
        window_days=(0, 30),
        defined_for="adults discharged alive from their first admission",
    ),
    OutcomeSpec(
        "icu_90d",
        "ICU admission within 90 days of discharge",
        "some ICU stay (icu/icustays) with intime - index dischtime in (0, 90] days",
        anchor="index dischtime",
        window_days=(0, 90),
        defined_for="adults discharged alive from their first admission",
    ),
    OutcomeSpec(
        "death_180d",
        "Death within 180 days of discharge",
        "patients.dod - date(index dischtime) in (0, 180] days (dod is a date; out-of-hospital deaths are "
        "recorded up to one year after the last discharge)",
        anchor="date of index dischtime",
        window_days=(0, 180),
        defined_for="adults discharged alive from their first admission",
    ),
)
OUTCOME_BY_NAME = {o.name: o for o in OUTCOMES}

ADMISSION_COLUMNS = (
    "subject_id",
    "hadm_id",
    "admittime",
    "dischtime",
    "admission_type",
    "admission_location",
    "discharge_location",
    "insurance",
    "language",
    "marital_status",
    "race",
    "edregtime",
    "edouttime",
    "hospital_expire_flag",
)


def read_admissions(hosp: Path) -> pd.DataFrame:
    path = find_table(hosp, "admissions")
    frame = read_small(
        path,
        required=["subject_id", "hadm_id", "admittime", "dischtime", "hospital_expire_flag"],
        optional=[
            c
            for c in ADMISSION_COLUMNS
            if c not in {"subject_id", "hadm_id", "admittime", "dischtime", "hospital_expire_flag"}
        ],
        numeric=["subject_id", "hadm_id", "hospital_expire_flag"],
        times=["admittime", "dischtime", "edregtime", "edouttime"],
        not_null=["subject_id", "hadm_id", "admittime", "dischtime"],
    )
    frame.attrs["path"] = str(path)
    return frame


def read_patients(hosp: Path) -> pd.DataFrame:
    path = find_table(hosp, "patients")
    frame = read_small(
        path,
        required=["subject_id", "gender", "anchor_age", "anchor_year", "dod"],
        numeric=["subject_id", "anchor_age", "anchor_year"],
        times=["dod"],
        not_null=["subject_id", "anchor_age", "anchor_year"],
    )
    if frame["subject_id"].duplicated().any():
        raise LoaderError(path, "subject_id", "is not unique; patients has one row per subject")
    return frame


def read_icustays(icu: Path | None) -> pd.DataFrame:
    path = find_table(icu, "icustays") if icu is not None else None
    if path is None:
        raise LoaderError(
            Path(icu or "icu") / "icustays.csv.gz", "(file)", "icu/icustays is required for the icu_90d label"
        )
    return read_small(
        path,
        required=["subject_id", "hadm_id", "stay_id", "intime", "outtime"],
        numeric=["subject_id", "hadm_id", "stay_id"],
        times=["intime", "outtime"],
        not_null=["subject_id", "intime"],
    )


def index_admissions(admissions: pd.DataFrame, patients: pd.DataFrame, min_age: int = 18) -> pd.DataFrame:
    """One row per kept subject: the index admission with `age` and the prediction time.

    Ties on admittime are broken by hadm_id so the choice is deterministic.
    """
    first = admissions.sort_values(["subject_id", "admittime", "hadm_id"], kind="mergesort").drop_duplicates(
        "subject_id"
    )
    merged = first.merge(
        patients[["subject_id", "gender", "anchor_age", "anchor_year", "dod"]], on="subject_id", how="inner"
    )
    merged["age"] = merged["anchor_age"] + merged["admittime"].dt.year - merged["anchor_year"]
    died = merged["hospital_expire_flag"].fillna(0).astype(int) == 1
    keep = ~died & (merged["age"] >= min_age)
    cohort = merged[keep].sort_values("subject_id").reset_index(drop=True)
    cohort["prediction_time"] = cohort["dischtime"]
    return cohort


def days_after(times: pd.Series, anchors: pd.Series) -> pd.Series:
    """(times - anchors) in fractional days."""
    return (times - anchors) / DAY


def _any_in_window(cohort: pd.DataFrame, events: pd.DataFrame, time_column: str, outcome: OutcomeSpec) -> np.ndarray:
    assert outcome.window_days is not None, f"outcome {outcome.name!r} has no time window"
    start, end = outcome.window_days
    joined = events[["subject_id", time_column]].merge(cohort[["subject_id", "dischtime"]], on="subject_id")
    delta = days_after(joined[time_column], joined["dischtime"])
    hits = set(joined.loc[(delta > start) & (delta <= end), "subject_id"])
    return cohort["subject_id"].isin(hits).to_numpy().astype(int)


def readmission_30d(cohort: pd.DataFrame, admissions: pd.DataFrame) -> np.ndarray:
    return _any_in_window(cohort, admissions, "admittime", OUTCOME_BY_NAME["readmission_30d"])


def icu_90d(cohort: pd.DataFrame, icustays: pd.DataFrame) -> np.ndarray:
    return _any_in_window(cohort, icustays, "intime", OUTCOME_BY_NAME["icu_90d"])


def death_180d(cohort: pd.DataFrame) -> np.ndarray:
    """dod is a date, so the anchor is the date of discharge (a death on the discharge day is day 0)."""
    window = OUTCOME_BY_NAME["death_180d"].window_days
    assert window is not None, "death_180d has a time window"
    start, end = window
    delta = days_after(cohort["dod"].dt.normalize(), cohort["dischtime"].dt.normalize())
    return ((delta > start) & (delta <= end)).fillna(False).to_numpy().astype(int)


def labels(cohort: pd.DataFrame, admissions: pd.DataFrame, icustays: pd.DataFrame) -> dict[str, np.ndarray]:
    return {
        "readmission_30d": readmission_30d(cohort, admissions),
        "icu_90d": icu_90d(cohort, icustays),
        "death_180d": death_180d(cohort),
    }
