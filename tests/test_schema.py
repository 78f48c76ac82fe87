import math

import pytest

from mmnar_core.schema import (
    FeatureSpec,
    ModalityKind,
    ModalitySpec,
    OutcomeSpec,
    PatientRecord,
    SchemaError,
)


def test_modality_kind_checked():
    assert ModalitySpec("cxr", "image").kind is ModalityKind.IMAGE
    with pytest.raises(SchemaError, match="accepted: tabular, image, text"):
        ModalitySpec("ecg", "waveform")
    with pytest.raises(SchemaError, match="not a valid name"):
        ModalitySpec("Chest X-ray", "image")


def test_feature_rules():
    with pytest.raises(SchemaError, match="needs its list of categories"):
        FeatureSpec("sex", "categorical", "structured")
    with pytest.raises(SchemaError, match="only categorical"):
        FeatureSpec("age", "numeric", "structured", categories=("a",))
    with pytest.raises(SchemaError, match="low < high"):
        FeatureSpec("age", "numeric", "structured", valid_range=(5, 5))
    spec = FeatureSpec("age", "numeric", "structured", unit="years", valid_range=(18, 110))
    assert FeatureSpec.from_dict(spec.to_dict()) == spec


def test_outcome_window_is_half_open():
    outcome = OutcomeSpec("readmission_30d", "", "", window_days=(0, 30))
    assert not outcome.in_window(0.0)
    assert outcome.in_window(1e-9)
    assert outcome.in_window(30.0)
    assert not outcome.in_window(30.0001)
    assert OutcomeSpec.from_dict(outcome.to_dict()) == outcome
    with pytest.raises(SchemaError):
        OutcomeSpec("x", "", "", window_days=(30, 0))


def test_record_availability_from_content():
    modalities = [
        ModalitySpec("structured", "tabular"),
        ModalitySpec("cxr", "image"),
        ModalitySpec("note", "text"),
        ModalitySpec("labs", "tabular"),
    ]
    features = [FeatureSpec("age", "numeric", "structured"), FeatureSpec("a1c", "numeric", "labs")]
    record = PatientRecord("p", structured={"age": 70, "a1c": math.nan}, images={}, texts={"note": "   "})
    assert record.availability(modalities, features) == (True, False, False, False)
    record = PatientRecord("p", structured={"age": None, "a1c": 7.1}, images={"cxr": "x.png"}, texts={"note": "ok"})
    assert record.availability(modalities, features) == (False, True, True, True)
