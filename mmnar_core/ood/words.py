"""The distribution check's reasons, in words a clinician reads at once: numbers as written on a chart,
features by their description, "more unusual than 99.7 % of training X-rays" rather than a score."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from mmnar_core.ood.image_stats import NAMES as STAT_NAMES
from mmnar_core.ood.image_stats import PERCENT as STAT_PERCENT
from mmnar_core.ood.image_stats import WORDS as STAT_WORDS
from mmnar_core.schema import FeatureSpec, ModalityKind


def number(value: float) -> str:
    """3 significant figures, no exponent, no trailing zeros, thousands separated: 0.3, 4.79, 70, 35,000."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    digits = max(0, 2 - int(math.floor(math.log10(abs(value)))))
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def label(feature: FeatureSpec) -> str:
    """A readable name: the description up to any bracket ("Creatinine (last)" -> "Creatinine"), else the
    name with spaces."""
    text = (feature.description or "").split(" (")[0].strip()
    return text if text and len(text) <= 48 else feature.name.replace("_", " ")


def in_sentence(text: str) -> str:
    """ "Length of the index stay" -> "length of the index stay"; "NT-proBNP" and "SpO2" stay as they are."""
    return text[0].lower() + text[1:] if len(text) > 1 and text[1].islower() else text


def join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def nouns(name: str, kind: str) -> tuple[str, str]:
    """("X-ray", "X-rays"): one input of a modality and several of them."""
    plain = name.replace("_", " ")
    if kind == ModalityKind.IMAGE.value:
        if any(token in name for token in ("cxr", "xray", "x_ray")):
            return "X-ray", "X-rays"
        return f"{plain} image", f"{plain} images"
    if kind == ModalityKind.TEXT.value:
        return plain, f"{plain}s"
    return ("structured values" if name == "structured" else f"{plain} values"), "patients"


def more_unusual(percentile: float | None, single: str, plural: str) -> str:
    """ "more unusual than every training X-ray" / "more unusual than 99.7 % of training X-rays"."""
    if percentile is None:
        return ""
    if percentile >= 100.0:
        return f"more unusual than every training {single}"
    return f"more unusual than {math.floor(percentile * 10) / 10:.1f} % of training {plural}"


def embedding_reason(single: str, plural: str, percentile: float | None) -> str:
    return (
        f"The {single} looks unlike the training {plural} to the model's encoder: "
        f"{more_unusual(percentile, single, plural)}."
    )


def picture_reason(single: str, plural: str, percentile: float | None, details: str) -> str:
    return (
        f"The picture of the {single} differs from the training {plural} (brightness, contrast, grain, edges, "
        f"shape), {more_unusual(percentile, single, plural)}; most different: {details}."
    )


def distance_reason(noun: str, percentile: float | None, features: Sequence[str]) -> str:
    return (
        f"The combination of {noun} is unusual, {more_unusual(percentile, 'patient', 'patients')}; "
        f"most of the difference comes from {join(list(features))}."
    )


def column_features(columns: Sequence[str], share: np.ndarray, labels: Mapping[str, str], top: int = 3) -> list[str]:
    """The features whose encoded columns carry most of a squared Mahalanobis distance, in words
    ("creatinine", "lactate (not recorded)", "sex with a category not in training")."""
    if not columns:
        return [f"column {i + 1}" for i in np.argsort(-share)[:top]]
    totals: dict[str, float] = {}
    for column, value in zip(columns, share):
        totals[column] = totals.get(column, 0.0) + float(value)
    words = []
    for column in sorted(totals, key=lambda c: -totals[c])[:top]:
        feature, _, level = column.partition("=")
        feature, _, missing = feature.partition(":")
        name = in_sentence(labels.get(feature, feature.replace("_", " ")))
        if missing or level == "<missing>":
            name += " (not recorded)"
        elif level == "<unknown>":
            name += " with a category not in training"
        elif level:
            name += f" ({level})"
        words.append(name)
    return words


def statistic_details(stats: np.ndarray, z: np.ndarray, reference: Mapping[str, list[float]], top: int = 3) -> str:
    """The image statistics farthest from the training X-rays, with their training 1st-99th percentiles."""
    low, high = np.asarray(reference["low"]), np.asarray(reference["high"])
    order = list(np.argsort(-np.abs(z)))
    chosen = [i for i in order if not low[i] <= stats[i] <= high[i]][:top] or order[:top]

    def shown(i: int, value: float) -> str:
        return f"{number(100 * value)} %" if STAT_NAMES[i] in STAT_PERCENT else number(value)

    return "; ".join(
        f"{STAT_WORDS[STAT_NAMES[i]]} {shown(i, float(stats[i]))} "
        f"(training {shown(i, float(low[i]))} to {shown(i, float(high[i]))})"
        for i in chosen
    )
