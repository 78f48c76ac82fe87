"""MIMIC-IV loader on a tiny hand-written root in the published hosp/icu, MIMIC-IV-Note and MIMIC-CXR-JPG
formats (tests/support/mimic_fixture.py): cohort, labels, features, windows of every modality, CXR choice."""

import warnings

import numpy as np
import pandas as pd
import pytest

from mmnar_core.dataset import load_dataset
from mmnar_core.loaders.mimic_iv import build as mimic_build
from mmnar_core.loaders.mimic_iv.build import LeakageError, build, check_windows

from support.mimic_fixture import DISCH1, write_mimic_root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = write_mimic_root(tmp_path_factory.mktemp("mimic"))
    out = tmp_path_factory.mktemp("out") / "ds"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build(root, out, progress=False)
    return load_dataset(out, verify="all"), root, [str(w.message) for w in caught]


def row(dataset, subject):
    index = dataset.patients.index[dataset.patients["subject_id"] == subject][0]
    return dataset.patients.loc[index], dataset.structured.loc[index], dataset.text.loc[index]


def test_cohort_and_labels_match_the_hand_made_timeline(built):
    dataset, _, _ = built
    patients = dataset.patients.set_index("subject_id")
    assert sorted(patients.index) == [1, 4, 5]  # 2 died in the index stay, 3 was 17
    assert patients.loc[1, "hadm_id"] == 100 and patients.loc[1, "prediction_time"] == DISCH1
    assert patients["label_readmission_30d"].to_dict() == {1: 1, 4: 0, 5: 0}  # +30 d, +0 d, +30.0001 d
    assert patients["label_icu_90d"].to_dict() == {1: 1, 4: 0, 5: 1}  # +31 d, +90.0001 d, +90 d
    assert patients["label_death_180d"].to_dict() == {1: 0, 4: 1, 5: 0}  # none, day 180, day 0


def test_structured_features_use_only_the_index_stay_up_to_discharge(built):
    dataset, _, _ = built
    _, s, _ = row(dataset, 1)
    # creatinine 1.0 and 2.0 in the stay; 9.9 one second after discharge, 7.7 in the readmission and a
    # value in umol/L are left out
    assert (s["lab_creatinine_last"], s["lab_creatinine_min"], s["lab_creatinine_max"], s["lab_creatinine_count"]) == (
        2.0,
        1.0,
        2.0,
        2.0,
    )
    assert s["lab_sodium_last"] == 140.0 and s["lab_sodium_count"] == 1  # charted exactly at discharge: inside
    assert s["lab_albumin_count"] == 0 and np.isnan(s["lab_albumin_last"])  # never measured: count 0, value null
    assert (s["vital_heart_rate_last"], s["vital_heart_rate_max"], s["vital_heart_rate_count"]) == (90.0, 90.0, 2.0)
    assert s["vital_temperature_last"] == pytest.approx(37.0)  # 98.6 F
    assert s["n_prescriptions"] == 1 and s["med_insulin"] == 1 and s["med_anticoagulant"] == 0  # heparin started after
    assert s["n_procedures"] == 1 and s["proc_surgery"] == 1  # the one dated after discharge is left out
    assert s["n_diagnoses"] == 2 and s["dx_circulatory"] == 1 and s["dx_endocrine"] == 1 and s["dx_respiratory"] == 0
    assert s["icu_stay"] == 1 and s["icu_los_days"] == pytest.approx(1.0)
    assert s["age"] == 60 and s["los_days"] == pytest.approx(4 + 4 / 24) and s["ed_hours"] == pytest.approx(3)
    assert s["gender"] == "F" and s["race"] == "white" and s["language"] == "english"


def test_missing_and_unseen_categories(built):
    dataset, _, messages = built
    _, s4, _ = row(dataset, 4)
    assert s4["race"] == "black" and pd.isna(s4["language"])  # '?' is unknown, not a category
    _, s5, _ = row(dataset, 5)
    assert s5["admission_type"] == "OTHER"
    assert any("NEW TYPE" in m for m in messages)


def test_no_input_after_its_window_in_any_modality(built):
    dataset, _, _ = built
    p, s, t = row(dataset, 1)
    # text modalities: the in-window texts only
    assert t["discharge_note"].startswith("Discharge summary IN-WINDOW")
    assert t["radiology_report"].index("RR-IN-2") < t["radiology_report"].index("RR-IN-1")  # most recent first
    for column in ("discharge_note", "radiology_report"):
        assert not dataset.text[column].dropna().str.contains("LEAK|EARLY").any()
    # image modality: the latest frontal image in the window, never the one taken after discharge
    images = dataset.images.set_index("patient_id")
    assert images.loc[p["patient_id"], "image_id"] == "d-in-ap" and images.loc[p["patient_id"], "view"] == "AP"
    assert "d-late" not in set(dataset.images["image_id"])
    # structured: no value that only exists after discharge
    assert not (dataset.structured.select_dtypes("number") == 9.9).any().any()
    assert not (dataset.structured.select_dtypes("number") == 200.0).any().any()


def test_availability_follows_the_windows(built):
    dataset, _, _ = built
    avail = dataset.patients.set_index("subject_id")[
        ["avail_structured", "avail_cxr", "avail_discharge_note", "avail_radiology_report"]
    ]
    assert avail.loc[1].tolist() == [True, True, True, True]
    assert avail.loc[4].tolist() == [True, False, False, False]
    assert dataset.patients.set_index("subject_id").loc[1, "pattern"] == 15


@pytest.mark.parametrize(
    "modality, late",
    [
        ("structured", DISCH1 + pd.Timedelta(seconds=1)),
        ("discharge_note", DISCH1 + pd.Timedelta(hours=24, seconds=1)),
        ("radiology_report", DISCH1 + pd.Timedelta(seconds=1)),
        ("cxr", DISCH1 + pd.Timedelta(seconds=1)),
    ],
)
def test_window_guard_rejects_a_late_input_in_every_modality(modality, late):
    cohort = pd.DataFrame({"subject_id": [1], "dischtime": [DISCH1], "prediction_time": [DISCH1]})
    on_time = {
        "structured": DISCH1,
        "discharge_note": DISCH1 + pd.Timedelta(hours=24),
        "radiology_report": DISCH1,
        "cxr": DISCH1,
    }
    check_windows(cohort, {m: [pd.Series([t])] for m, t in on_time.items()})
    with pytest.raises(LeakageError, match=modality):
        check_windows(cohort, {modality: [pd.Series([late])]})


def test_precomputed_cxr_embeddings_replace_the_jpegs(tmp_path):
    root = write_mimic_root(tmp_path / "mimic", notes=False)
    table = pd.DataFrame({"dicom_id": ["d-in-pa", "d-in-ap"], "e0": [0.5, 1.5], "e1": [-1.0, 2.0]})
    table.to_parquet(tmp_path / "emb.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build(root, tmp_path / "ds", cxr_embeddings=tmp_path / "emb.parquet", progress=False)
    dataset = load_dataset(tmp_path / "ds", verify="all")
    assert dataset.images["format"].tolist() == ["embedding"]
    vector = np.load(tmp_path / "ds" / dataset.images["path"].iloc[0])
    assert vector.tolist() == [1.5, 2.0]  # d-in-ap


def test_absent_optional_sources_are_absent_modalities_not_zeros(tmp_path):
    root = write_mimic_root(tmp_path / "mimic", notes=False, cxr=False, chartevents=False)
    with pytest.warns(UserWarning) as caught:
        build(root, tmp_path / "ds", progress=False)
    text = " ".join(str(w.message) for w in caught)
    assert "chartevents" in text and "MIMIC-IV-Note" in text and "cxr" in text
    dataset = load_dataset(tmp_path / "ds")
    assert dataset.structured["vital_heart_rate_count"].isna().all()  # unknown, not 0
    assert not dataset.availability()[:, 1:].any()


def test_build_does_not_touch_the_destination_on_failure(tmp_path, monkeypatch):
    root = write_mimic_root(tmp_path / "mimic", notes=False, cxr=False)
    out = tmp_path / "ds"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build(root, out, progress=False)
        before = (out / "manifest.json").read_bytes()
        monkeypatch.setattr(mimic_build, "check_windows", lambda *a: (_ for _ in ()).throw(LeakageError("boom")))
        with pytest.raises(LeakageError):
            build(root, out, overwrite=True, progress=False)
    assert (out / "manifest.json").read_bytes() == before
