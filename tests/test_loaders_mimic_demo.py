"""MIMIC-IV loader on the real MIMIC-IV demo (../shared/data/mimic-iv-demo), read in place."""

import warnings

import pandas as pd
import pytest

from mmnar_core.dataset import load_dataset
from mmnar_core.loaders.mimic_iv.build import build


@pytest.fixture(scope="module")
def demo(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mimic_demo") / "ds"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build(shared_data / "mimic-iv-demo", out, progress=False)
    return load_dataset(out), shared_data / "mimic-iv-demo"


def test_default_cohort_counts_on_the_demo(demo):
    dataset, _ = demo
    assert len(dataset) == 95
    assert int(dataset.labels("readmission_30d").sum()) == 15
    assert int(dataset.labels("icu_90d").sum()) == 14
    assert int(dataset.labels("death_180d").sum()) == 9


def test_counts_agree_with_an_independent_pandas_computation(demo):
    dataset, root = demo
    adm = pd.read_csv(root / "hosp/admissions.csv.gz", parse_dates=["admittime", "dischtime"])
    pat = pd.read_csv(root / "hosp/patients.csv.gz", parse_dates=["dod"])
    icu = pd.read_csv(root / "icu/icustays.csv.gz", parse_dates=["intime"])
    first = adm.loc[adm.groupby("subject_id")["admittime"].idxmin()].merge(pat, on="subject_id")
    first = first[
        (first["hospital_expire_flag"] == 0)
        & (first["anchor_age"] + first["admittime"].dt.year - first["anchor_year"] >= 18)
    ]
    ours = dataset.patients.set_index("subject_id")
    assert sorted(ours.index) == sorted(first["subject_id"])
    d0 = first.set_index("subject_id")["dischtime"]
    gap = (adm["admittime"] - adm["subject_id"].map(d0)).dt.total_seconds() / 86400
    readmitted = set(adm.loc[(gap > 0) & (gap <= 30), "subject_id"])
    gap = (icu["intime"] - icu["subject_id"].map(d0)).dt.total_seconds() / 86400
    to_icu = set(icu.loc[(gap > 0) & (gap <= 90), "subject_id"])
    days = (first["dod"] - first["dischtime"].dt.normalize()).dt.days
    died = set(first.loc[(days > 0) & (days <= 180), "subject_id"])
    assert set(ours.index[ours["label_readmission_30d"] == 1]) == readmitted
    assert set(ours.index[ours["label_icu_90d"] == 1]) == to_icu
    assert set(ours.index[ours["label_death_180d"] == 1]) == died


def test_lab_features_match_pandas_within_the_window(demo):
    dataset, root = demo
    labs = pd.read_csv(
        root / "hosp/labevents.csv.gz",
        usecols=["hadm_id", "itemid", "charttime", "valuenum", "valueuom"],
        parse_dates=["charttime"],
    )
    p = dataset.patients
    creat = labs[(labs["itemid"] == 50912) & labs["valuenum"].notna() & (labs["valueuom"] == "mg/dL")]
    creat = creat.merge(p[["hadm_id", "prediction_time"]], on="hadm_id")
    creat = creat[creat["charttime"] <= creat["prediction_time"]]
    expected = p["hadm_id"].map(creat.groupby("hadm_id").size()).fillna(0)
    assert dataset.structured["lab_creatinine_count"].tolist() == expected.tolist()
    expected_max = p["hadm_id"].map(creat.groupby("hadm_id")["valuenum"].max())
    pd.testing.assert_series_equal(
        dataset.structured["lab_creatinine_max"], expected_max.astype(float), check_names=False
    )
    # the demo has creatinine charted after discharge under index hadm_ids: the check above is not vacuous
    all_creat = labs[labs["itemid"] == 50912].merge(p[["hadm_id", "prediction_time"]], on="hadm_id")
    assert (all_creat["charttime"] > all_creat["prediction_time"]).any()


def test_splits_are_disjoint_by_patient_and_structured_always_present(demo):
    dataset, _ = demo
    assert set(dataset.patients["split"]) == {"train", "val", "test"}
    assert dataset.patients["avail_structured"].all()
    assert not dataset.patients[["avail_cxr", "avail_discharge_note", "avail_radiology_report"]].any().any()
