"""UCI diabetes-130 loader on ../shared/data/uci-diabetes-130, checked against pandas."""

import pandas as pd
import pytest

from mmnar_core.dataset import load_dataset
from mmnar_core.loaders.tables import LoaderError
from mmnar_core.loaders.uci_diabetes import build


@pytest.fixture(scope="module")
def uci(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("uci") / "ds"
    build(shared_data / "uci-diabetes-130", out, progress=False)
    raw = pd.read_csv(shared_data / "uci-diabetes-130" / "diabetic_data.csv.gz", dtype=str, keep_default_na=False)
    return load_dataset(out), raw


@pytest.mark.slow
def test_rows_and_label_match_pandas(uci):
    dataset, raw = uci
    kept = raw[~raw["discharge_disposition_id"].astype(int).isin([11, 13, 14, 19, 20, 21])]
    assert len(dataset) == len(kept)
    assert int(dataset.labels("readmission_30d").sum()) == int((kept["readmitted"] == "<30").sum())
    ours = dataset.patients.set_index("patient_id")["label_readmission_30d"]
    expected = (kept.set_index("encounter_id")["readmitted"] == "<30").astype(int)
    assert (ours.loc[expected.index] == expected).all()


def test_ordered_tests_are_modalities(uci):
    dataset, raw = uci
    kept = raw[~raw["discharge_disposition_id"].astype(int).isin([11, 13, 14, 19, 20, 21])].set_index("encounter_id")
    p = dataset.patients.set_index("patient_id")
    ordered_a1c = ~kept["A1Cresult"].isin(["", "None"])
    assert (p.loc[kept.index, "avail_a1c_test"] == ordered_a1c).all()
    assert (p.loc[kept.index, "avail_weight"] == (kept["weight"] != "?")).all()
    assert p["avail_encounter"].all()
    # '?' is null, never a category
    assert dataset.structured["payer_code"].isna().sum() == int((kept["payer_code"] == "?").sum())


def test_splits_disjoint_by_patient(uci):
    dataset, raw = uci
    assert (
        dataset.patients["group_id"] == dataset.patients["patient_id"].map(raw.set_index("encounter_id")["patient_nbr"])
    ).all()
    shares = dataset.patients["split"].value_counts(normalize=True)
    assert 0.65 < shares["train"] < 0.75


def test_missing_column_is_named(tmp_path, shared_data):
    raw = pd.read_csv(shared_data / "uci-diabetes-130" / "diabetic_data.csv.gz", dtype=str, nrows=50)
    raw.drop(columns=["A1Cresult"]).to_csv(tmp_path / "diabetic_data.csv", index=False)
    (tmp_path / "IDs_mapping.csv").write_bytes((shared_data / "uci-diabetes-130" / "IDs_mapping.csv").read_bytes())
    with pytest.raises(LoaderError, match=r"diabetic_data.csv: A1Cresult: required column is missing"):
        build(tmp_path, tmp_path / "ds", progress=False)
