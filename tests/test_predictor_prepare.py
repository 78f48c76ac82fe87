"""`Predictor.prepare` (the app's warm-up) fits in advance everything the what-if would fit on the first
patient of a training pattern: afterwards a what-if of each demo patient fits nothing new."""

from __future__ import annotations

import numpy as np
import pytest

from mmnar_app.demo_patients import load_demo_patients
from mmnar_core import DEMO_BUNDLE, Predictor


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load(DEMO_BUNDLE)


@pytest.mark.slow
def test_after_prepare_no_patient_of_a_training_pattern_fits_anything(predictor):
    assert predictor.reference is not None
    assert not predictor.reference._conditional and not predictor._ordering_game._risks
    predictor.prepare()
    fitted, masks = dict(predictor.reference._conditional), dict(predictor._ordering_game._risks)
    assert len(masks) == 16 and fitted  # every availability mask, and a model per absent modality and pattern
    patients = load_demo_patients()
    with_absent = 0
    for patient in patients:
        result = predictor.what_if(patient.record())
        with_absent += bool(result.absent)
        assert all(a.estimate is not None for a in result.absent)
    assert with_absent >= 2  # the check means something: some demo patients lack a modality
    assert predictor.reference._conditional.keys() == fitted.keys()
    for key, model in fitted.items():
        assert predictor.reference._conditional[key] is model  # nothing refitted
    assert all(np.array_equal(predictor._ordering_game._risks[k], v) for k, v in masks.items())
