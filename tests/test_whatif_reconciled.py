"""The what-if's single-removal effect beside the Shapley value: by hand on planted subsets where two
modalities carry the same information (the two differ) and where they add independently (they agree)."""

from __future__ import annotations

import itertools

import pytest

from mmnar_core.results import SubsetRisks, WhatIfResult


def _what_if(risk_of) -> WhatIfResult:
    """structured always present; cxr and note optional; exact two-player Shapley values."""
    optional = ["cxr", "note"]
    subsets = []
    for k in range(3):
        for chosen in itertools.combinations(optional, k):
            mods = ["structured", *chosen]
            subsets.append(SubsetRisks(mods, len(subsets), {"death": risk_of(set(chosen))}))
    v = lambda s: risk_of(set(s))  # noqa: E731
    shapley = {
        "cxr": {"death": 0.5 * (v({"cxr"}) - v(set())) + 0.5 * (v({"cxr", "note"}) - v({"note"}))},
        "note": {"death": 0.5 * (v({"note"}) - v(set())) + 0.5 * (v({"cxr", "note"}) - v({"cxr"}))},
    }
    return WhatIfResult("p", ["death"], ["structured", "cxr", "note"], subsets, shapley)


def test_shared_information_splits_the_shapley_value_but_not_the_removal_effect():
    # the X-ray and the note both reveal the same finding: either one raises the risk from 10 % to 30 %
    what_if = _what_if(lambda s: 0.30 if s else 0.10)
    removal = what_if.removal_effects()
    assert what_if.shapley["cxr"]["death"] == pytest.approx(0.10)  # half of the shared 20 points each
    assert removal["cxr"]["death"] == pytest.approx(0.0)  # the note still shows it: removing the X-ray alone
    assert removal["note"]["death"] == pytest.approx(0.0)


def test_independent_modalities_get_the_same_credit_both_ways():
    what_if = _what_if(lambda s: 0.10 + 0.05 * ("cxr" in s) + 0.02 * ("note" in s))
    removal = what_if.removal_effects()
    for modality, points in (("cxr", 0.05), ("note", 0.02)):
        assert removal[modality]["death"] == pytest.approx(points)
        assert what_if.shapley[modality]["death"] == pytest.approx(points)
