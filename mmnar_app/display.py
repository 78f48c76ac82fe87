"""Words the app shows for the model's names, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmnar_core.plain_words import (  # re-exported: the app's pages import them from here
    MODALITY_NAMES,
    TASK_NAMES,
    method_name,
    modality_name,
    pattern_name,
    percent,
    signed_points,
    task_name,
)

if TYPE_CHECKING:
    from mmnar_core.explain.explanation import Explanation
    from mmnar_core.results import OrderingSplit, WhatIfResult

__all__ = [
    "CONTRIBUTIONS_EXPLAINED",
    "ORDERING_EXPLAINED",
    "MODALITY_NAMES",
    "TASK_NAMES",
    "contribution_rows",
    "feature_names",
    "method_name",
    "modality_name",
    "ordering_rows",
    "phrase_rows",
    "pattern_name",
    "percent",
    "signed_points",
    "task_name",
]


def feature_names(explanation: Explanation) -> dict[str, str]:
    """Structured features in words (from the explanation's facts; {} for one saved before them)."""
    return {} if explanation.facts is None else dict(explanation.facts.feature_names)


def contribution_rows(what_if: WhatIfResult, task: str) -> list[dict[str, str]]:
    """Per available optional modality, in percentage points: its Shapley value, and what it adds on top of all
    the others (what removing it alone would take away: the what-if toggles show that change with its sign)."""
    removal = what_if.removal_effects()
    return [
        {
            "modality": modality_name(m),
            "Shapley value": signed_points(what_if.shapley[m][task]),
            "added on top of all the others": signed_points(removal[m][task]),
        }
        for m in what_if.shapley
    ]


CONTRIBUTIONS_EXPLAINED = (
    "Why the two columns can differ: 'added on top of all the others' is what removing that modality alone "
    "would take away, so what another modality also shows is not credited to it; the Shapley value averages "
    "what it adds over every order in which the modalities could be added, so information they share is "
    "split between them. Both are changes of the risk in percentage points."
)


ASSERTIONS = {"affirmed": "", "negated": "negated", "hedged": "uncertain"}


def phrase_rows(text, task: str, k: int = 5) -> list[dict[str, str]]:
    """A note's k phrases whose deletion moves the risk most: the phrase on one line, whether the note negates
    or hedges it, and the change in percentage points."""
    rows = []
    for phrase in text.top_phrases(task, k):
        words = " ".join(phrase.text.split())
        rows.append(
            {
                "phrase": words if len(words) <= 120 else words[:119] + "…",
                "stated as": ASSERTIONS.get(phrase.assertion, phrase.assertion) or "present",
                "change of the risk": signed_points(phrase.attribution.get(task, 0.0)),
            }
        )
    return rows


def ordering_rows(ordering: OrderingSplit, task: str) -> list[dict[str, str]]:
    """Per modality, in percentage points: that it was obtained, what it shows, both; absent ones: missing."""
    rows = [
        {
            "modality": modality_name(p.modality),
            "it was obtained": signed_points(p.obtained[task]),
            "what it shows": signed_points(p.shows[task]),
            "both (Shapley value)": signed_points(p.total[task]),
            "it is missing": "",
        }
        for p in ordering.parts
    ]
    rows += [
        {
            "modality": modality_name(m.modality),
            "it was obtained": "",
            "what it shows": "",
            "both (Shapley value)": "",
            "it is missing": signed_points(m.effect[task]),
        }
        for m in ordering.missing
    ]
    return rows


ORDERING_EXPLAINED = (
    "'It was obtained': how the risk moves because the modality is there at all, with content drawn from "
    "training patients (the signal in a clinician's decision to order it: missingness not at random). "
    "'What it shows': how this patient's own content moves the risk from there. The two add up to the "
    "modality's Shapley value. 'It is missing' (absent modalities): the risk now minus the risk had it been "
    "obtained with training content; it is already inside the risk, and it is not the value of obtaining it "
    "(below). Structured data was present for every training patient, so its 'obtained' part is measured "
    "against a record with no structured data at all, which the model never saw: read it with care."
)
