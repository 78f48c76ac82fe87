"""shift-study: the sites, the scores against the truth, the configuration checks and a tiny end-to-end run."""

import json

import numpy as np
import pytest

from mmnar_core.cli import main
from mmnar_lab.shift_study.config import StudyConfig
from mmnar_lab.shift_study.score import Resampler, compare
from mmnar_lab.shift_study.sites import MODALITIES, simulate_site, study_data


@pytest.fixture(scope="module")
def sites():
    site_a, tabular = simulate_site(3000, 1, "content_signal", 2.0)
    site_b, _ = simulate_site(3000, 2, "content_signal", 2.0, tabular)
    return site_a, site_b


def test_content_shows_findings_but_never_the_unrecorded_judgement(sites):
    site_a, _ = sites
    judgement = site_a.frame["unrecorded_judgement"].to_numpy()
    opacity = site_a.frame["finding_opacity"].to_numpy(dtype=float)
    for modality in MODALITIES[1:]:
        x = site_a.content[modality]
        assert x.shape == (3000, 32)
        fitted = np.linalg.lstsq(np.column_stack([np.ones(3000), x]), judgement, rcond=None)[0]
        r2 = 1 - np.var(judgement - np.column_stack([np.ones(3000), x]) @ fitted) / np.var(judgement)
        assert r2 < 0.03, (modality, r2)  # 33 regressors on 3,000 rows: chance alone gives ~0.01
    x = site_a.content["cxr"]
    fitted = np.linalg.lstsq(np.column_stack([np.ones(3000), x]), opacity, rcond=None)[0]
    assert 1 - np.var(opacity - np.column_stack([np.ones(3000), x]) @ fitted) / np.var(opacity) > 0.5


def test_study_data_keeps_site_b_out_of_training(sites):
    site_a, site_b = sites
    data = study_data(site_a, site_b, ["default", "reversed"])
    assert len(data) == 3000 + 2 * 3000
    assert set(data.splits[:3000]) == {"train", "val"} and set(data.splits[3000:]) == {"test"}
    # the same site-B patients under two policies: same labels and truth, different availability
    first, second = slice(3000, 6000), slice(6000, 9000)
    assert np.array_equal(data.true_probs[first], data.true_probs[second])
    assert not np.array_equal(data.availability[first].numpy(), data.availability[second].numpy())
    # absent modalities are zero; the structured modality is always present
    assert data.availability[:, 0].all()
    absent = ~data.availability[:, 1].numpy()
    assert np.all(data.inputs[1].numpy()[absent] == 0)


def test_scores_against_the_truth_by_hand():
    patterns = np.array([1] * 60 + [3] * 60)
    truth = np.full(120, 0.2)
    p = np.r_[np.full(60, 0.3), np.full(60, 0.2)]  # pattern 1 over-predicted by 0.1, pattern 3 exact
    resampler = Resampler.make(patterns, 200, seed=0)
    assert resampler.error([p], truth)[0] == pytest.approx(0.05)
    assert resampler.pattern_bias([p], truth)[0] == pytest.approx(0.05)  # mean of 0.1 and 0
    assert resampler.pattern_bias([p, truth], truth)[0] == pytest.approx(0.025)  # averaged over seeds
    inside = [np.r_[np.ones(90, bool), np.zeros(30, bool)]]
    assert resampler.coverage(inside)[0] == pytest.approx(0.75)
    result = compare(resampler.error([p], truth), resampler.error([truth], truth) + 0.01)
    assert result["verdict"] == "worse" and result["difference"] == pytest.approx(0.04)
    few = Resampler.make(np.array([1] * 60 + [3] * 10), 50, seed=0)
    assert list(few.patterns) == [1]  # patterns with fewer than 50 rows are left out of the bias


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(ValueError, match="increasing order"):
        StudyConfig(pools=(300, 100))
    with pytest.raises(ValueError, match="1,000 test patients"):
        StudyConfig(n_site_b=3500)
    with pytest.raises(ValueError, match="unknown policy"):
        StudyConfig(policies=("default", "sometimes"))
    with pytest.raises(ValueError, match="must include 'default'"):
        StudyConfig(policies=("reversed",))
    with pytest.raises(ValueError, match="at least one reference"):
        StudyConfig(models=("mmnar",))
    with pytest.raises(ValueError, match="unknown model"):
        StudyConfig(models=("mmnar", "magic"))


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path, capsys):
    out = tmp_path / "study"
    args = [
        "shift-study",
        "--out",
        str(out),
        "--n-site-a",
        "800",
        "--n-site-b",
        "1400",
        "--pools",
        "100",
        "300",
        "--policies",
        "default",
        "reversed",
        "--judgements",
        "2",
        "--training-seeds",
        "0",
        "1",
        "--models",
        "mmnar",
        "logistic",
        "--resamples",
        "100",
        "--epochs",
        "2",
        "--threads",
        "1",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "## Headline figures" in printed
    results = json.loads((out / "results.json").read_text())
    group = results["groups"][0]
    assert group["n_test"] == 1100
    cells = {(c["model"], c["adaptation"], c["policy"], c["pool"], c["task"]) for c in group["cells"]}
    assert len(cells) == 2 * 4 * 2 * 2 * 3
    none = [
        c
        for c in group["cells"]
        if c["adaptation"] == "none" and c["model"] == "mmnar" and c["task"] == "icu_90d" and c["policy"] == "reversed"
    ]
    assert none[0]["error"]["value"] == pytest.approx(none[1]["error"]["value"])  # no adaptation: the pool is unused
    assert {r["adaptation"] for r in group["coverage"]} == {"none", "global", "modality_offsets", "rectifier_v2"}
    card = json.loads((out / "card.json").read_text())
    assert card["pool"] == 300 and len(card["rows"]) == 2 * 3  # 2 policies x 3 outcomes at the middle pool
    assert main(args) == 2  # refuses to overwrite without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_estimator_comparison_finds_real_pattern_bias_at_realistic_n(capsys):
    """With a planted pattern deviation of sd 0.6 at 1,500 patients, neither estimator's floor swallows it in most
    fits, and the fitted offsets come closer to the planted ones than ignoring the patterns would (error ~0.45)."""
    assert main(["rectifier-estimators", "--sizes", "1500", "--sites", "20", "--deviation-sd", "0.6"]) == 0
    printed = capsys.readouterr().out
    rows = json.loads(printed[: printed.index("\n\n|")])
    assert {r["estimator"] for r in rows} == {"reml", "moments"}
    for row in rows:
        assert row["share_tau2_zero"] <= 0.2 and row["offset_error"] < 0.25


def test_rmse_rewards_the_mean_where_the_absolute_error_rewards_the_median():
    """True risks 0.1 (x3) and 0.5 for one record: predicting their mean 0.2 (calibrated) has the lower RMSE,
    predicting their median 0.1 the lower absolute error; the study reports both for that reason."""
    truth = np.array([0.1, 0.1, 0.1, 0.5] * 20)
    resampler = Resampler.make(np.ones(80, dtype=np.int64), 50, seed=0)
    mean, median = np.full(80, 0.2), np.full(80, 0.1)
    assert resampler.rmse([mean], truth)[0] < resampler.rmse([median], truth)[0]
    assert resampler.error([mean], truth)[0] > resampler.error([median], truth)[0]
    assert resampler.rmse([mean], truth)[0] == pytest.approx(np.sqrt((3 * 0.01 + 0.09) / 4))
