"""The calibrated model (mmnar_core.calibration.calibrated) is the one place logits become risks: its map by
hand, and the displayed risk equal to the attributed risk, for extreme patients too."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmnar_core.calibration import PatternRectifier, TemperatureScaler
from mmnar_core.calibration.calibrated import CalibratedModel, patterns_of
from mmnar_core.calibration.rectifier import RectifierConfig
from mmnar_core.numeric import sigmoid
from mmnar_core.patterns import encode_pattern


def _pattern_rectifier(seed: int = 0) -> PatternRectifier:
    """A rectifier forced to per-pattern offsets, fit on planted offsets of +-0.8 logits over 2 modalities."""
    rng = np.random.default_rng(seed)
    n = 4000
    patterns = rng.integers(0, 4, n)
    z = rng.normal(-1.0, 1.2, n)
    planted = np.array([0.8, -0.8, 0.4, 0.0])
    labels = (rng.random(n) < sigmoid(z + planted[patterns])).astype(float)
    return PatternRectifier(2, RectifierConfig(level="pattern")).fit(patterns, sigmoid(z), labels, "val")


def test_the_map_is_slope_times_scaled_logit_plus_the_pattern_shift_by_hand():
    rectifier = _pattern_rectifier()
    assert rectifier.level_ == "pattern"
    model = CalibratedModel(None, ["death"], [2.0], {"death": rectifier}, n_modalities=2)
    logits = torch.tensor([[-40.0], [-3.0], [0.0], [1.5], [40.0]], dtype=torch.float32)
    patterns = torch.tensor([0, 1, 2, 3, 1])
    got = model.risks(logits, patterns).numpy()[:, 0]
    for row in range(len(logits)):
        slope, shift = rectifier.affine(int(patterns[row]))
        expected = 1.0 / (1.0 + math.exp(-(slope * float(logits[row, 0]) / 2.0 + shift)))
        assert got[row] == pytest.approx(expected, rel=1e-12)
    # no clipping: the first edition's numpy path stopped at logit(1e-6) ~ -13.8 for the calibrated risk
    assert got[0] < 1e-8
    # the numpy view is the same map, stage by stage
    stages = model.stages(logits.numpy(), patterns.numpy())
    np.testing.assert_allclose(stages.risk[:, 0], got, rtol=1e-15)
    np.testing.assert_allclose(stages.calibrated_logit[:, 0], logits.numpy()[:, 0] / 2.0, rtol=1e-15)
    np.testing.assert_allclose(stages.raw[:, 0], sigmoid(logits.numpy()[:, 0]), rtol=1e-12)


def test_ordinary_risks_equal_the_rectifier_probability_path():
    """Inside the range the old path did not clip, both give the same risks (to float precision)."""
    rectifier = _pattern_rectifier(1)
    temperature = TemperatureScaler([1.3])
    model = CalibratedModel.from_parts(None, ["death"], temperature, {"death": rectifier}, n_modalities=2)
    rng = np.random.default_rng(2)
    logits = rng.normal(0.0, 3.0, (500, 1))
    patterns = rng.integers(0, 4, 500)
    old = rectifier.transform(patterns, sigmoid(temperature.transform(logits))[:, 0])
    np.testing.assert_allclose(model.stages(logits, patterns).risk[:, 0], old, rtol=1e-9)


def test_patterns_of_matches_encode_pattern():
    availability = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0]], dtype=torch.bool)
    assert patterns_of(availability).tolist() == encode_pattern(availability.numpy()).tolist()


def test_a_task_without_a_rectifier_is_uncorrected_and_has_no_interval():
    model = CalibratedModel(None, ["a"], [1.0], {}, n_modalities=1)
    logits = np.array([[0.3]])
    stages = model.stages(logits, np.array([1]))
    assert stages.risk[0, 0] == pytest.approx(sigmoid(0.3), rel=1e-12)
    with pytest.raises(ValueError, match="no rectifier for task 'a'"):
        model.interval(stages, np.array([1]))


def test_mismatched_temperatures_are_refused():
    with pytest.raises(ValueError, match="2 temperatures for 1 tasks"):
        CalibratedModel(None, ["a"], [1.0, 2.0], {}, n_modalities=1)


@pytest.fixture(scope="module")
def demo_predictor():
    from mmnar_core.predictor import Predictor
    from mmnar_core.resources import DEMO_BUNDLE

    return Predictor.load(DEMO_BUNDLE, device="cpu")


@pytest.mark.slow
def test_displayed_and_attributed_risk_agree_for_an_extreme_patient(demo_predictor):
    """The demo model made extreme (temperature 0.05: logits x 20, risks down to ~1e-30): the risk `predict`
    displays is the value the attributions explain, and the attributions plus their baseline add up to it
    (within the IG delta each reports). Under the first edition's numpy clipping the displayed risk stopped
    at 1e-6 while the attributed one went on, so the logits below would differ by tens."""
    from mmnar_app.demo_patients import load_demo_patients
    from mmnar_core.explain.attributions import AttributionSettings

    predictor = demo_predictor
    original = predictor.calibrated
    tasks = list(predictor.config.tasks)
    predictor.calibrated = CalibratedModel(
        original.network, tasks, [0.05] * len(tasks), predictor.bundle.rectifiers, len(predictor.config.modalities)
    )
    try:
        record = next(p for p in load_demo_patients() if p.texts == {} and p.images == {}).record()
        prediction = predictor.predict(record)
        risks = {r.task: r.risk for r in prediction.risks}
        assert min(risks.values()) < 1e-8 or max(risks.values()) > 1 - 1e-8, risks  # beyond the old clipping
        explanation = predictor.explain(record, settings=AttributionSettings(tabular_steps=256), include_what_if=False)
        (tabular,) = explanation.tabular
        for task in tasks:
            value = tabular.summary.value[task]
            displayed = risks[task]
            assert math.log(value) == pytest.approx(math.log(displayed), abs=1e-3), task
            total = sum(f.attribution[task] for f in tabular.features) + tabular.summary.baseline_value[task]
            assert total == pytest.approx(value - tabular.summary.delta[task], abs=1e-9 + 1e-6 * abs(value))
    finally:
        predictor.calibrated = original
