"""Words the app shows for the model's names, in one place."""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    "LOWERS_RGB",
    "RAISES_RGB",
    "direction",
    "nice_step",
    "scenario_rows",
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


RAISES_RGB, LOWERS_RGB = (220, 38, 38), (37, 99, 235)  # one red and one blue for charts, heatmaps and notes


def nice_step(low: float, high: float, target: int = 5) -> float:
    """A round axis step (1, 2, 2.5 or 5 times a power of ten) giving about `target` ticks over [low, high]:
    the one rule of the app's plotly charts and the report's SVG charts."""
    raw = ((high - low) or 1.0) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude * (1 + 1e-9))


def direction(change: float) -> str:
    """A risk change's direction in words, so no chart or highlight tells it by colour alone."""
    return "raises" if change > 0 else "lowers" if change < 0 else "no change"


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


PHRASE_CHARS = 300  # a phrase's cell wraps (st.table, the report's tables): only a run-on paragraph is cut


def phrase_rows(text, task: str, k: int = 5) -> list[dict[str, str]]:
    """A note's k phrases whose deletion moves the risk most: the phrase on one line, whether the note negates
    or hedges it, and the change in percentage points."""
    rows = []
    for rank, phrase in enumerate(text.top_phrases(task, k), 1):  # the rank is the mark in the highlighted note
        words = " ".join(phrase.text.split())
        rows.append(
            {
                "rank": f"{rank}{'↑' if phrase.attribution.get(task, 0.0) > 0 else '↓'}",
                "phrase": words if len(words) <= PHRASE_CHARS else words[: PHRASE_CHARS - 1] + "…",
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


def scenario_rows(what_if: WhatIfResult, text_modalities: Sequence[str] = ()) -> list[dict[str, str]]:
    """What-if scenarios side by side, from subsets and estimates already computed (no model run): as recorded;
    without each available modality; without the notes (`text_modalities`, when two or more are there); the
    structured data only; each absent modality obtained (its estimated mean over plausible contents). Per
    outcome the risk in % and the change from the risk as recorded in percentage points."""
    full = what_if.full()
    present = list(full.modalities)
    scenarios: list[tuple[str, dict[str, float]]] = [(f"As recorded ({pattern_name(present)})", full.risks)]
    seen = {frozenset(present)}

    def add(label: str, keep: list[str]) -> None:
        if frozenset(keep) in seen or not keep:
            return
        seen.add(frozenset(keep))
        scenarios.append((label, what_if.subset(keep).risks))

    for m in present:
        add(f"Without the {modality_name(m)}", [x for x in present if x != m])
    notes = [m for m in present if m in text_modalities]
    if len(notes) >= 2:
        add("Without the notes", [m for m in present if m not in notes])
    if "structured" in present:
        add(f"{modality_name('structured')} only", ["structured"])
    for absent in what_if.absent:
        if absent.estimate is not None:
            scenarios.append((f"With the {modality_name(absent.modality)} obtained (estimate)", absent.estimate.mean))
    rows = []
    for label, risks in scenarios:
        row = {"scenario": label}
        for t in what_if.tasks:
            row[f"{task_name(t)}: risk"] = percent(risks[t])
            row[f"{task_name(t)}: change"] = "" if risks is full.risks else signed_points(risks[t] - full.risks[t])
        rows.append(row)
    return rows
