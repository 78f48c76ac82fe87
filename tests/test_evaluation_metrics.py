"""Evaluation metrics: hand-computed values, agreement with scikit-learn, bootstrap behaviour, bad input."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from mmnar_core.evaluation import (
    METRIC_NAMES,
    MetricInputError,
    auprc,
    auroc,
    bootstrap_ci,
    brier,
    compute_metrics,
    ece,
    evaluate_groups,
    reliability_curve,
    resample_indices,
    resampled_metrics,
)
from mmnar_core.evaluation import bootstrap as bootstrap_module

# Six patients with ties across classes at 0.4 and 0.8.
Y6 = [0, 0, 1, 1, 0, 1]
P6 = [0.1, 0.4, 0.4, 0.8, 0.8, 0.9]


def _synthetic(n: int, seed: int, prevalence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    p = np.clip(prevalence + 0.25 * (y - prevalence) + 0.15 * rng.standard_normal(n), 0.0, 1.0)
    return y, np.round(p, 2)  # rounding plants ties


# ------------------------------------------------------------------------------------------ by hand


def test_auroc_with_ties_by_hand():
    # Pairs (positive, negative): 0.4 beats 0.1, ties 0.4, loses to 0.8 -> 1.5; 0.8 -> 1 + 1 + 0.5 = 2.5;
    # 0.9 beats all three -> 3. AUROC = 7 / 9. Average ranks agree: positives 2.5 + 4.5 + 6 = 13, U = 13 - 6.
    assert auroc(Y6, P6) == pytest.approx(7 / 9)


def test_auroc_all_tied_is_one_half():
    assert auroc([0, 1, 0, 1], [0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.5)


def test_auprc_by_hand():
    # Thresholds 0.9: P=1, recall 1/3; 0.8: P=2/3, recall 2/3; 0.4: P=3/5, recall 1; 0.1 adds no recall.
    assert auprc(Y6, P6) == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3 + 1 / 3 * 3 / 5)  # = 34/45


def test_auprc_tie_is_one_threshold():
    # Both rows flagged at once: precision 1/2 at recall 1 (no credit for listing the positive first).
    assert auprc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_brier_by_hand():
    squared = [0.1**2, 0.4**2, 0.6**2, 0.2**2, 0.8**2, 0.1**2]  # 0.01 + 0.16 + 0.36 + 0.04 + 0.64 + 0.01
    assert brier(Y6, P6) == pytest.approx(sum(squared) / 6) == pytest.approx(1.22 / 6)


def test_ece_two_bins_by_hand():
    # [0, 0.5): p 0.1, 0.4, 0.4 mean 0.3, y rate 1/3 -> 1/30; [0.5, 1]: mean 2.5/3, rate 2/3 -> 1/6.
    assert ece(Y6, P6, n_bins=2) == pytest.approx(0.5 * (1 / 30) + 0.5 * (1 / 6))  # = 0.1


def test_ece_three_bins_by_hand():
    # Bins of width 1/3: {0.1, 0.2} |0.5 - 0.15|, {0.5, 0.6} |0.5 - 0.55|, {0.9} |1 - 0.9|, weights 2/5, 2/5, 1/5.
    y, p = [0, 1, 0, 1, 1], [0.1, 0.2, 0.5, 0.6, 0.9]
    assert ece(y, p, n_bins=3) == pytest.approx(0.4 * 0.35 + 0.4 * 0.05 + 0.2 * 0.1)  # = 0.18


def test_perfectly_calibrated_bins_give_zero_ece():
    assert ece([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5], n_bins=10) == pytest.approx(0.0)


def test_reliability_curve_by_hand():
    curve = reliability_curve([0, 1, 0, 1, 1], [0.1, 0.2, 0.5, 0.6, 0.9], n_bins=3)
    assert curve.count.tolist() == [2, 2, 1]
    np.testing.assert_allclose(curve.mean_predicted, [0.15, 0.55, 0.9])
    np.testing.assert_allclose(curve.observed_rate, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(curve.bin_lower, [0, 1 / 3, 2 / 3])
    np.testing.assert_allclose(curve.bin_upper, [1 / 3, 2 / 3, 1])


def test_bin_edges_go_up_and_one_joins_the_last_bin():
    # 4 bins: 0.25 and 0.5 sit on inner edges (upper bin), 1.0 is in the last bin, 0.0 in the first.
    curve = reliability_curve([0, 0, 0, 0, 1, 1, 1], [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.0], n_bins=4)
    assert curve.count.tolist() == [2, 1, 1, 3]


def test_empty_bins_are_listed_as_nan_and_none_in_json():
    curve = reliability_curve([0, 1], [0.05, 0.95], n_bins=5)
    assert curve.count.tolist() == [1, 0, 0, 0, 1]
    assert np.isnan(curve.mean_predicted[1]) and np.isnan(curve.observed_rate[2])
    as_json = curve.to_dict()
    assert as_json["mean_predicted"] == [0.05, None, None, None, 0.95]
    assert as_json["observed_rate"] == [0.0, None, None, None, 1.0]


# ------------------------------------------------------------------------------------- undefined cases


@pytest.mark.parametrize("y", [[1, 1, 1], [0, 0, 0], []])
def test_ranking_metrics_are_nan_without_both_classes(y):
    p = [0.2, 0.5, 0.9][: len(y)]
    assert math.isnan(auroc(y, p))
    assert math.isnan(auprc(y, p))


def test_brier_and_ece_are_nan_only_for_empty_input():
    assert math.isnan(brier([], [])) and math.isnan(ece([], []))
    assert brier([1, 1], [1.0, 0.5]) == pytest.approx(0.125)
    assert ece([0, 0], [0.2, 0.2], n_bins=5) == pytest.approx(0.2)


def test_accepts_booleans_floats_and_pandas():
    y = pd.Series([False, False, True, True, False, True])
    assert auroc(y, pd.Series(P6)) == pytest.approx(7 / 9)
    assert auroc(np.array(Y6, dtype=float), np.array(P6, dtype=np.float32)) == pytest.approx(7 / 9)


# ------------------------------------------------------------------------------------ scikit-learn


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_scikit_learn_on_random_data_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    y = rng.integers(0, 2, n)
    p = np.round(rng.random(n), int(rng.integers(1, 4)))
    assert auroc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert auprc(y, p) == pytest.approx(average_precision_score(y, p), abs=1e-12)
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def _ece_by_loop(y, p, n_bins):
    total = 0.0
    for k in range(n_bins):
        lower, upper = k / n_bins, (k + 1) / n_bins
        inside = [(yi, pi) for yi, pi in zip(y, p) if lower <= pi < upper or (k == n_bins - 1 and pi == 1.0)]
        if inside:
            total += len(inside) / len(y) * abs(np.mean([a for a, _ in inside]) - np.mean([b for _, b in inside]))
    return total


@pytest.mark.parametrize("n_bins", [1, 4, 15])
def test_ece_matches_a_direct_loop(n_bins):
    y, p = _synthetic(300, seed=n_bins)
    assert ece(y, p, n_bins=n_bins) == pytest.approx(_ece_by_loop(y, p, n_bins), abs=1e-12)


def test_compute_metrics_matches_single_metrics():
    y, p = _synthetic(500, seed=1)
    values = compute_metrics(y, p)
    assert set(values) == set(METRIC_NAMES)
    assert values == pytest.approx({"auroc": auroc(y, p), "auprc": auprc(y, p), "brier": brier(y, p), "ece": ece(y, p)})


def test_resampled_metrics_match_scikit_learn_on_each_resample():
    y, p = _synthetic(200, seed=2)
    rows = resample_indices(y, n_resamples=5, seed=3)
    batched = resampled_metrics(y, p, rows)
    for b, take in enumerate(rows):
        assert batched["auroc"][b] == pytest.approx(roc_auc_score(y[take], p[take]), abs=1e-12)
        assert batched["auprc"][b] == pytest.approx(average_precision_score(y[take], p[take]), abs=1e-12)
        assert batched["brier"][b] == pytest.approx(brier_score_loss(y[take], p[take]), abs=1e-12)
        assert batched["ece"][b] == pytest.approx(_ece_by_loop(y[take], p[take], 15), abs=1e-12)


# --------------------------------------------------------------------------------------- bootstrap


def test_bootstrap_reports_value_interval_and_counts():
    y, p = _synthetic(3000, seed=4)
    result = bootstrap_ci(y, p, METRIC_NAMES, n_resamples=1000, seed=0)
    for name in METRIC_NAMES:
        r = result[name]
        assert set(r) == {"value", "low", "high", "n", "n_pos"}
        assert (r["n"], r["n_pos"]) == (3000, int(y.sum()))
        assert r["low"] <= r["value"] <= r["high"]
    assert result["auroc"]["value"] == pytest.approx(roc_auc_score(y, p))


def test_bootstrap_is_deterministic_for_a_seed():
    y, p = _synthetic(400, seed=5)
    first = bootstrap_ci(y, p, ["auroc", "ece"], n_resamples=200, seed=7)
    assert bootstrap_ci(y, p, ["auroc", "ece"], n_resamples=200, seed=7) == first
    assert bootstrap_ci(y, p, ["auroc", "ece"], n_resamples=200, seed=8) != first


def test_bootstrap_does_not_depend_on_chunk_size(monkeypatch):
    y, p = _synthetic(300, seed=6)
    for stratified in (True, False):
        whole = bootstrap_ci(y, p, n_resamples=100, seed=1, stratified=stratified)
        monkeypatch.setattr(bootstrap_module, "CHUNK_ELEMENTS", 7 * 300)  # chunks of 7 resamples
        assert bootstrap_ci(y, p, n_resamples=100, seed=1, stratified=stratified) == whole
        monkeypatch.undo()


def test_interval_width_shrinks_with_n():
    def width(n):
        y, p = _synthetic(n, seed=n)
        r = bootstrap_ci(y, p, "auroc", n_resamples=300, seed=0)["auroc"]
        return r["high"] - r["low"]

    small, large = width(200), width(3200)
    assert large < 0.5 * small  # width ~ 1/sqrt(n): expected ratio about 1/4


def test_stratified_resamples_keep_the_positive_count():
    y, _ = _synthetic(250, seed=7, prevalence=0.1)
    rows = resample_indices(y, n_resamples=50, seed=0)
    assert rows.shape == (50, 250)
    assert (y[rows].sum(axis=1) == y.sum()).all()
    plain = resample_indices(y, n_resamples=50, seed=0, stratified=False)
    assert len(set(y[plain].sum(axis=1).tolist())) > 1  # without strata the count varies


def test_bootstrap_with_one_class_keeps_brier_and_gives_nan_ranking():
    result = bootstrap_ci([0, 0, 0, 0], [0.1, 0.2, 0.1, 0.3], n_resamples=50)
    assert math.isnan(result["auroc"]["value"]) and math.isnan(result["auroc"]["low"])
    assert result["brier"]["low"] <= result["brier"]["value"] <= result["brier"]["high"]


def test_bootstrap_of_empty_input_is_nan():
    result = bootstrap_ci([], [], ["brier"], n_resamples=10)
    assert result["brier"]["n"] == 0 and math.isnan(result["brier"]["value"]) and math.isnan(result["brier"]["high"])


# ---------------------------------------------------------------------------------------- groups


def _frame() -> pd.DataFrame:
    y, p = _synthetic(600, seed=8)
    pattern = np.where(np.arange(600) < 500, 7, 3)
    pattern[-10:] = 1  # a group too small to evaluate
    y[500:590] = 0  # pattern 3 has negatives only
    return pd.DataFrame({"label": y, "prob": p, "pattern": pattern})


def test_evaluate_groups_overall_and_per_group():
    frame = _frame()
    before = frame.copy()
    table = evaluate_groups(frame, "label", "prob", "pattern", n_resamples=100, seed=0)
    pd.testing.assert_frame_equal(frame, before)  # the input is untouched
    assert list(table.columns) == ["level", "group", "metric", "value", "low", "high", "n", "n_pos", "note"]
    assert table["group"].tolist() == [None] * 4 + [1] * 4 + [3] * 4 + [7] * 4

    overall = table[table["level"] == "overall"].set_index("metric")
    expected = bootstrap_ci(frame["label"], frame["prob"], n_resamples=100, seed=0)
    for name in METRIC_NAMES:
        assert overall.loc[name, ["value", "low", "high"]].tolist() == pytest.approx(
            [expected[name]["value"], expected[name]["low"], expected[name]["high"]]
        )
    assert (overall["note"] == "").all()


def test_evaluate_groups_flags_small_and_one_class_groups():
    table = evaluate_groups(_frame(), "label", "prob", "pattern", n_resamples=50).set_index(["group", "metric"])
    small = table.loc[1]
    assert small["value"].isna().all() and (small["n"] == 10).all()
    assert small["note"].str.contains("too small: n=10 < min_n=30").all()

    one_class = table.loc[3]
    assert (one_class["n"] == 90).all() and (one_class["n_pos"] == 0).all()
    assert one_class.loc[["auroc", "auprc"], "value"].isna().all()
    assert one_class.loc["auroc", "note"] == "one class only (n_pos=0 of n=90): AUROC/AUPRC undefined"
    assert one_class.loc["brier", "value"] == pytest.approx(brier(np.zeros(90), _frame()["prob"][500:590]))
    assert one_class.loc["brier", "note"] == ""


def test_evaluate_groups_without_group_column():
    table = evaluate_groups(_frame(), "label", "prob", metric_names=["auroc"], n_resamples=20)
    assert table["level"].tolist() == ["overall"] and table["n"].tolist() == [600]


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 1], [0.2, 0.3], "same length, got 3 labels and 2 probabilities"),
        ([0, 1], [0.2, 1.5], r"probabilities must be in \[0, 1\]; 1 value\(s\) are outside, min 0.2, max 1.5"),
        ([0, 1], [-0.1, 0.5], r"must be in \[0, 1\].*first at position 0"),
        ([0, 1, 0], [0.2, float("nan"), 0.3], r"must not be NaN; 1 are \(first at position 1\)"),
        ([0, 2, -1], [0.2, 0.3, 0.4], r"0 or 1 \(booleans or 0/1 numbers\); 2 value\(s\) are not, e\.g\. -1, 2 "),
        ([0, float("nan")], [0.2, 0.3], "labels must be 0 or 1.*nan"),
        ([[0, 1]], [[0.2, 0.3]], r"labels must be a 1-D sequence, got an array of shape \(1, 2\)"),
        (["no", "yes"], [0.2, 0.3], "labels must be numbers"),
        ([0, 1], ["low", "high"], "probabilities must be numbers"),
    ],
)
def test_bad_input_raises_a_specific_error(y, p, message):
    for metric in (auroc, auprc, brier, ece, reliability_curve):
        with pytest.raises(MetricInputError, match=message):
            metric(y, p)
    with pytest.raises(ValueError, match=message):  # MetricInputError is a ValueError
        bootstrap_ci(y, p, n_resamples=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric_names": ["auroc", "f1"]}, r"unknown metric name\(s\) \['f1'\]; accepted: auroc, auprc, brier, ece"),
        ({"metric_names": []}, "at least one metric"),
        ({"n_resamples": 0}, "n_resamples must be a positive integer, got 0"),
        ({"alpha": 1.5}, "alpha must be a number strictly between 0 and 1"),
        ({"n_bins": 0}, "n_bins must be a positive integer, got 0"),
    ],
)
def test_bad_bootstrap_options_raise(kwargs, message):
    with pytest.raises(MetricInputError, match=message):
        bootstrap_ci(Y6, P6, **kwargs)


def test_bad_n_bins_for_point_metrics():
    with pytest.raises(MetricInputError, match="n_bins must be a positive integer, got 2.5"):
        ece(Y6, P6, n_bins=2.5)


def test_evaluate_groups_names_missing_columns():
    expected = r"column\(s\) \['pattern_id'\] not in the frame; available: \['label', 'prob', 'pattern'\]"
    with pytest.raises(MetricInputError, match=expected):
        evaluate_groups(_frame(), "label", "prob", "pattern_id")


def test_evaluate_groups_rejects_bad_rows_in_any_group():
    frame = _frame()
    frame.loc[599, "prob"] = 1.2  # inside the too-small group, which is never evaluated
    with pytest.raises(MetricInputError, match="first at position 599"):
        evaluate_groups(frame, "label", "prob", "pattern", n_resamples=10)


def test_resampled_metrics_rejects_bad_indices():
    with pytest.raises(MetricInputError, match=r"indices must be in 0\.\.5, got 0\.\.6"):
        resampled_metrics(Y6, P6, np.array([[0, 6]]))
    with pytest.raises(MetricInputError, match="indices must be a 2-D integer array"):
        resampled_metrics(Y6, P6, np.array([0, 1]))
