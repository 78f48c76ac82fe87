"""Words the app shows for the model's names, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmnar_core.results import WhatIfResult

MODALITY_NAMES = {
    "structured": "Structured EHR",
    "cxr": "Chest X-ray",
    "discharge_note": "Discharge summary",
    "radiology_report": "Radiology report",
}
TASK_NAMES = {
    "readmission_30d": "Readmission within 30 days",
    "icu_90d": "ICU admission within 90 days",
    "death_180d": "Death within 180 days",
}


def modality_name(name: str) -> str:
    return MODALITY_NAMES.get(name, name.replace("_", " ").capitalize())


def task_name(name: str) -> str:
    return TASK_NAMES.get(name, name.replace("_", " ").capitalize())


def pattern_name(modalities: list[str]) -> str:
    return " + ".join(modality_name(m) for m in modalities) if modalities else "nothing"


def percent(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f} %"


def signed_points(value: float, digits: int = 1) -> str:
    """A risk difference in percentage points, with its sign."""
    return f"{100 * value:+.{digits}f} pts"


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
