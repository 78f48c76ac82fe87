"""MIMIC-IV cohort and label windows on hand-made timelines (pure functions, no files)."""

import pandas as pd
import pytest

from mmnar_core.loaders.mimic_iv import cohort as c

T, D = pd.Timestamp, pd.Timedelta
DISCH = T("2150-01-10 12:00:00")


def _cohort(*subjects):
    return pd.DataFrame(
        {"subject_id": list(subjects), "dischtime": [DISCH] * len(subjects), "dod": [pd.NaT] * len(subjects)}
    )


def _admissions(offsets_days):
    """Subject i has one later admission at DISCH + offsets_days[i]."""
    return pd.DataFrame(
        {"subject_id": list(range(len(offsets_days))), "admittime": [DISCH + D(days=d) for d in offsets_days]}
    )


@pytest.mark.parametrize("days, expected", [(0, 0), (1e-6, 1), (30, 1), (30.0001, 0), (-1, 0), (29.9999, 1)])
def test_readmission_window_is_open_at_0_closed_at_30(days, expected):
    cohort = _cohort(0)
    assert c.readmission_30d(cohort, _admissions([days])).tolist() == [expected]


@pytest.mark.parametrize("days, expected", [(0, 0), (90, 1), (90.0001, 0), (45, 1)])
def test_icu_window_is_open_at_0_closed_at_90(days, expected):
    icu = pd.DataFrame({"subject_id": [0], "intime": [DISCH + D(days=days)]})
    assert c.icu_90d(_cohort(0), icu).tolist() == [expected]


@pytest.mark.parametrize("days, expected", [(0, 0), (1, 1), (180, 1), (181, 0), (None, 0)])
def test_death_window_counts_days_from_the_discharge_date(days, expected):
    cohort = _cohort(0)
    cohort["dod"] = [DISCH.normalize() + D(days=days)] if days is not None else [pd.NaT]
    assert c.death_180d(cohort).tolist() == [expected]


def test_labels_only_count_the_subjects_own_events():
    cohort = _cohort(0, 1)
    admissions = pd.DataFrame({"subject_id": [1], "admittime": [DISCH + D(days=3)]})
    assert c.readmission_30d(cohort, admissions).tolist() == [0, 1]


def test_index_admission_is_first_by_admittime_and_excludes_deaths_and_minors():
    admissions = pd.DataFrame(
        {
            "subject_id": [1, 1, 2, 3, 4, 4],
            "hadm_id": [11, 10, 20, 30, 41, 40],
            "admittime": [
                T("2150-01-05"),
                T("2150-01-01"),
                T("2150-01-01"),
                T("2152-01-01"),
                T("2150-01-01"),
                T("2150-01-01"),
            ],
            "dischtime": [
                T("2150-01-06"),
                T("2150-01-02"),
                T("2150-01-02"),
                T("2152-01-02"),
                T("2150-01-03"),
                T("2150-01-02"),
            ],
            "hospital_expire_flag": [0, 0, 1, 0, 0, 0],
        }
    )
    patients = pd.DataFrame(
        {
            "subject_id": [1, 2, 3, 4],
            "gender": ["F", "M", "M", "F"],
            "anchor_age": [40, 50, 16, 18],
            "anchor_year": [2150, 2150, 2150, 2150],
            "dod": [pd.NaT] * 4,
        }
    )
    cohort = c.index_admissions(admissions, patients)
    # 1: first admission is hadm 10 (earlier admittime, not the lower row); 2: died; 3: 16 + 2 = 18 (kept);
    # 4: tie on admittime -> lower hadm_id 40
    assert cohort["hadm_id"].tolist() == [10, 30, 40]
    assert cohort["age"].tolist() == [40, 18, 18]
    assert (cohort["prediction_time"] == cohort["dischtime"]).all()


def test_age_uses_anchor_year_shift():
    admissions = pd.DataFrame(
        {
            "subject_id": [1],
            "hadm_id": [1],
            "admittime": [T("2153-06-01")],
            "dischtime": [T("2153-06-02")],
            "hospital_expire_flag": [0],
        }
    )
    patients = pd.DataFrame(
        {"subject_id": [1], "gender": ["F"], "anchor_age": [15], "anchor_year": [2150], "dod": [pd.NaT]}
    )
    assert c.index_admissions(admissions, patients)["age"].tolist() == [18]
    patients["anchor_age"] = 14
    assert len(c.index_admissions(admissions, patients)) == 0


@pytest.mark.parametrize(
    "code, version, group",
    [
        ("I509", 10, "circulatory"),
        ("4280", 9, "circulatory"),
        ("V5861", 9, "factors"),
        ("E8497", 9, "external"),
        ("D649", 10, "blood"),
        ("D0511", 10, "neoplasm"),
        ("25000", 9, "endocrine"),
        ("Z87891", 10, "factors"),
    ],
)
def test_diagnosis_groups_across_icd_versions(code, version, group):
    from mmnar_core.loaders.codes import diagnosis_group

    assert diagnosis_group(code, version) == group


@pytest.mark.parametrize(
    "code, version, group",
    [
        ("0BH17EZ", 10, "surgery"),
        ("5A1955Z", 10, "extracorporeal"),
        ("BW28ZZZ", 10, "imaging"),
        ("3E0G76Z", 10, "administration"),
        ("3995", 9, "extracorporeal"),
        ("8856", 9, "imaging"),
        ("9904", 9, "administration"),
        ("3961", 9, "surgery"),
        ("9671", 9, "other"),
    ],
)
def test_procedure_groups_across_icd_versions(code, version, group):
    from mmnar_core.loaders.codes import procedure_group

    assert procedure_group(code, version) == group
