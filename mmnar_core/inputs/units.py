"""Units of structured values: spellings, conversions to each feature's own unit, and hints for values
that look like they were entered in another unit. Everything is a table (data); the functions only
look things up.

A unit string is first normalised to a *unit class* (UNIT_SPELLINGS: "Cel", "degC", "°C" -> "°C";
"/min", "bpm", "beats/min" -> "/min"). A feature's own unit (FeatureSpec.unit) is normalised the same
way, so different spellings of the same unit never need a conversion. A different unit class is
converted with value_in_feature_unit = value * scale + offset, looked up first in the analyte-specific
table (molar masses: creatinine, lactate, hemoglobin, NT-proBNP), then in the generic one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from mmnar_core.schema import FeatureSpec

# unit class -> spellings (compared after lower-casing and removing spaces; UCUM codes included)
UNIT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "°C": ("°c", "cel", "c", "degc", "deg.c", "celsius", "degreescelsius", "℃", "ºc"),
    "°F": ("°f", "[degf]", "f", "degf", "deg.f", "fahrenheit", "degreesfahrenheit", "℉", "ºf"),
    "K": ("k", "kelvin"),
    "/min": (
        "/min",
        "1/min",
        "{beats}/min",
        "{beat}/min",
        "beats/min",
        "beat/min",
        "bpm",
        "{breaths}/min",
        "{breath}/min",
        "breaths/min",
        "breath/min",
        "min-1",
        "/minute",
        "perminute",
    ),
    "%": ("%", "percent", "pct", "{percent}"),
    "1": ("1", "{ratio}", "ratio", "fraction", "{fraction}"),
    "mmHg": ("mmhg", "mm[hg]", "mmofhg", "torr"),
    "kPa": ("kpa",),
    "10^9/L": (
        "k/ul",
        "k/µl",
        "10*3/ul",
        "10*3/µl",
        "10^3/ul",
        "10^3/µl",
        "x10^3/ul",
        "x10^3/µl",
        "10³/µl",
        "10³/ul",
        "10*9/l",
        "10^9/l",
        "x10^9/l",
        "10⁹/l",
        "/nl",
        "thou/ul",
        "k/mm3",
        "10*3/mm3",
        "10^3/mm3",
        "10³/mm³",
        "k/mm³",
    ),
    "/uL": (
        "/ul",
        "/µl",
        "cells/ul",
        "cells/µl",
        "{cells}/ul",
        "{cells}/µl",
        "/mm3",
        "/mm³",
        "cells/mm3",
        "1/ul",
        "1/µl",
        "10*6/l",
        "10^6/l",
    ),
    "g/dL": ("g/dl",),
    "g/L": ("g/l",),
    "mg/dL": ("mg/dl",),
    "mg/L": ("mg/l",),
    "mmol/L": ("mmol/l", "mmol/litre", "mmol/liter"),
    "mEq/L": ("meq/l", "meq/litre", "meq/liter"),
    "µmol/L": ("µmol/l", "umol/l", "micromol/l", "µmol/litre", "umol/litre"),
    "pg/mL": ("pg/ml",),
    "ng/L": ("ng/l",),
    "ng/mL": ("ng/ml",),
    "pmol/L": ("pmol/l",),
    "years": ("years", "year", "yr", "yrs", "y", "a", "{years}"),
    "months": ("months", "month", "mo", "mos"),
    "days": ("days", "day", "d"),
    "hours": ("hours", "hour", "h", "hr", "hrs"),
    "weeks": ("weeks", "week", "wk", "wks"),
    "count": ("count", "{count}", "#", "n", "number", "{#}"),
}

# feature unit class -> {other unit class: (scale, offset)}; value in the feature's unit = v * scale + offset
GENERIC_CONVERSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "°C": {"°F": (5.0 / 9.0, -160.0 / 9.0), "K": (1.0, -273.15)},
    "%": {"1": (100.0, 0.0)},
    "mmHg": {"kPa": (7.500617, 0.0)},
    "10^9/L": {"/uL": (0.001, 0.0)},
    "g/dL": {"g/L": (0.1, 0.0), "mg/dL": (0.001, 0.0)},
    "mg/dL": {"mg/L": (0.1, 0.0)},
    "mEq/L": {"mmol/L": (1.0, 0.0)},  # monovalent ions (sodium, potassium, chloride)
    "mmol/L": {"mEq/L": (1.0, 0.0)},
    "pg/mL": {"ng/L": (1.0, 0.0), "ng/mL": (1000.0, 0.0)},
    "years": {"months": (1.0 / 12.0, 0.0)},
    "days": {"hours": (1.0 / 24.0, 0.0), "weeks": (7.0, 0.0)},
}
# unit classes that mean the same for a feature of the first class (a count written as UCUM "1")
SAME_UNIT: dict[str, frozenset[str]] = {"count": frozenset({"1"})}

# analyte (feature name without a _max / _min / _mean suffix) -> {unit class: (scale, offset)}; these
# depend on the molar mass and are tried before the generic table
ANALYTE_CONVERSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "creatinine": {"µmol/L": (1.0 / 88.42, 0.0), "mmol/L": (1000.0 / 88.42, 0.0)},  # 113.12 g/mol
    "lactate": {"mg/dL": (1.0 / 9.008, 0.0)},  # 90.08 g/mol; mmol/L is the feature unit
    "hemoglobin": {"mmol/L": (1.6114, 0.0)},  # Hb monomer 16,114 g/mol: 1 mmol/L = 1.6114 g/dL
    "nt_probnp": {"pmol/L": (8.457, 0.0)},  # NT-proBNP 8.457 kDa
}

_SPELLING_TO_CLASS = {spelling: cls for cls, spellings in UNIT_SPELLINGS.items() for spelling in spellings}
_SUFFIX = re.compile(r"_(max|min|mean|first|last|median)$")


def unit_class(unit: str | None) -> str | None:
    """The unit class of a spelling ('Cel' -> '°C'), or None if unknown."""
    if unit is None:
        return None
    key = re.sub(r"\s+", "", str(unit)).lower().replace("\u03bc", "\u00b5").replace("\u00b0", "°")
    if key in _SPELLING_TO_CLASS:
        return _SPELLING_TO_CLASS[key]
    return _SPELLING_TO_CLASS.get(key.replace("°", "").replace("º", ""))


def analyte(feature: FeatureSpec | str) -> str:
    name = feature.name if isinstance(feature, FeatureSpec) else feature
    return _SUFFIX.sub("", name)


def conversions(feature: FeatureSpec) -> dict[str, tuple[float, float]]:
    """Unit class -> (scale, offset) accepted for `feature` besides its own unit (analyte-specific first)."""
    own = unit_class(feature.unit)
    table = dict(ANALYTE_CONVERSIONS.get(analyte(feature), {}))
    for other, factor in GENERIC_CONVERSIONS.get(own or "", {}).items():
        table.setdefault(other, factor)
    if own is not None:
        table.pop(own, None)
    return table


def accepted_units(feature: FeatureSpec) -> list[str]:
    """The feature's own unit first, then the units it can be converted from."""
    units = [feature.unit] if feature.unit else []
    return units + [u for u in conversions(feature) if u not in units]


class UnitError(ValueError):
    """A unit that is not accepted for a feature (the caller turns it into an InputError)."""


def to_feature_unit(feature: FeatureSpec, value: float, unit: str | None) -> tuple[float, str | None]:
    """(value in the feature's unit, the unit class converted from or None when no conversion changed
    the number). `unit` None or '' means the feature's own unit."""
    if unit is None or str(unit).strip() == "":
        return value, None
    own = unit_class(feature.unit)
    given = unit_class(unit)
    if feature.unit is None:
        raise UnitError(f"has no unit, but {unit!r} was given")
    if given is not None and (given == own or given in SAME_UNIT.get(own or "", ())):
        return value, None
    table = conversions(feature)
    if given is None or given not in table:
        raise UnitError(f"unit {unit!r} is not known for {feature.name}")
    scale, offset = table[given]
    converted = _round(value * scale + offset)
    return converted, (given if converted != value else None)


def likely_unit(feature: FeatureSpec, value: float) -> tuple[str, float] | None:
    """(unit class, value converted to the feature's unit) for an out-of-range value that would be in
    range in another accepted unit; the most common alternative comes first in the tables, so it wins
    when several fit. None when the value is in range or no other unit fits."""
    if feature.valid_range is None or feature.unit is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    low, high = feature.valid_range
    if not math.isfinite(value) or low <= value <= high:
        return None
    for other, (scale, offset) in conversions(feature).items():
        converted = value * scale + offset
        if low <= converted <= high and (scale, offset) != (1.0, 0.0):
            return other, converted
    return None


def unit_hint(feature: FeatureSpec, value: float) -> str | None:
    """For a value outside the feature's range that looks like another unit, a hint such as
    "looks like °F (101.3 °F = 38.5 °C); enter °C"; None otherwise."""
    guess = likely_unit(feature, value)
    if guess is None:
        return None
    other, converted = guess
    return (
        f"looks like {describe_unit(other)} ({with_unit(float(value), other)} = {fmt(converted)} {feature.unit}); "
        f"enter {feature.unit}"
    )


def describe_unit(unit: str) -> str:
    return "a fraction (0-1)" if unit == "1" else unit


def with_unit(value: float, unit: str | None) -> str:
    """'101.3 °F'; a fraction (unit '1') is shown as 'the fraction 0.95'."""
    if unit == "1":
        return f"the fraction {fmt(value)}"
    return f"{fmt(value)} {unit}" if unit else fmt(value)


def fmt(value: float) -> str:
    """A number for messages: up to 4 significant digits, no trailing zeros, no exponent for normal values."""
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    digits = max(0, 3 - magnitude)
    text = f"{value:.{digits}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _round(value: float) -> float:
    """6 significant digits: hides floating-point noise (38.500000000000007) and keeps real precision."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, 5 - int(math.floor(math.log10(abs(value)))))


def unit_list(units: Iterable[str]) -> str:
    return ", ".join(describe_unit(u) for u in units)
