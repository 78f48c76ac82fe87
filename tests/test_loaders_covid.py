"""COVID-CXR loader on ../shared/data/covid-cxr-notes (real images + notes; smoke tests only)."""

import pandas as pd
import pytest

from mmnar_core.dataset import load_dataset
from mmnar_core.loaders.covid_cxr import build


@pytest.fixture(scope="module")
def covid(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("covid") / "ds"
    build(shared_data / "covid-cxr-notes", out, progress=False)
    return load_dataset(out, verify="all"), pd.read_csv(shared_data / "covid-cxr-notes" / "metadata.csv")


def test_one_row_per_patient_and_labels_match_pandas(covid):
    dataset, meta = covid
    assert len(dataset) == meta["patientid"].nunique() == 203
    per = meta.groupby("patientid")
    died = per["survival"].apply(lambda s: "N" in set(s))
    known = per["survival"].apply(lambda s: bool({"Y", "N"} & set(s)))
    assert int(dataset.labels("death").sum()) == int(died.sum()) == 8
    assert int(dataset.labels("death").notna().sum()) == int(known.sum()) == 64
    icu = per["went_icu"].apply(lambda s: "Y" in set(s))
    assert int(dataset.labels("went_icu").sum()) == int(icu.sum()) == 53
    assert int(dataset.labels("went_icu").notna().sum()) == 92


def test_first_image_and_its_note(covid):
    dataset, meta = covid
    assert dataset.patients["avail_cxr"].all()
    meta = meta.assign(offset=pd.to_numeric(meta["offset"], errors="coerce"))
    row = dataset.images.set_index("patient_id").loc["covid_17"]  # patient 17: images at offsets 3, 9, 15
    assert (
        row["image_id"]
        == meta.loc[(meta["patientid"].astype(str) == "17") & (meta["offset"] == 3), "staged_file"].iloc[0]
    )
    with_note = dataset.patients.set_index("patient_id")["avail_clinical_note"]
    assert 0 < with_note.mean() < 1
    assert dataset.images["license"].notna().all()
