"""The words a clinician reads for the model's names and numbers, in one place (the library's summary card,
the app, the exports and the model server all say the same thing)."""

from __future__ import annotations

import re

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


UNITLESS = {"count", "n", "number", "1"}  # dataset units that are not written after a value


def number(value: float, unit: str | None = None) -> str:
    """A measured value as a clinician writes it: up to 3 significant figures, no trailing zeros, its unit
    ("count" is no unit: 3 medications read "3", not "3 count")."""
    if unit and unit.strip().lower() in UNITLESS:
        unit = None
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if "e" in text:
        text = f"{value:.2f}"
    return f"{text} {unit}" if unit else text


def method_name(method: str) -> str:
    """An attribution method's Captum name in words: "LayerIntegratedGradients (...)" -> "Layer Integrated
    Gradients (...)", "+" -> " and ", "LayerGradCam" -> "Grad-CAM"."""
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", method).replace("Layer Grad Cam", "Grad-CAM")
    return words.replace("+", " and ")
