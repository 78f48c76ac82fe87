"""Words the app shows for the model's names, in one place."""

from __future__ import annotations

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
