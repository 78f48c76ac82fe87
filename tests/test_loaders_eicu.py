"""eICU loader on the real eICU demo part in ../shared/data/eicu-demo, checked against pandas."""

import warnings

import numpy as np
import pandas as pd
import pytest

from mmnar_core.dataset import load_dataset
from mmnar_core.loaders.eicu import build


@pytest.fixture(scope="module")
def eicu(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("eicu") / "ds"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build(shared_data / "eicu-demo", out, progress=False)
    return load_dataset(out), shared_data / "eicu-demo", [str(w.message) for w in caught]


def test_one_row_per_unit_stay_and_labels_match_pandas(eicu):
    dataset, root, _ = eicu
    patient = pd.read_csv(root / "patient.csv.gz")
    assert len(dataset) == len(patient) == 1700
    ours = dataset.patients.set_index("patient_id")
    status = patient.set_index(patient["patientunitstayid"].astype(str))["hospitaldischargestatus"]
    assert int((status == "Expired").sum()) == int(ours["label_hospital_mortality"].sum()) == 160
    assert int(status.isin(["Expired", "Alive"]).sum()) == int(ours["label_hospital_mortality"].notna().sum())
    assert (ours.loc[status.index[status == "Expired"], "label_hospital_mortality"] == 1).all()


def test_icu_readmission_matches_an_independent_self_join(eicu):
    dataset, root, _ = eicu
    p = pd.read_csv(root / "patient.csv.gz")
    later = p.merge(p, on="patienthealthsystemstayid", suffixes=("", "_next"))
    later = later[
        (later["unitvisitnumber_next"] > later["unitvisitnumber"]) & (later["unitstaytype_next"] == "readmit")
    ]
    positive = set(later["patientunitstayid"].astype(str))
    alive = set(p.loc[p["unitdischargestatus"] == "Alive", "patientunitstayid"].astype(str))
    ours = dataset.patients.set_index("patient_id")["label_icu_readmission"]
    assert set(ours.index[ours == 1]) == positive & alive
    assert set(ours.index[ours.notna()]) == alive


def test_features_come_from_the_first_24_hours(eicu):
    dataset, root, _ = eicu
    vitals = pd.read_csv(
        root / "vitalaperiodic.csv.gz", usecols=["patientunitstayid", "observationoffset", "noninvasivesystolic"]
    )
    window = vitals[
        (vitals["observationoffset"] >= 0)
        & (vitals["observationoffset"] <= 1440)
        & vitals["noninvasivesystolic"].notna()
    ]
    stays = dataset.patients["patient_id"].astype(int)
    expected = stays.map(window.groupby("patientunitstayid")["noninvasivesystolic"].max())
    np.testing.assert_array_equal(dataset.structured["nibp_sys_max"].to_numpy(), expected.to_numpy(dtype=float))
    # a stay whose only NIBP rows are after 24 h has no nibp features at all
    any_rows = stays.isin(
        vitals.loc[(vitals["observationoffset"] >= 0) & (vitals["observationoffset"] <= 1440), "patientunitstayid"]
    )
    np.testing.assert_array_equal(dataset.structured["nibp_count"].notna().to_numpy(), any_rows.to_numpy())


def test_modalities_are_what_was_charted_and_absent_tables_warn(eicu):
    dataset, root, messages = eicu
    for table in ("lab", "vitalperiodic", "nursecharting"):
        assert any(f"{table}.csv.gz is absent" in m for m in messages)
    names = dataset.manifest.modality_names
    assert "labs" not in names and "respiratory" in names
    resp = pd.read_csv(root / "respiratorycharting.csv.gz", usecols=["patientunitstayid", "respchartoffset"])
    charted = set(resp.loc[resp["respchartoffset"].between(0, 1440), "patientunitstayid"].astype(str))
    ours = dataset.patients.set_index("patient_id")["avail_respiratory"]
    assert set(ours.index[ours]) == charted


def test_apache_prediction_is_a_reference_score_never_a_feature(eicu):
    dataset, root, _ = eicu
    feature_names = {f.name for f in dataset.manifest.features}
    assert not any("predicted" in name or "apache_iva" in name for name in feature_names)
    ref = dataset.patients.set_index("patient_id")["ref_apache_iva_hospital_mortality"]
    apache = pd.read_csv(root / "apachepatientresult.csv.gz")
    iva = apache[(apache["apacheversion"] == "IVa") & (apache["predictedhospitalmortality"] >= 0)]
    expected = iva.set_index(iva["patientunitstayid"].astype(str))["predictedhospitalmortality"]
    np.testing.assert_allclose(ref.loc[expected.index].to_numpy(), expected.to_numpy())
    assert [s.name for s in dataset.manifest.reference_scores] == ["apache_iva_hospital_mortality"]


def test_splits_disjoint_by_person(eicu):
    dataset, root, _ = eicu
    p = pd.read_csv(root / "patient.csv.gz")
    person = dataset.patients["patient_id"].map(p.set_index(p["patientunitstayid"].astype(str))["uniquepid"])
    assert (person == dataset.patients["group_id"]).all()
    assert dataset.patients.groupby(person)["split"].nunique().max() == 1


def test_table_names_in_any_case(shared_data, tmp_path):
    root = tmp_path / "eicu"
    root.mkdir()
    for name in ("patient", "apachePatientResult", "vitalAperiodic"):
        source = shared_data / "eicu-demo" / f"{name.lower()}.csv.gz"
        (root / f"{name}.csv.gz").symlink_to(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build(root, tmp_path / "ds", progress=False)
    dataset = load_dataset(tmp_path / "ds")
    assert (
        "vitals_aperiodic" in dataset.manifest.modality_names
        and dataset.patients["ref_apache_iva_hospital_mortality"].notna().any()
    )
