import numpy as np
import pytest

from mmnar_core.evaluation.metrics import auroc
from mmnar_core.evaluation.paired import paired_auroc, paired_true_risk_error, verdict


def _cohort(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    truth = 1 / (1 + np.exp(-rng.normal(-1, 1.5, n)))
    y = (rng.random(n) < truth).astype(int)
    return truth, y, rng


def test_identical_models_tie_with_a_zero_difference():
    truth, y, _ = _cohort()
    result = paired_auroc(y, [truth], [truth.copy()], n_resamples=200)
    assert result["difference"] == 0.0 and result["low"] == 0.0 and result["high"] == 0.0
    assert result["verdict"] == "tied"


def test_a_planted_small_gain_is_detected_by_pairing():
    """B is the truth with heavy noise added; A with a little. Their marginal AUROC intervals would
    overlap on 3,000 rows (each about +-0.02 wide) but the paired interval excludes 0."""
    truth, y, rng = _cohort()
    logit = np.log(truth / (1 - truth))
    a = [1 / (1 + np.exp(-(logit + rng.normal(0, 0.6, truth.size)))) for _ in range(3)]
    b = [1 / (1 + np.exp(-(logit + rng.normal(0, 0.9, truth.size)))) for _ in range(3)]
    result = paired_auroc(y, a, b, n_resamples=400)
    expected = np.mean([auroc(y, p) for p in a]) - np.mean([auroc(y, p) for p in b])
    assert result["difference"] == pytest.approx(expected, abs=1e-9)
    assert 0 < result["low"] < result["difference"] < result["high"]
    assert result["verdict"] == "better"
    assert paired_auroc(y, b, a, n_resamples=400)["verdict"] == "worse"


def test_true_risk_error_prefers_the_model_closer_to_the_truth_per_group():
    truth, _, rng = _cohort(n=2000)
    groups = np.repeat([1, 3], 1000)
    close = np.clip(truth + rng.normal(0, 0.01, truth.size), 0, 1)
    biased = truth.copy()
    biased[groups == 3] = np.clip(truth[groups == 3] + 0.08, 0, 1)  # biased in one pattern only
    result = paired_true_risk_error(truth, [close], [biased], groups, n_resamples=300)
    assert result["overall"]["verdict"] == "better"
    assert result["groups"]["3"]["verdict"] == "better"
    assert result["groups"]["3"]["difference"] < -0.05
    # in pattern 1 both are within 0.01 of the truth; the biased one is exact there, so it is "better"
    assert result["groups"]["1"]["verdict"] == "worse"
    assert result["overall"]["a"] == pytest.approx(np.mean(np.abs(close - truth)))


def test_verdicts_and_input_checks():
    assert verdict(0.01, 0.02) == "better" and verdict(-0.02, -0.01) == "worse" and verdict(-0.01, 0.01) == "tied"
    assert verdict(0.01, 0.02, higher_is_better=False) == "worse"
    with pytest.raises(ValueError, match="one value per test row"):
        paired_auroc(np.array([0, 1, 1]), [np.array([0.1, 0.2])], [np.array([0.1, 0.2, 0.3])])
