"""One patient at prediction time gives the same vectors as the batch path used for training."""

import numpy as np
import pandas as pd
import pytest

from mmnar_core.encoders.errors import EmptyTextError, TruncatedImageError
from mmnar_core.encoders.patient import PatientEncoder
from mmnar_core.encoders.tabular import TabularEncoder
from mmnar_core.schema import PatientRecord

from support.encoders import tiny_image, tiny_text
from support.tiny_dataset import PNG_1x1, tiny_manifest


@pytest.fixture(scope="module")
def patient_encoder():
    manifest = tiny_manifest()
    tabular = TabularEncoder(manifest.features_of("structured")).fit(
        pd.DataFrame({"age": [40.0, 60.0, 80.0], "sex": ["male", "female", "female"]})
    )
    return PatientEncoder(manifest.modalities, tiny_image(0), tiny_text(0), {"structured": tabular})


def test_only_available_modalities_and_same_vectors(patient_encoder):
    record = PatientRecord(
        "p", structured={"age": 70.0, "sex": None}, images={"cxr": PNG_1x1}, texts={"note": "Small effusion."}
    )
    out = patient_encoder.encode(record)
    assert list(out) == ["structured", "cxr", "note"]
    np.testing.assert_allclose(out["note"], patient_encoder.text.embed(["Small effusion."])[0], atol=1e-6)
    np.testing.assert_allclose(out["cxr"], patient_encoder.image.embed([PNG_1x1])[0], atol=1e-6)
    # age (70 - 60) / (20 / 1.349), not missing, sex one-hot (female, male, <unknown>) all zero except <missing>
    np.testing.assert_allclose(out["structured"], [10 * 1.349 / 20, 0, 0, 0, 0, 1], rtol=1e-6)
    assert list(patient_encoder.encode(PatientRecord("q", texts={"note": "  "}))) == []


def test_bad_inputs_raise_specific_errors(patient_encoder):
    with pytest.raises(TruncatedImageError):
        patient_encoder.encode(PatientRecord("p", images={"cxr": PNG_1x1[:30]}))
    with pytest.raises(EmptyTextError, match="note of p"):
        patient_encoder.encode(PatientRecord("p", texts={"note": "Name: ___"}))
