"""The model card's site-correction section for a bundle whose check kept a per-pattern correction."""

import numpy as np

from mmnar_app.model_card import rectifier_summary, rectifier_table
from mmnar_core.calibration import PatternRectifier


def _calibration(offsets: np.ndarray) -> dict:
    rng = np.random.default_rng(0)
    patterns = 1 + 2 * rng.integers(0, 4, 3000)
    true_logit = rng.normal(-1.3, 1.0, 3000)
    labels = (rng.random(3000) < 1 / (1 + np.exp(-true_logit))).astype(float)
    model = 1 / (1 + np.exp(-(true_logit - offsets[patterns])))
    return {"rectifiers": {"icu_90d": PatternRectifier(3).fit(patterns, model, labels, "external").to_dict()}}


def test_a_kept_pattern_correction_is_shown_per_pattern_in_words():
    offsets = np.zeros(8)
    offsets[[1, 3, 5, 7]] = [0.0, 0.8, -0.6, -0.8]
    calibration = _calibration(offsets)
    sentence, detail, per_pattern = rectifier_summary(calibration, "icu_90d")
    assert per_pattern and "offset" in sentence and "3,000 held-out patients" in sentence
    assert "cross-validated log loss" in detail
    rows = rectifier_table(calibration, "icu_90d", ["structured", "cxr", "discharge_note"], {"3": 40})
    assert [r["held-out patients"] for r in rows] == sorted((r["held-out patients"] for r in rows), reverse=True)
    assert sum(r["held-out patients"] for r in rows) == 3000
    assert any(r["own correction kept"] == "yes" for r in rows)


def test_no_correction_needs_no_table():
    sentence, _, per_pattern = rectifier_summary(_calibration(np.zeros(8)), "icu_90d")
    assert not per_pattern and sentence.startswith("Site correction used: none")
