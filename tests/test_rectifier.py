"""Rectifier v2: hand-computed shrinkage, planted biases recovered, the gate, intervals, state."""

import numpy as np
import pytest

from mmnar_core.calibration import PatternRectifier, RectifierError, TemperatureScaler
from mmnar_core.calibration.rectifier import (
    RectifierConfig,
    between_variance_moments,
    between_variance_reml,
    meta_regression,
    pattern_offsets,
)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _logit(p):
    return np.log(p / (1 - p))


def test_never_fit_on_test():
    with pytest.raises(RectifierError, match="never be fit on the test split"):
        PatternRectifier(2).fit([0, 1], [0.2, 0.3], [0, 1], source="test")
    with pytest.raises(RectifierError, match="accepted: val, crossfit, external"):
        PatternRectifier(2).fit([0, 1], [0.2, 0.3], [0, 1], source="train")
    with pytest.raises(RectifierError, match="same length"):
        PatternRectifier(2).fit([0, 1], [0.2], [0, 1], source="val")
    with pytest.raises(RectifierError, match="estimator"):
        RectifierConfig(estimator="guess")


def test_hand_computed_shrinkage_on_a_small_table():
    # three groups, offsets 0, 1, 2 with sampling variance 0.5 each: w = 2, mean 1, Q = 4,
    # DerSimonian-Laird tau^2 = (Q - (G - 1)) / (sum w - sum w^2 / sum w) = (4 - 2) / (6 - 2) = 0.5;
    # with equal variances REML gives s^2 - v = 1 - 0.5 = 0.5 too; B = 0.5 / (0.5 + 0.5) = 0.5
    d, v, x = np.array([0.0, 1.0, 2.0]), np.full(3, 0.5), np.ones((3, 1))
    assert between_variance_moments(d, v, x) == pytest.approx(0.5)
    assert between_variance_reml(d, v, x) == pytest.approx(0.5, abs=1e-4)
    meta = meta_regression(d, v, x, "moments")
    assert meta.beta == pytest.approx([1.0]) and meta.tau2 == pytest.approx(0.5)
    shrunk = meta.beta[0] + meta.tau2 / (meta.tau2 + v) * (d - meta.beta[0])
    assert shrunk == pytest.approx([0.5, 1.0, 1.5])
    # a regressor that explains the groups exactly leaves no between-group variance (G - p = 1 degree of freedom)
    x2 = np.column_stack([np.ones(3), [0.0, 1.0, 2.0]])
    assert between_variance_moments(d, v, x2) == 0.0 and between_variance_reml(d, v, x2) == 0.0


def test_pattern_offsets_are_the_maximum_likelihood_shift():
    # one group, z = 0 for every row, 30 % events: the offset is logit(0.3) (up to the weak prior)
    y = np.r_[np.ones(300), np.zeros(700)]
    d, v = pattern_offsets(np.zeros(1000), y, np.zeros(1000, dtype=np.int64), 2, prior_sd=100.0)
    assert d[0] == pytest.approx(_logit(0.3), abs=1e-4)
    assert v[0] == pytest.approx(1 / (1000 * 0.3 * 0.7), rel=1e-3)
    assert d[1] == 0.0 and np.isinf(v[1])  # an empty group


def _site(n, seed, offsets, calibrated=True):
    """Rows of 3 modalities (bit 0 always present), model probabilities biased by `offsets[pattern]`."""
    rng = np.random.default_rng(seed)
    patterns = 1 + 2 * rng.integers(0, 4, n)  # 1, 3, 5, 7
    true_logit = rng.normal(-1.3, 1.0, n)
    labels = (rng.random(n) < _sigmoid(true_logit)).astype(float)
    model = _sigmoid(true_logit - offsets[patterns])
    return patterns, model, labels, _sigmoid(true_logit)


def test_recovers_planted_per_pattern_bias_at_realistic_n():
    offsets = np.zeros(8)
    offsets[[1, 3, 5, 7]] = [0.0, 0.6, -0.5, -0.7]  # not additive: 7 would be 0.1 if it were
    patterns, model, labels, truth = _site(3000, 0, offsets)
    rectifier = PatternRectifier(3).fit(patterns, model, labels, source="external")
    assert rectifier.level_ == "pattern", rectifier.reason_
    fixed = rectifier.transform(patterns, model)
    for g in (1, 3, 5, 7):
        rows = patterns == g
        before = abs(model[rows].mean() - truth[rows].mean())
        after = abs(fixed[rows].mean() - truth[rows].mean())
        assert after < max(0.5 * before, 0.015), (g, before, after)
    assert rectifier.offset_[[3, 5, 7]] - rectifier.offset_[1] == pytest.approx([0.6, -0.5, -0.7], abs=0.25)
    assert np.isfinite(rectifier.offset_).all()  # unseen patterns get their parent


def test_recovers_planted_per_modality_offsets():
    # additive: modality 1 adds +0.5, modality 2 adds -0.4 (pattern 7 = both)
    offsets = np.zeros(8)
    offsets[[1, 3, 5, 7]] = [0.0, 0.5, -0.4, 0.1]
    patterns, model, labels, truth = _site(3000, 1, offsets)
    rectifier = PatternRectifier(3).fit(patterns, model, labels, source="external")
    assert rectifier.level_ in ("modality", "pattern"), rectifier.reason_
    assert rectifier.slope_ == pytest.approx(1.0, abs=0.1)  # fit beside the offsets, not absorbing them
    mean_bias_before = np.mean([abs(model[patterns == g].mean() - truth[patterns == g].mean()) for g in (3, 5, 7)])
    fixed = rectifier.transform(patterns, model)
    mean_bias_after = np.mean([abs(fixed[patterns == g].mean() - truth[patterns == g].mean()) for g in (3, 5, 7)])
    assert mean_bias_after < 0.5 * mean_bias_before


def test_the_gate_refuses_a_useless_correction():
    """A calibrated model at n = 1,000: whatever is fitted, the rectified risks stay within noise of the model's,
    and over 20 sites the pattern level is almost never used."""
    levels = []
    for seed in range(20):
        patterns, model, labels, truth = _site(1000, 100 + seed, np.zeros(8))
        rectifier = PatternRectifier(3).fit(patterns, model, labels, source="val")
        levels.append(rectifier.level_)
        fixed = rectifier.transform(patterns, model)
        assert np.abs(fixed - truth).mean() < np.abs(model - truth).mean() + 0.006
    assert levels.count("pattern") + levels.count("modality") <= 4, levels
    assert levels.count("none") >= 10, levels


def test_too_few_rows_means_no_correction():
    patterns, model, labels, _ = _site(80, 3, np.full(8, 1.0))
    rectifier = PatternRectifier(3).fit(patterns, model, labels, source="external")
    assert rectifier.level_ == "none" and "below the minimum" in rectifier.reason_
    assert np.allclose(rectifier.transform(patterns, model), model)


def test_report_says_per_pattern_what_the_gate_kept():
    offsets = np.zeros(8)
    offsets[[1, 3, 5, 7]] = [0.0, 0.8, -0.6, -0.8]
    patterns, model, labels, _ = _site(3000, 4, offsets)
    rectifier = PatternRectifier(3).fit(patterns, model, labels, source="external")
    rows = {r["pattern"]: r for r in rectifier.report(["ehr", "cxr", "note"])}
    assert rows[3]["modalities"] and rows[3]["n"] > 500 and rows[0]["n"] == 0
    assert rows[3]["kept"] and rows[3]["low"] < rows[3]["offset"] < rows[3]["high"]
    assert rows[0]["raw_offset"] is None and not rows[0]["kept"]
    assert rectifier.summary()["level"] == "pattern"


def test_interval_grows_with_the_model_spread_and_for_rare_patterns():
    offsets = np.zeros(8)
    offsets[[1, 3, 5, 7]] = [0.0, 0.6, -0.5, 0.4]
    patterns, model, labels, _ = _site(3000, 5, offsets)
    keep = (patterns != 7) | (np.arange(len(patterns)) % 20 == 0)  # pattern 7 rare
    rectifier = PatternRectifier(3).fit(patterns[keep], model[keep], labels[keep], source="external")
    low, high = rectifier.interval(np.array([7, 3]), np.array([0.2, 0.2]))
    assert high[0] - low[0] > high[1] - low[1]
    plain = rectifier.logit_variance(np.array([3]), np.array([0.2]))
    assert rectifier.logit_variance(np.array([3]), np.array([0.2]), model_sd=np.array([0.5])) == pytest.approx(
        plain + 0.25
    )
    wide_low, wide_high = rectifier.interval(np.array([3]), np.array([0.2]), model_sd=np.array([0.5]))
    assert wide_high[0] - wide_low[0] > high[1] - low[1] + 0.1


@pytest.mark.slow
def test_prediction_powered_pattern_mean_covers_the_true_mean():
    """Known answer: over 300 simulated sites the 95 % interval of a pattern's mean risk covers the true mean
    about 95 % of the time, although the model is biased for that pattern."""
    covered = []
    for seed in range(300):
        offsets = np.zeros(8)
        offsets[3] = 0.5
        patterns, model, labels, truth = _site(400, 1000 + seed, offsets)
        rectifier = PatternRectifier(3).fit(patterns, model, labels, source="external")
        unlabelled_patterns, unlabelled_model, _, unlabelled_truth = _site(2000, 5000 + seed, offsets)
        row = rectifier.pattern_mean_risk(unlabelled_patterns, unlabelled_model)[3]
        target = unlabelled_truth[unlabelled_patterns == 3].mean()
        covered.append(row["low"] <= target <= row["high"])
    assert 0.91 <= np.mean(covered) <= 0.99


def test_state_round_trip_and_first_edition_bundles():
    offsets = np.zeros(8)
    offsets[[1, 3, 5, 7]] = [0.0, 0.6, -0.5, 0.4]
    patterns, model, labels, _ = _site(2000, 6, offsets)
    labels[:10] = np.nan
    rectifier = PatternRectifier(3).fit(patterns, model, labels, source="crossfit")
    again = PatternRectifier.from_dict(rectifier.to_dict())
    assert np.array_equal(again.transform(patterns, model), rectifier.transform(patterns, model))
    assert np.array_equal(again.interval(patterns, model)[0], rectifier.interval(patterns, model)[0])
    assert again.level_ == rectifier.level_ and again.summary() == rectifier.summary()
    with pytest.raises(RectifierError, match="0..7"):
        rectifier.transform(np.array([8]), np.array([0.1]))
    first_edition = {
        "n_modalities": 1,
        "source": "val",
        "n_fit": 50,
        "sigma2": 0.1,
        "tau": [0.0, 0.02],
        "se": [0.0, 0.01],
        "n": [0, 50],
        "offset": [0.0, 0.3],
        "offset_low": [0.0, 0.1],
        "offset_high": [0.0, 0.5],
    }
    old = PatternRectifier.from_dict(first_edition)
    assert old.transform(np.array([1]), np.array([0.5]))[0] == pytest.approx(_sigmoid(0.3))
    assert old.affine(1) == (1.0, 0.3)
    with pytest.raises(RectifierError, match="not supported"):
        PatternRectifier.from_dict({**rectifier.to_dict(), "format": "pattern-rectifier/9"})


def test_temperature_scaling_recovers_planted_temperature():
    rng = np.random.default_rng(3)
    true = rng.normal(0, 1.5, (20000, 2))
    labels = (rng.random(true.shape) < _sigmoid(true)).astype(float)
    overconfident = true * np.array([2.0, 0.5])
    scaler = TemperatureScaler().fit(overconfident, labels)
    assert scaler.temperatures == pytest.approx([2.0, 0.5], rel=0.08)
    assert np.allclose(
        TemperatureScaler.from_dict(scaler.to_dict()).transform(overconfident), overconfident / scaler.temperatures
    )
