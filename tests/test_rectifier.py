import numpy as np
import pytest

from mmnar_core.calibration import PatternRectifier, RectifierError, TemperatureScaler
from mmnar_core.calibration.rectifier import offset_for_shift


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_never_fit_on_test():
    with pytest.raises(RectifierError, match="never be fit on the test split"):
        PatternRectifier(2).fit([0, 1], [0.2, 0.3], [0, 1], source="test")
    with pytest.raises(RectifierError, match="accepted: val, crossfit, external"):
        PatternRectifier(2).fit([0, 1], [0.2, 0.3], [0, 1], source="train")


def test_offset_for_shift_hand_case():
    # p = 0.5 for all rows: a shift of +0.231 needs logit offset log(0.731/0.269) = 1.0
    assert offset_for_shift(np.full(10, 0.5), _sigmoid(1.0) - 0.5) == pytest.approx(1.0, abs=1e-6)
    probs = np.array([0.1, 0.4, 0.7])
    d = offset_for_shift(probs, 0.05)
    assert _sigmoid(np.log(probs / (1 - probs)) + d).mean() == pytest.approx(probs.mean() + 0.05, abs=1e-9)


def test_recovers_planted_per_pattern_bias():
    rng = np.random.default_rng(0)
    n, m = 40000, 3
    patterns = rng.integers(0, 2**m, n)
    patterns[patterns == 0] = 1
    true_logit = rng.normal(-1.5, 1.0, n)
    bias = {g: (g - 4) * 0.15 for g in range(8)}  # model under/over-predicts by pattern, in logit units
    labels = (rng.random(n) < _sigmoid(true_logit)).astype(float)
    model_probs = _sigmoid(true_logit - np.array([bias[g] for g in patterns]))
    rectifier = PatternRectifier(m).fit(patterns, model_probs, labels, source="val")
    fixed = rectifier.transform(patterns, model_probs)
    for g in range(1, 8):
        rows = patterns == g
        before = abs(labels[rows].mean() - model_probs[rows].mean())
        after = abs(labels[rows].mean() - fixed[rows].mean())
        assert after < 0.012, (g, before, after)
        assert rectifier.offset[g] == pytest.approx(bias[g], abs=0.12)
    # pattern 0 never observed: falls back to the shrunk level/global estimate, finite
    assert np.isfinite(rectifier.offset[0])


def test_shrinks_rare_patterns_toward_their_level():
    rng = np.random.default_rng(1)
    patterns = np.r_[np.full(5000, 3), np.full(5000, 5), np.full(4, 6)]  # pattern 6 rare (2 modalities)
    probs = np.full(len(patterns), 0.2)
    labels = (rng.random(len(patterns)) < 0.2).astype(float)
    labels[-4:] = 1.0  # the rare pattern's raw residual is +0.8
    rectifier = PatternRectifier(3).fit(patterns, probs, labels, source="val")
    assert abs(rectifier.tau[6]) < 0.2  # shrunk far toward the 2-modality level (about 0)
    low, high = rectifier.interval(np.array([6, 3]), np.array([0.2, 0.2]))
    assert high[0] - low[0] > high[1] - low[1]  # the rare pattern is less certain


def test_state_round_trip_and_intervals():
    rng = np.random.default_rng(2)
    patterns = rng.integers(0, 4, 2000)
    probs = rng.uniform(0.05, 0.6, 2000)
    labels = (rng.random(2000) < probs + 0.05).astype(float)
    labels[:10] = np.nan
    rectifier = PatternRectifier(2).fit(patterns, probs, labels, source="crossfit")
    again = PatternRectifier.from_dict(rectifier.to_dict())
    assert np.array_equal(again.transform(patterns, probs), rectifier.transform(patterns, probs))
    low, high = rectifier.interval(patterns, probs)
    mid = rectifier.transform(patterns, probs)
    assert np.all(low <= mid) and np.all(mid <= high)
    summary = rectifier.pattern_mean_risk(patterns, probs)
    for g, row in summary.items():
        assert row["low"] < row["mean_rectified"] < row["high"]
    with pytest.raises(RectifierError, match="0..3"):
        rectifier.transform(np.array([4]), np.array([0.1]))


def test_temperature_scaling_recovers_planted_temperature():
    rng = np.random.default_rng(3)
    true = rng.normal(0, 1.5, (20000, 2))
    labels = (rng.random(true.shape) < _sigmoid(true)).astype(float)
    overconfident = true * np.array([2.0, 0.5])
    scaler = TemperatureScaler().fit(overconfident, labels)
    assert scaler.temperatures == pytest.approx([2.0, 0.5], rel=0.08)
    assert np.allclose(TemperatureScaler.from_dict(scaler.to_dict()).transform(overconfident), overconfident / scaler.temperatures)
