"""The simulator's unrecorded clinical judgement and the deployment policies of the shift study."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mmnar_core.synth.cohort import FEATURES, CohortConfig
from mmnar_core.synth.policy import POLICY_NAMES, decide_availability
from mmnar_core.synth.scm import simulate_latent_and_structured

RECORDED = [f.name for f in FEATURES if f.name not in ("sex", "admission_type", "discharge_disposition")]


@pytest.fixture(scope="module")
def frames():
    return {s: simulate_latent_and_structured(20000, seed=7, unrecorded_judgement=s) for s in (0.0, 2.0)}


def test_zero_strength_is_the_cohort_without_the_knob(frames):
    """Outcome risks and vitals (2,000 patients, seed 7) computed with the simulator as it was before the knob
    existed (commit 4df86ad): S = 0 must reproduce them. Sums, sums of squares and four rows to 1e-9 (relative)
    instead of a checksum of the bytes: numpy's exp/log take other SIMD paths on other CPUs and change the last
    bits (an AMD EPYC without AVX-512 gave another checksum from the old commit's own code); any effect of the
    knob at S = 0 would move these by far more."""
    frame = simulate_latent_and_structured(2000, seed=7, unrecorded_judgement=0.0)
    columns = ["true_prob_readmission_30d", "true_prob_icu_90d", "true_prob_death_180d", "heart_rate_max", "spo2_min"]
    values = frame[columns].to_numpy()
    close = dict(rtol=1e-9, atol=0)
    np.testing.assert_allclose(values.sum(0), [266.203269601, 375.80093138, 143.580842655, 176269.0, 187833.0], **close)
    np.testing.assert_allclose(
        (values**2).sum(0), [58.3550794924, 126.234471318, 32.4459159652, 16083073.0, 17667559.0], **close
    )
    rows = [
        [0.104095697569, 0.158783673658, 0.0296916283979, 79.0, 98.0],
        [0.11684444694, 0.0542405732205, 0.0222366474648, 77.0, 90.0],
        [0.0923296339493, 0.220844684891, 0.0444008518881, 106.0, 94.0],
        [0.0501369360967, 0.0565191717509, 0.0095964086365, 79.0, 98.0],
    ]
    np.testing.assert_allclose(values[[0, 1, 999, 1999]], rows, **close)
    assert (frames[0.0]["unrecorded_judgement"] == 0).all()


def test_judgement_is_in_no_recorded_column_but_drives_outcome_and_ordering(frames):
    strong = frames[2.0]
    judgement = strong["unrecorded_judgement"].to_numpy()
    assert 1.8 < judgement.std() < 2.2  # strength x N(0, 1)
    recorded = strong[RECORDED].fillna(0).to_numpy(dtype=float)
    correlations = [abs(np.corrcoef(judgement, recorded[:, j])[0, 1]) for j in range(recorded.shape[1])]
    assert max(correlations) < 0.03  # independent of every recorded feature
    # it moves the true death risk (same everything else: only the judgement term differs)
    shift = np.log(strong["true_prob_death_180d"] / (1 - strong["true_prob_death_180d"])) - np.log(
        frames[0.0]["true_prob_death_180d"] / (1 - frames[0.0]["true_prob_death_180d"])
    )
    assert np.allclose(shift, 0.6 * judgement)
    # and the default policy orders more X-rays for high suspicion; the reversed one fewer
    high = judgement > 1.0
    low = judgement < -1.0
    default, _ = decide_availability(strong, "default", 7)
    reversed_, _ = decide_availability(strong, "reversed", 7)
    assert default["cxr"][high].mean() - default["cxr"][low].mean() > 0.35
    assert reversed_["cxr"][high].mean() - reversed_["cxr"][low].mean() < -0.25


def test_availability_carries_information_the_content_does_not_only_with_judgement(frames):
    """Given every recorded feature, having an X-ray predicts death only when the judgement is unrecorded."""
    gains = {}
    for strength, frame in frames.items():
        bits, _ = decide_availability(frame, "default", 7)
        x = frame[RECORDED].fillna(frame[RECORDED].median()).to_numpy(dtype=float)
        x = (x - x.mean(0)) / x.std(0)
        y = frame["label_death_180d"].to_numpy()
        train, test = slice(0, 14000), slice(14000, None)
        scores = []
        for columns in (x, np.column_stack([x, bits.to_numpy(dtype=float)])):
            model = LogisticRegression(max_iter=2000).fit(columns[train], y[train])
            scores.append(roc_auc_score(y[test], model.predict_proba(columns[test])[:, 1]))
        gains[strength] = scores[1] - scores[0]
    assert gains[2.0] > gains[0.0] + 0.01


def test_reversed_policy_images_the_least_sick(frames):
    frame = frames[0.0]
    bits, _ = decide_availability(frame, "reversed", 7)
    default, _ = decide_availability(frame, "default", 7)
    sick = frame["severity"] > 1.0
    well = frame["severity"] < -1.0
    assert bits["cxr"][well].mean() > bits["cxr"][sick].mean() + 0.2
    assert default["cxr"][sick].mean() > default["cxr"][well].mean() + 0.2
    assert "reversed" in POLICY_NAMES


def test_bad_strength_is_a_clear_error():
    with pytest.raises(ValueError, match="unrecorded-judgement"):
        CohortConfig(n=10, seed=0, unrecorded_judgement=-1)
    with pytest.raises(ValueError, match="unrecorded_judgement"):
        simulate_latent_and_structured(10, seed=0, unrecorded_judgement=float("nan"))
    config = CohortConfig(n=10, seed=0, policy="reversed", unrecorded_judgement=2)
    assert "--unrecorded-judgement 2" in config.options and "judgement2" in config.name
