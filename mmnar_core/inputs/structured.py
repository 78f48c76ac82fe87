"""Structured values for one patient from a form, a CSV file or a JSON file -> StructuredInput.

Every value goes through `parse_value`: not-measured markers, numbers (also numeric strings and
"101.3 °F" with a unit), categories (case and spacing forgiven), 0/1 flags, unit conversion to the
feature's own unit (with a note), and the plausible-range check (with a wrong-unit hint). A parser
reports every bad field at once (InputErrors) and keeps the valid values in `InputErrors.partial`.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import numbers
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmnar_core.inputs.errors import ErrorCollector, InputError, InputErrors
from mmnar_core.inputs.files import decode_utf8
from mmnar_core.inputs.units import (
    UnitError,
    accepted_units,
    conversions,
    fmt,
    likely_unit,
    to_feature_unit,
    unit_class,
    unit_hint,
    unit_list,
    with_unit,
)
from mmnar_core.schema import FeatureKind, FeatureSpec

# strings that mean "not measured" (compared lower-cased, stripped)
MISSING_MARKERS = frozenset({"", "na", "n/a", "nan", "null", "none", "not measured", "missing"})
BINARY_WORDS = {"1": 1.0, "true": 1.0, "yes": 1.0, "y": 1.0, "0": 0.0, "false": 0.0, "no": 0.0, "n": 0.0}
# other spellings of categories, per feature (after lower-casing; spaces and '-' become '_')
CATEGORY_ALIASES: dict[str, dict[str, str]] = {
    "sex": {"f": "female", "m": "male", "woman": "female", "man": "male"},
    "discharge_disposition": {
        "home_health": "home_with_services",
        "snf": "skilled_nursing",
        "home_with_home_health": "home_with_services",
    },
}
_NUMBER = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*(.*?)$")  # ASCII digits only
SOURCES = ("form", "csv", "json", "fhir")


@dataclass
class StructuredInput:
    """Validated structured values: every feature of the model is a key (None = not measured); numbers
    are in the feature's own unit; `notes` say what was converted or derived."""

    values: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    source: str = "form"

    @property
    def measured(self) -> list[str]:
        return [name for name, value in self.values.items() if value is not None]

    def to_dict(self) -> dict:
        return {"values": dict(self.values), "notes": list(self.notes), "source": self.source}


# ------------------------------------------------------------------------------------------- one value
def accepted_text(feature: FeatureSpec) -> str:
    """What a value of `feature` may be, for error messages."""
    if feature.kind is FeatureKind.CATEGORICAL:
        assert feature.categories is not None, "FeatureSpec checks that a categorical feature has categories"
        other = "; another value is treated as unknown" if feature.accepts_unknown else ""
        return f"one of: {', '.join(feature.categories)}{other}; empty = not measured"
    if feature.kind is FeatureKind.BINARY:
        return "0 or 1 (also yes/no, true/false); empty = not measured"
    if feature.valid_range is not None:
        low, high = feature.valid_range
        text = f"a number from {fmt(low)} to {fmt(high)}{_unit_text(feature)}"
    else:
        text = "a number" + (f" in {feature.unit}" if _unit_text(feature) else "")
    if unit_class(feature.unit) == "count":
        text = text.replace("a number", "a whole number", 1)
    others = list(conversions(feature))
    if others:
        text += f", or a value with its unit written after it (converted: {unit_list(others)})"
    return text + "; empty = not measured"


def parse_value(
    feature: FeatureSpec, raw: Any, where: str | None = None, unit: str | None = None, origin: str | None = None
) -> tuple[Any, str | None]:
    """(value in canonical form or None, a note or None); raises InputError naming `where`.

    `raw` may be None, a number, a string ("38.5", "101.3 °F", "female") or {"value": v, "unit": u}.
    `origin` describes the value's source in notes (e.g. "Observation obs-1")."""
    where = where or feature.name
    accepted = accepted_text(feature)
    if isinstance(raw, Mapping):
        extra = sorted(set(map(str, raw)) - {"value", "unit"})
        if extra:
            raise InputError(
                where, f"an object with key(s) {extra}", 'a value, or {"value": v, "unit": "u"}', feature.name
            )
        if "value" not in raw:
            raise InputError(where, 'an object without a "value" key', '{"value": v, "unit": "u"}', feature.name)
        unit = raw.get("unit") if raw.get("unit") not in (None, "") else unit
        raw = raw["value"]
    if raw is None:
        return None, None
    if isinstance(raw, float) and math.isnan(raw):
        return None, None
    if isinstance(raw, str) and raw.strip().lower() in MISSING_MARKERS:
        return None, None
    if feature.kind is FeatureKind.CATEGORICAL:
        return _category(feature, raw, where, accepted, unit)
    if feature.kind is FeatureKind.BINARY:
        return _binary(feature, raw, where, accepted, unit), None
    number, text_unit = _number(feature, raw, where, accepted)
    if text_unit:
        if unit and unit_class(unit) != unit_class(text_unit):
            raise InputError(
                where,
                f"two different units: {text_unit!r} with the value and {unit!r} given separately",
                accepted,
                feature.name,
            )
        unit = text_unit
    try:
        value, converted_from = to_feature_unit(feature, number, unit)
    except UnitError:
        raise InputError(
            where,
            f"unit {unit!r} is not accepted for {feature.name}",
            f"{unit_list(accepted_units(feature)) or 'no unit'} (other units are converted to {feature.unit})"
            if feature.unit
            else "no unit",
            feature.name,
        ) from None
    shown = with_unit(number, converted_from) if converted_from else None
    if feature.valid_range is not None:
        low, high = feature.valid_range
        if not low <= value <= high:
            unit_text = _unit_text(feature)
            example = None  # the number written with the unit it likely has, when none was given
            if shown:
                problem = f"{shown} = {fmt(value)}{unit_text} is outside the plausible range {fmt(low)}-{fmt(high)}{unit_text}"
                if low <= number <= high:
                    problem += f" ({fmt(number)}{unit_text} would be plausible: is the unit right?)"
            else:
                problem = f"{fmt(value)}{unit_text if unit else ''} is outside the plausible range {fmt(low)}-{fmt(high)}{unit_text}"
                guess = likely_unit(feature, value) if not unit else None
                if guess:
                    problem += f"; it {unit_hint(feature, value)}"
                    if guess[0] != "1":
                        example = f"{fmt(value)} {guess[0]}"
            raise InputError(where, problem, accepted, feature.name, unit_example=example)
    if unit_class(feature.unit) == "count" and value != int(value):
        raise InputError(
            where,
            f"{fmt(value)} is not a whole number (it counts {feature.description.lower() or 'items'})",
            accepted,
            feature.name,
        )
    note = None
    if shown:
        note = f"{feature.name}: {shown} converted to {fmt(value)} {feature.unit}" + (f" ({origin})" if origin else "")
    return value, note


def _unit_text(feature: FeatureSpec) -> str:
    return f" {feature.unit}" if feature.unit and unit_class(feature.unit) != "count" else ""


def _show(raw: Any) -> str:
    """A user's value for a message: short, and never a 4,000-digit integer (whose repr Python refuses)."""
    if isinstance(raw, int) and not isinstance(raw, bool) and raw.bit_length() > 64:
        return f"a {'negative ' if raw < 0 else ''}number of about {int(raw.bit_length() * 0.30103):,} digits"
    if isinstance(raw, str):
        return repr(raw) if len(raw) <= 60 else repr(raw[:57]) + "..."
    if isinstance(raw, (bool, int, float)) or raw is None:
        return repr(raw)
    return f"a {type(raw).__name__}"


def _number(feature: FeatureSpec, raw: Any, where: str, accepted: str) -> tuple[float, str | None]:
    if isinstance(raw, bool):
        raise InputError(where, f"{raw} is a yes/no value, not a number", accepted, feature.name)
    if isinstance(raw, numbers.Real):
        try:
            number = float(raw)
        except OverflowError:  # an integer beyond the float range (JSON allows any number of digits)
            raise InputError(where, f"{_show(raw)} is too large to be a number", accepted, feature.name) from None
        if not math.isfinite(number):
            raise InputError(where, f"{raw} is not a finite number", accepted, feature.name)
        return number, None
    if not isinstance(raw, str):
        raise InputError(where, f"a {type(raw).__name__} is not a number", accepted, feature.name)
    text = raw.strip().replace("\u2212", "-")
    if text[:1] in "<>≤≥":
        raise InputError(
            where,
            f"{raw!r} is a censored value (below / above a detection limit)",
            "the number itself, e.g. 0.5 for '<0.5'; " + accepted,
            feature.name,
        )
    other = next((c for c in text if c.isdigit() and c not in "0123456789"), None)
    if other is not None:  # float() reads '٣٨' and '３８', but a lab value written so is likely pasted wrongly
        raise InputError(
            where,
            f"{raw!r} has a digit that is not 0-9 ({other!r}, {unicodedata.name(other, 'a non-ASCII digit')})",
            "a number written with the digits 0-9; " + accepted,
            feature.name,
        )
    if re.match(r"^[+-]?[0-9]+,[0-9]", text):
        raise InputError(
            where,
            f"{raw!r} has a comma",
            "a decimal point and no thousands separator (e.g. 38.5 or 1200); " + accepted,
            feature.name,
        )
    match = _NUMBER.match(text)
    if not match:
        raise InputError(where, f"{raw!r} is not a number", accepted, feature.name)
    number = float(match.group(1))
    if not math.isfinite(number):
        raise InputError(where, f"{raw!r} is not a finite number", accepted, feature.name)
    return number, (match.group(2).strip() or None)


def _category(feature: FeatureSpec, raw: Any, where: str, accepted: str, unit: str | None) -> tuple[str, str | None]:
    """(category, None); or, for a feature that accepts unknown values, (the value as given, a note)."""
    if unit:
        raise InputError(where, f"a unit ({unit!r}) was given for a category", accepted, feature.name)
    if isinstance(raw, bool) or not isinstance(raw, str):
        raise InputError(where, f"{_show(raw)} is not a category", accepted, feature.name)
    categories = feature.categories
    assert categories is not None, "FeatureSpec checks that a categorical feature has categories"
    key = re.sub(r"[\s\-]+", "_", raw.strip().lower())
    by_key = {re.sub(r"[\s\-]+", "_", c.lower()): c for c in categories}
    if key in by_key:
        return by_key[key], None
    alias = CATEGORY_ALIASES.get(feature.name, {}).get(key)
    if alias in categories:
        return alias, None
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.6)
    suggestion = f" (did you mean {by_key[close[0]]!r}?)" if close else ""
    if feature.accepts_unknown and raw.strip():
        return raw.strip(), (
            f"{feature.name}: {raw.strip()!r} is not a category the model was trained on; treated as "
            f"unknown{suggestion}"
        )
    raise InputError(where, f"{raw!r} is not a category of {feature.name}{suggestion}", accepted, feature.name)


def _binary(feature: FeatureSpec, raw: Any, where: str, accepted: str, unit: str | None) -> float:
    if isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, numbers.Real) and raw in (0, 1):  # no float(): a huge integer would overflow
        return float(raw)
    if isinstance(raw, str) and raw.strip().lower() in BINARY_WORDS:
        return BINARY_WORDS[raw.strip().lower()]
    raise InputError(where, f"{_show(raw)} is not a 0/1 value", accepted, feature.name)


# ------------------------------------------------------------------------------------------- form
def _feature_index(features: Sequence[FeatureSpec]) -> dict[str, FeatureSpec]:
    if not features:
        raise ValueError("no features: pass the model's features (Predictor.features)")
    return {f.name: f for f in features}


def _name_for_message(name) -> str:
    """A column or key name as the message shows it; a long, sentence-like one (a note pasted into a CSV)
    is described instead of repeated, so an error message never echoes note text."""
    text = str(name)
    if len(text) > 40 or len(text.split()) > 3:
        return f"(a {len(text)}-character name that looks like text, not repeated here)"
    return repr(text)


def _unknown(where: str, names: Sequence[str], known: Sequence[str], what: str = "feature") -> InputError:
    hints = []
    for name in names:
        key = str(name).strip().lower()
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
        close = close or [k for k in known if len(key) >= 3 and k.startswith(key)][:1]
        if close:
            hints.append(f"{close[0]} for {str(name)!r}")
    problem = f"unknown {what}{'s' if len(names) > 1 else ''}: {', '.join(_name_for_message(n) for n in names)}"
    if hints:
        problem += f" (did you mean {', '.join(hints)}?)"
    return InputError(where, problem, f"the model's feature names: {', '.join(known)}")


def parse_structured_form(values: Mapping[str, Any], features: Sequence[FeatureSpec]) -> StructuredInput:
    """A form's {feature: value}; a missing key, None or "" = not measured. Raises InputErrors listing
    every bad field (`partial` keeps the valid ones)."""
    index = _feature_index(features)
    if not isinstance(values, Mapping):
        raise InputErrors(
            [
                InputError(
                    "form",
                    f"expected a mapping of feature -> value, got {type(values).__name__}",
                    "{feature name: value}",
                )
            ]
        )
    errors = ErrorCollector()
    unknown = [k for k in values if k not in index]
    if unknown:
        errors.errors.append(_unknown("form", unknown, list(index)))
    out: dict[str, Any] = {}
    notes: list[str] = []
    for name, feature in index.items():
        try:
            value, note = parse_value(feature, values.get(name), where=name)
        except InputError as error:
            errors.errors.append(error)
            value, note = None, None
        out[name] = value
        if note:
            notes.append(note)
    result = StructuredInput(out, notes, "form")
    errors.raise_if_any(result)
    return result


# ------------------------------------------------------------------------------------------- CSV
CSV_ACCEPTED = (
    "UTF-8 CSV in one of two layouts: wide = a header row of feature names and exactly one data "
    "row (empty cell = not measured); long = columns feature,value[,unit] with one row per feature"
)


def parse_structured_csv(data: bytes, features: Sequence[FeatureSpec], filename: str = "upload.csv") -> StructuredInput:
    index = _feature_index(features)
    text = _decode(data, filename, CSV_ACCEPTED)
    stripped = text.lstrip()
    if stripped[:1] in "{[":
        raise InputErrors(
            [InputError(filename, "this looks like JSON, not CSV", "a .json upload for JSON; " + CSV_ACCEPTED)]
        )
    delimiter = _delimiter(text)
    try:
        rows = []
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        for cells in reader:
            cells = [c.strip() for c in cells]
            if any(cells):
                rows.append((reader.line_num, cells))
    except csv.Error as error:
        raise InputErrors(
            [InputError(f"{filename} line {reader.line_num}", f"not valid CSV ({error})", CSV_ACCEPTED)]
        ) from None
    if not rows:
        raise InputErrors([InputError(filename, "the file has no rows", CSV_ACCEPTED)])
    header = rows[0][1]
    lowered = [h.lower() for h in header]
    if "feature" in lowered and "value" in lowered:
        return _csv_long(filename, rows, lowered, index)
    if len(header) == 1 and header[0] not in index:
        raise InputErrors(
            [
                InputError(
                    filename,
                    f"not a CSV table: the first line ({len(header[0])} characters, "
                    "not repeated here: it may be a note) has no comma, semicolon or tab and is "
                    "not a feature name",
                    CSV_ACCEPTED,
                )
            ]
        )
    return _csv_wide(filename, rows, header, index)


def _delimiter(text: str) -> str:
    first = text.lstrip("\r\n").split("\n", 1)[0]
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=counts.__getitem__)
    return best if counts[best] else ","


def _csv_wide(filename: str, rows, header: list[str], index: dict[str, FeatureSpec]) -> StructuredInput:
    errors = ErrorCollector()
    where = f"{filename} header (line {rows[0][0]})"
    names = list(index)
    blank = [i + 1 for i, h in enumerate(header) if not h]
    if blank:
        errors.add(where, f"column(s) {blank} have no name", "a feature name in every header cell")
    seen, duplicates = set(), []
    for h in header:
        if h and h in seen and h not in duplicates:
            duplicates.append(h)
        seen.add(h)
    if duplicates:
        errors.add(where, f"duplicate column(s): {', '.join(duplicates)}", "each feature once")
    unknown = [h for h in header if h and h not in index]
    if unknown:
        errors.errors.append(_unknown(where, unknown, names, "column"))
    missing = [n for n in names if n not in header]
    if missing:
        errors.add(
            where,
            f"missing column(s): {', '.join(missing)}",
            "a column for every feature of the model; to say 'not measured', keep the column and leave the cell empty",
        )
    data = rows[1:]
    values = {name: None for name in names}
    notes: list[str] = []
    if not data:
        errors.add(filename, "the file has a header but no data row", "exactly one data row (one patient)")
    elif len(data) > 1:
        lines = ", ".join(str(line) for line, _ in data[:10]) + (", ..." if len(data) > 10 else "")
        errors.add(
            filename,
            f"{len(data)} data rows (lines {lines}); a file holds one patient",
            "exactly one data row below the header (use the long layout feature,value,unit for one row per feature)",
        )
    else:
        line, cells = data[0]
        if len(cells) != len(header):
            errors.add(
                f"{filename} line {line}",
                f"{len(cells)} cells but the header has {len(header)} columns",
                "one cell per header column (empty cell = not measured)",
            )
        for column, name in enumerate(header):
            if name not in index or name in duplicates or column >= len(cells):
                continue
            try:
                values[name], note = parse_value(index[name], cells[column], where=f"{filename} line {line}, {name}")
            except InputError as error:
                errors.errors.append(error)
                continue
            if note:
                notes.append(note)
    result = StructuredInput(values, notes, "csv")
    errors.raise_if_any(result)
    return result


def _csv_long(filename: str, rows, lowered: list[str], index: dict[str, FeatureSpec]) -> StructuredInput:
    errors = ErrorCollector()
    where = f"{filename} header (line {rows[0][0]})"
    extra = [h for h in lowered if h not in ("feature", "value", "unit")]
    accepted = "columns feature,value and optionally unit (long layout), one row per feature"
    if extra or len(set(lowered)) != len(lowered):
        raise InputErrors([InputError(where, f"unexpected column(s) {extra or lowered} in the long layout", accepted)])
    col = {name: lowered.index(name) for name in ("feature", "value", "unit") if name in lowered}
    values: dict[str, Any] = {name: None for name in index}
    notes: list[str] = []
    first_line: dict[str, int] = {}
    unknown: list[tuple[int, str]] = []
    if len(rows) == 1:
        errors.add(filename, "the file has a header but no data rows", accepted)
    for line, cells in rows[1:]:
        if len(cells) > len(lowered):
            errors.add(
                f"{filename} line {line}", f"{len(cells)} cells but the header has {len(lowered)} columns", accepted
            )
            continue
        cells = cells + [""] * (len(lowered) - len(cells))
        name = cells[col["feature"]]
        if not name:
            errors.add(f"{filename} line {line}", "the feature cell is empty", "a feature name")
            continue
        if name not in index:
            unknown.append((line, name))
            continue
        if name in first_line:
            errors.add(
                f"{filename} line {line}",
                f"{name} appears again (first on line {first_line[name]})",
                "each feature at most once",
                name,
            )
            continue
        first_line[name] = line
        unit = cells[col["unit"]] if "unit" in col else None
        try:
            values[name], note = parse_value(
                index[name], cells[col["value"]], where=f"{filename} line {line}, {name}", unit=unit or None
            )
        except InputError as error:
            errors.errors.append(error)
            continue
        if note:
            notes.append(note)
    if unknown:
        unknown_error = _unknown(filename, [n for _, n in unknown], list(index))
        lines = ", ".join(str(line) for line, _ in unknown)
        errors.errors.append(
            InputError(
                filename, f"{unknown_error.problem} on line(s) {lines}", unknown_error.accepted, kind=unknown_error.kind
            )
        )
    result = StructuredInput(values, notes, "csv")
    errors.raise_if_any(result)
    return result


# ------------------------------------------------------------------------------------------- JSON
JSON_ACCEPTED = (
    'a UTF-8 JSON object {"feature": value} or {"feature": {"value": v, "unit": "u"}}; null or '
    "a missing key = not measured"
)


def parse_structured_json(
    data: bytes, features: Sequence[FeatureSpec], filename: str = "upload.json"
) -> StructuredInput:
    return structured_from_json_object(load_json(data, filename, JSON_ACCEPTED), features, filename)


def structured_from_json_object(obj, features: Sequence[FeatureSpec], filename: str) -> StructuredInput:
    """A parsed JSON value as a feature object (the file is decoded and parsed once, by the caller)."""
    index = _feature_index(features)
    if isinstance(obj, list):
        raise InputErrors(
            [
                InputError(
                    filename,
                    f"the top level is a list of {len(obj)} item(s)",
                    "one object for one patient: " + JSON_ACCEPTED,
                )
            ]
        )
    if not isinstance(obj, dict):
        raise InputErrors([InputError(filename, f"the top level is a {type(obj).__name__}", JSON_ACCEPTED)])
    if "resourceType" in obj:
        raise InputErrors(
            [
                InputError(
                    filename,
                    f"this is a FHIR resource (resourceType {obj['resourceType']!r}), not a feature object",
                    "a FHIR R4 Bundle through the FHIR upload, or " + JSON_ACCEPTED,
                )
            ]
        )
    errors = ErrorCollector()
    unknown = [k for k in obj if k not in index]
    if unknown:
        errors.errors.append(_unknown(filename, unknown, list(index)))
    values: dict[str, Any] = {}
    notes: list[str] = []
    for name, feature in index.items():
        try:
            values[name], note = parse_value(feature, obj.get(name), where=f"{filename} {name}")
        except InputError as error:
            errors.errors.append(error)
            values[name], note = None, None
        if note:
            notes.append(note)
    absent = [name for name in index if name not in obj]
    if absent and len(absent) < len(index):
        notes.append(f"not in the file, so not measured: {', '.join(absent)}")
    result = StructuredInput(values, notes, "json")
    errors.raise_if_any(result)
    return result


def _decode(data: bytes | str, where: str, accepted: str) -> str:
    try:
        return decode_utf8(data, where, accepted)
    except InputError as error:
        raise InputErrors([error]) from None


def load_json(data: bytes | str, where: str, accepted: str) -> Any:
    """Parsed JSON, or InputErrors naming the line and column of a syntax error."""
    text = _decode(data, where, accepted)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputErrors(
            [InputError(where, f"not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})", accepted)]
        ) from None
    except RecursionError:
        raise InputErrors([InputError(where, "the JSON is nested too deeply", accepted)]) from None
    except ValueError as error:  # not a syntax error: an integer over Python's 4,300-digit limit
        if "digits" not in str(error):
            raise
        raise InputErrors([InputError(where, "a number in the JSON has more than 4,300 digits", accepted)]) from None
