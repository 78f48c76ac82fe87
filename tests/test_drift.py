"""Ordering-policy drift (mmnar_core.drift): total variation on hand-computed distributions, the verdict on
identical mixes, on a simulated drift (far fewer X-rays), on small samples, the interval's coverage and the
null test's false alarms in seeded simulations, the chi-square tail, every bad input, and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmnar_core.drift import (
    ADVISED,
    MILD,
    NO_DRIFT,
    TOO_FEW,
    DriftError,
    DriftThresholds,
    chi2_sf,
    chi2_two_sample,
    compare_patterns,
    counts_document,
    parse_counts,
    pattern_words,
    read_counts_document,
    rectify_command,
    total_variation,
)
from mmnar_core.resources import DEMO_BUNDLE

NAMES = ["structured", "cxr", "discharge_note", "radiology_report"]
# the demo bundle's training mix (mmnar_core/resources/demo_bundle/dataset.json)
TRAIN = {"1": 644, "3": 119, "5": 3502, "7": 465, "9": 42, "11": 676, "13": 215, "15": 2737}


def shares(counts: dict) -> np.ndarray:
    p = np.zeros(16)
    for k, v in counts.items():
        p[int(k)] = v
    return p / p.sum()


def fewer_xrays(p: np.ndarray, kept: float) -> np.ndarray:
    """The same patients, but only `kept` of those who had an X-ray still get one (the rest lose bit 1)."""
    q = p.copy()
    for g in range(16):
        if g & 2:
            q[g] = p[g] * kept
            q[g ^ 2] += p[g] * (1 - kept)
    return q


def draw(rng, n: int, p: np.ndarray) -> dict[int, int]:
    return {g: int(c) for g, c in enumerate(rng.multinomial(n, p)) if c}


# ---------------------------------------------------------------------------------------------- statistic
def test_total_variation_by_hand():
    assert total_variation([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5)
    assert total_variation([2, 2], [3, 1]) == pytest.approx(0.25)  # counts are normalised first
    assert total_variation([1, 0, 0], [0, 0, 1]) == pytest.approx(1.0)
    assert total_variation([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # 1/2 (|0.1-0.4| + |0.6-0.2| + |0.3-0.4|) = 0.4
    assert total_variation([0.1, 0.6, 0.3], [0.4, 0.2, 0.4]) == pytest.approx(0.4)
    rows = total_variation(np.array([[1, 1], [1, 0]]), np.array([[1, 1], [0, 1]]))
    assert rows == pytest.approx([0.0, 1.0])


def test_report_tv_is_the_hand_computed_one():
    # training 50/50 over structured and structured+cxr; here 150/50: TV = |0.75 - 0.5| = 0.25
    report = compare_patterns({"1": 500, "3": 500}, {"1": 150, "3": 50}, NAMES)
    assert report.tv == pytest.approx(0.25)
    assert report.tv_low < 0.25 < report.tv_high
    rows = {r.words: r for r in report.patterns}
    assert rows["structured"].difference == pytest.approx(0.25)
    assert rows["structured + cxr"].local_share == pytest.approx(0.25)


@pytest.mark.parametrize(
    "statistic, df, expected",
    [
        (3.841459, 1, 0.05),
        (11.070498, 5, 0.05),
        (6.634897, 1, 0.01),
        (0.0, 3, 1.0),
        (2.0, 2, np.exp(-1.0)),
        (100.0, 7, 2.4e-18),
    ],
)
def test_chi_square_tail_matches_known_values(statistic, df, expected):
    assert chi2_sf(statistic, df) == pytest.approx(expected, rel=2e-3)


def test_chi_square_tail_matches_scipy_on_a_grid():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 7, 15, 40):
        for x in (0.01, 0.5, 1, 3, 10, 30, 80):
            assert chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-6, abs=1e-300)


def test_chi_square_pools_sparse_patterns():
    train = np.array([500, 500, 3, 2])
    local = np.array([100, 100, 0, 1])
    statistic, df, p, pooled = chi2_two_sample(train, local, 5.0)
    assert pooled == [2, 3] and df == 2  # three cells: the two large patterns and the pooled rare ones
    assert 0.0 <= p <= 1.0 and statistic >= 0.0


# ---------------------------------------------------------------------------------------------- verdicts
def test_identical_mix_is_no_drift():
    report = compare_patterns(TRAIN, TRAIN, NAMES)
    assert report.verdict == NO_DRIFT and report.tv == 0.0 and report.p_value == 1.0
    assert not report.rectify_advised and "No drift detected" in report.message
    half = {k: v // 2 for k, v in TRAIN.items()}  # the same mix, half the patients
    assert compare_patterns(TRAIN, half, NAMES).verdict == NO_DRIFT


def test_simulated_drift_far_fewer_xrays_advises_rectify():
    rng = np.random.default_rng(0)
    p = shares(TRAIN)
    q = fewer_xrays(p, kept=0.3)  # 70 % fewer X-rays: true TV 0.33, far above the 0.10 threshold
    assert total_variation(p, q) == pytest.approx(0.333, abs=0.001)
    train = draw(rng, 8400, p)
    report = compare_patterns(train, draw(rng, 400, q), NAMES)
    assert report.verdict == ADVISED and report.rectify_advised
    assert report.tv_low > 0.2 and report.p_value < 0.001
    assert "rectify advised" in report.message
    # the same number of patients under the training policy: no alarm
    assert compare_patterns(train, draw(rng, 400, p), NAMES).verdict == NO_DRIFT
    # the patterns that lost the X-ray are the largest differences, named in words
    top = report.patterns[0]
    assert "cxr" in top.words and top.difference < -0.15


def test_small_shift_on_many_patients_is_mild():
    rng = np.random.default_rng(1)
    p = shares(TRAIN)
    q = fewer_xrays(p, kept=0.9)  # true TV 0.048: real, but not one patient in ten
    report = compare_patterns(draw(rng, 50_000, p), draw(rng, 8000, q), NAMES)
    assert report.verdict == MILD and report.p_value < 0.01 and report.tv_low < 0.10
    assert "no refit needed yet" in report.message


def test_small_sample_is_too_few_even_with_a_real_shift():
    rng = np.random.default_rng(2)
    p = shares(TRAIN)
    report = compare_patterns(draw(rng, 8400, p), draw(rng, 60, fewer_xrays(p, 0.3)), NAMES)
    assert report.verdict == TOO_FEW and report.n_local == 60
    assert report.tv is not None and report.tv_low <= report.tv_high  # figures still shown
    assert "Too few patients" in report.message and "100 needed" in report.message
    empty = compare_patterns(TRAIN, {}, NAMES)
    assert empty.verdict == TOO_FEW and empty.tv is None and empty.patterns[0].local_share is None


def test_threshold_is_one_setting():
    rng = np.random.default_rng(3)
    p = shares(TRAIN)
    train, local = draw(rng, 8400, p), draw(rng, 400, fewer_xrays(p, 0.3))
    assert compare_patterns(train, local, NAMES, DriftThresholds(advise_tv=0.5)).verdict == MILD
    assert compare_patterns(train, local, NAMES, DriftThresholds(min_patients=1000)).verdict == TOO_FEW


def test_unseen_patterns_are_named_in_words():
    local = {"5": 300, "1": 100, "0": 20, "structured+cxr+discharge_note+radiology_report": 80, "cxr": 10}
    report = compare_patterns(TRAIN, local, NAMES)
    assert set(report.unseen_patterns) == {"no modality", "cxr"}
    assert "never seen in training: " in report.message and "cxr" in report.message
    assert {r.words for r in report.patterns if r.unseen_in_training} == {"no modality", "cxr"}


def test_same_seed_same_figures():
    rng = np.random.default_rng(4)
    local = draw(rng, 300, fewer_xrays(shares(TRAIN), 0.6))
    first, second = compare_patterns(TRAIN, local, NAMES), compare_patterns(TRAIN, local, NAMES)
    assert first.to_dict() == second.to_dict()
    json.dumps(first.to_dict())  # plain data


# ---------------------------------------------------------------------------------------------- simulations
def test_interval_covers_the_true_tv_most_of_the_time():
    """Seeded: 120 sites of 1,000 patients each under a 30 % cut in X-rays (true TV 0.143)."""
    rng = np.random.default_rng(10)
    p = shares(TRAIN)
    q = fewer_xrays(p, 0.7)
    truth = total_variation(p, q)
    covered = 0
    for seed in range(120):
        report = compare_patterns(
            draw(rng, 8400, p), draw(rng, 1000, q), NAMES, DriftThresholds(seed=seed, resamples=1000)
        )
        covered += report.tv_low <= truth <= report.tv_high
    assert covered / 120 >= 0.88  # nominal 0.95; measured 0.93 here


def test_no_drift_rarely_alarms():
    """Seeded: 150 sites of 300 patients under the training policy; the 1 % test alarms at most a few times."""
    rng = np.random.default_rng(11)
    p = shares(TRAIN)
    alarms = sum(
        compare_patterns(draw(rng, 8400, p), draw(rng, 300, p), NAMES, DriftThresholds(seed=s, resamples=500)).verdict
        != NO_DRIFT
        for s in range(150)
    )
    assert alarms <= 6  # expected 1.5


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "counts, words",
    [
        ({"3": -1}, "negative"),
        ({"16": 1}, "pattern id 16 is unknown for 4 modalities"),
        ({"-2": 1}, "neither a pattern id"),
        ({"structured+ecg": 1}, "neither a pattern id"),
        ({"3": 1.5}, "whole number"),
        ({"3": True}, "whole number"),
        ({"3": "7"}, "whole number"),
        ({3: 1, "structured+cxr": 2}, "given twice"),
        ({(1, 2): 1}, "not a pattern id"),
    ],
)
def test_bad_counts_are_refused_by_name(counts, words):
    with pytest.raises(DriftError, match=words.replace("+", r"\+")):
        compare_patterns(TRAIN, counts, NAMES)


def test_other_bad_input():
    with pytest.raises(DriftError, match="hold no patient"):
        compare_patterns({"1": 0}, {"1": 5}, NAMES)
    with pytest.raises(DriftError, match="repeat"):
        compare_patterns(TRAIN, {}, ["structured", "structured"])
    with pytest.raises(DriftError, match="1 to 30 modalities"):
        compare_patterns(TRAIN, {}, [])
    with pytest.raises(DriftError, match="mapping"):
        parse_counts([1, 2], NAMES)
    with pytest.raises(DriftError, match="advise_tv"):
        DriftThresholds(advise_tv=1.5)
    with pytest.raises(DriftError, match="resamples"):
        DriftThresholds(resamples=10)


def test_counts_document_round_trip_and_mismatches():
    document = counts_document("model-a", NAMES, {5: 10, 1: 3}, source="test")
    assert document["patterns"] == {"1": "structured", "5": "structured + discharge_note"} and document["n"] == 13
    assert read_counts_document(json.loads(json.dumps(document)), NAMES, "model-a") == {1: 3, 5: 10}
    with pytest.raises(DriftError, match="pattern ids would mean different modalities"):
        read_counts_document(document, ["structured", "discharge_note", "cxr", "radiology_report"])
    with pytest.raises(DriftError, match="model 'model-a', not 'model-b'"):
        read_counts_document(document, NAMES, "model-b")
    with pytest.raises(DriftError, match="version"):
        read_counts_document({**document, "version": 9}, NAMES)
    assert read_counts_document({"structured": 4}, NAMES) == {1: 4}  # a bare mapping, by names


def test_pattern_words_and_rectify_command():
    assert pattern_words(0, NAMES) == "no modality"
    assert pattern_words(7, NAMES) == "structured + cxr + discharge_note"
    assert rectify_command("bundles/demo") == (
        "python -m mmnar_core rectify bundles/demo LOCAL_DATA --split val --out bundles/demo_local"
    )


# ---------------------------------------------------------------------------------------------- command
def test_drift_command_table_json_and_errors(tmp_path, capsys):
    from mmnar_core.cli import main

    bundle = str(DEMO_BUNDLE)
    model_id = json.loads((DEMO_BUNDLE / "bundle.json").read_text())["model_id"]
    rng = np.random.default_rng(5)
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps(counts_document(model_id, NAMES, draw(rng, 500, fewer_xrays(shares(TRAIN), 0.3)))))
    out = tmp_path / "report.json"
    assert main(["drift", bundle, "--counts", str(counts), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verdict: drift: rectify advised" in printed
    assert f"python -m mmnar_core rectify {bundle} LOCAL_DATA --split val" in printed
    assert "structured + cxr + discharge_note + radiology_report" in printed
    assert json.loads(out.read_text())["verdict"] == ADVISED
    assert main(["drift", bundle, "--counts", str(counts), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_id"] == model_id

    other = tmp_path / "other.json"
    other.write_text(json.dumps(counts_document("another-model", NAMES, {1: 5})))
    assert main(["drift", bundle, "--counts", str(other)]) == 2
    assert "another-model" in capsys.readouterr().err
    assert main(["drift", bundle, "--counts", str(other), "--any-model"]) == 0
    assert "too few patients to judge" in capsys.readouterr().out
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert main(["drift", bundle, "--counts", str(broken)]) == 2
    assert "not a JSON file of pattern counts" in capsys.readouterr().err
    assert main(["drift", str(tmp_path), "--counts", str(counts)]) == 2
    assert "not a model bundle" in capsys.readouterr().err
