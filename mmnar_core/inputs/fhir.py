"""A FHIR R4 Bundle for one patient -> StructuredInput for the model's features.

Patient -> age, sex; Observation (LOINC, fhir_tables.LOINC_FEATURES) -> vitals (max / min over the
bundle) and labs (latest by effective time); MedicationRequest -> n_medications; Condition -> counted
in the notes; Encounter -> admission_type, length_of_stay, discharge_disposition (and
prior_admissions_12m when earlier inpatient Encounters are in the bundle). Every value goes through
the same checks as a form value (unit conversion, plausible range). Each problem names the entry
index, resource type and id; valid parts are kept (InputErrors.partial).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from mmnar_core.inputs.errors import ErrorCollector, InputError, InputErrors
from mmnar_core.inputs.fhir_tables import (
    ADMISSION_WORDS,
    COUNTED_MEDICATION_STATUS,
    DISCHARGE_DISPOSITION,
    DISCHARGE_WORDS,
    ENCOUNTER_ADMIT_SOURCE,
    ENCOUNTER_CLASS,
    ENCOUNTER_PRIORITY,
    INPATIENT_CLASSES,
    LOINC_FEATURES,
    LOINC_PANELS,
    LOINC_SYSTEM,
    PATIENT_GENDER,
    SKIPPED_OBSERVATION_STATUS,
)
from mmnar_core.inputs.structured import StructuredInput, _feature_index, load_json, parse_value
from mmnar_core.inputs.units import accepted_units, fmt, unit_class, unit_list
from mmnar_core.schema import FeatureSpec

FHIR_ACCEPTED = (
    "a FHIR R4 Bundle in JSON (resourceType 'Bundle', entry[].resource) with Patient, Observation "
    "(LOINC codes listed in docs/inputs.md), MedicationRequest, Condition and Encounter resources"
)
LOINC_SYSTEMS = frozenset({LOINC_SYSTEM, "urn:oid:2.16.840.1.113883.6.1"})
UCUM_SYSTEM = "http://unitsofmeasure.org"
VALUE_KEYS = (
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
)
# an Observation's time: the first of these present
OBSERVATION_TIMES = ("effectiveDateTime", "effectiveInstant", "effectivePeriod", "issued")
# re.ASCII: \d is 0-9 only, as FHIR's own regex says (int() would read Arabic-Indic or full-width digits)
_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$", re.ASCII)
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$", re.ASCII)


@dataclass
class _Reading:
    feature: str
    value: float
    time: datetime | None
    where: str
    order: int


@dataclass
class _Resource:
    index: int
    where: str
    resource: Mapping[str, Any]
    full_url: str | None


def parse_fhir_bundle(
    data: bytes | str | Mapping,
    features: Sequence[FeatureSpec],
    filename: str = "bundle.json",
    reference_time: datetime | None = None,
) -> StructuredInput:
    index = _feature_index(features)
    bundle = data if isinstance(data, Mapping) else load_json(data, filename, FHIR_ACCEPTED)
    _check_bundle(bundle, filename)
    errors = ErrorCollector()
    notes: list[str] = []
    resources = _resources(bundle, filename, errors)
    by_type: dict[str, list[_Resource]] = {}
    for item in resources:
        by_type.setdefault(item.resource["resourceType"], []).append(item)

    values: dict[str, Any] = {name: None for name in index}
    patient = _patient(by_type.get("Patient", []), filename, errors)
    refs = _patient_refs(patient)
    readings = _observations(by_type.get("Observation", []), index, refs, errors, notes)
    encounters = _encounters(by_type.get("Encounter", []), errors)

    times = [r.time for r in readings if r.time] + [t for e in encounters for t in (e[1], e[2]) if t]
    if reference_time is not None:
        ref = _aware(reference_time)
        ref_text = f"the given reference time {ref.date().isoformat()}"
    elif times:
        ref = max(times)
        ref_text = f"{ref.date().isoformat()} (the latest Observation / Encounter time)"
    else:
        ref = datetime.now(UTC)
        ref_text = f"today ({ref.date().isoformat()}; the bundle has no Observation or Encounter times)"

    _patient_values(patient, index, values, ref, ref_text, errors, notes)
    _aggregate(readings, index, values, notes)
    _medications(by_type.get("MedicationRequest", []), index, values, errors, notes)
    _conditions(by_type.get("Condition", []), notes)
    _encounter_values(encounters, index, values, errors, notes)

    used = {"Patient", "Observation", "MedicationRequest", "Condition", "Encounter"}
    other = Counter(item.resource["resourceType"] for item in resources if item.resource["resourceType"] not in used)
    if other:
        notes.append(
            "ignored resources the model does not use: "
            + ", ".join(f"{name} ({count})" for name, count in sorted(other.items()))
        )
    if not any(v is not None for v in values.values()) and not errors:
        notes.append("no value for any model feature was found in the bundle")
    result = StructuredInput(values, notes, "fhir")
    errors.raise_if_any(result)
    return result


# ------------------------------------------------------------------------------------------- bundle
def _check_bundle(bundle: Any, filename: str) -> None:
    if not isinstance(bundle, Mapping):
        raise InputErrors(
            [InputError(filename, f"the top level is a JSON {type(bundle).__name__}, not an object", FHIR_ACCEPTED)]
        )
    kind = bundle.get("resourceType")
    if kind is None:
        raise InputErrors(
            [InputError(filename, "the JSON object has no resourceType, so it is not a FHIR resource", FHIR_ACCEPTED)]
        )
    if kind != "Bundle":
        raise InputErrors(
            [InputError(filename, f"resourceType is {kind!r}: a single resource, not a Bundle", FHIR_ACCEPTED)]
        )
    entries = bundle.get("entry")
    if entries is None or entries == []:
        raise InputErrors([InputError(filename, "the Bundle has no entries", FHIR_ACCEPTED)])
    if not isinstance(entries, list):
        raise InputErrors(
            [InputError(f"{filename} entry", f"entry is a JSON {type(entries).__name__}, not a list", FHIR_ACCEPTED)]
        )


def _resources(bundle: Mapping, filename: str, errors: ErrorCollector) -> list[_Resource]:
    out = []
    for i, entry in enumerate(bundle["entry"]):
        where = f"{filename} entry[{i}]"
        if not isinstance(entry, Mapping):
            errors.add(
                where, f"the entry is a JSON {type(entry).__name__}, not an object", "entry objects with a resource"
            )
            continue
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        if full_url:
            where += f" ({full_url})"
        resource = entry.get("resource")
        if resource is None:
            errors.add(where, "the entry has no resource", "every entry holds a resource object (entry[].resource)")
            continue
        if not isinstance(resource, Mapping):
            errors.add(where, f"resource is a JSON {type(resource).__name__}, not an object", "a resource object")
            continue
        kind = resource.get("resourceType")
        if not isinstance(kind, str) or not kind:
            errors.add(
                where, "the resource has no resourceType", "a resource with resourceType (Patient, Observation, ...)"
            )
            continue
        rid = resource.get("id")
        where = f"{filename} entry[{i}] {kind}" + (f"/{rid}" if isinstance(rid, str) and rid else "")
        out.append(_Resource(i, where, resource, full_url))
    return out


# ------------------------------------------------------------------------------------------- dates
def parse_fhir_datetime(text: Any) -> datetime:
    """A FHIR date / dateTime / instant -> aware UTC datetime (partial dates -> their first moment;
    a time without a zone is read as UTC). Raises ValueError."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a string")
    try:
        if _DATE.match(text):
            parts = [int(p) for p in text.split("-")] + [1, 1]
            return datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
        if _DATETIME.match(text):
            return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
        reason = "expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone"
    except ValueError as error:
        reason = str(error)
    raise ValueError(f"{text!r} is not a valid FHIR date or dateTime ({reason})")


def _aware(value: datetime) -> datetime:
    if not isinstance(value, datetime):
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        raise TypeError(f"reference_time must be a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


DATE_ACCEPTED = "a FHIR date or dateTime such as 2024-03-05 or 2024-03-05T14:30:00Z"


def _time(resource: Mapping, where: str, keys: Sequence[str]) -> datetime | None:
    """The first present time of `keys` ('effectivePeriod' uses end, then start)."""
    for key in keys:
        if key not in resource:
            continue
        raw = resource[key]
        if key.endswith("Period"):
            if not isinstance(raw, Mapping):
                raise InputError(f"{where} {key}", f"{raw!r} is not a Period object", '{"start": ..., "end": ...}')
            for part in ("end", "start"):
                if part in raw:
                    return _parse_time(raw[part], f"{where} {key}.{part}")
            continue
        return _parse_time(raw, f"{where} {key}")
    return None


def _parse_time(raw: Any, where: str) -> datetime:
    try:
        return parse_fhir_datetime(raw)
    except ValueError as error:
        raise InputError(where, str(error), DATE_ACCEPTED) from None


# ------------------------------------------------------------------------------------------- Patient
def _patient(items: list[_Resource], filename: str, errors: ErrorCollector) -> _Resource | None:
    if len(items) > 1:
        ids = {item.resource.get("id") for item in items}
        if len(ids) > 1 or None in ids:
            errors.add(
                filename,
                f"the Bundle holds {len(items)} Patient resources "
                f"({', '.join(item.where.split(' ', 1)[1] for item in items)})",
                "a Bundle about one patient (one Patient resource)",
            )
            return None
    return items[0] if items else None


def _patient_refs(patient: _Resource | None) -> set[str]:
    if patient is None:
        return set()
    refs = set()
    rid = patient.resource.get("id")
    if isinstance(rid, str):
        refs.add(f"Patient/{rid}")
    if patient.full_url:
        refs.add(patient.full_url)  # urn:uuid:... or an absolute URL ending in Patient/<id>
    return refs


def _check_subject(resource: Mapping, where: str, refs: set[str]) -> None:
    subject = resource.get("subject")
    if not refs or not isinstance(subject, Mapping) or not isinstance(subject.get("reference"), str):
        return
    reference = subject["reference"]
    if reference in refs or any(r.endswith("/" + reference) for r in refs):
        return
    raise InputError(
        f"{where} subject",
        f"refers to {reference}, not to the bundle's patient ({', '.join(sorted(refs))})",
        "resources about the bundle's one patient",
    )


def _patient_values(
    patient: _Resource | None,
    index: dict[str, FeatureSpec],
    values: dict,
    ref: datetime,
    ref_text: str,
    errors: ErrorCollector,
    notes: list[str],
) -> None:
    if patient is None:
        if "age" in index or "sex" in index:
            notes.append("no Patient resource: age and sex not measured")
        return
    resource, where = patient.resource, patient.where
    if "age" in index and "birthDate" in resource:
        try:
            born = _parse_time(resource["birthDate"], f"{where} birthDate")
            if born > ref:
                raise InputError(
                    f"{where} birthDate",
                    f"{resource['birthDate']} is after the reference time {ref.date().isoformat()}",
                    "a birthDate before the observations",
                )
            years = ref.year - born.year - ((ref.month, ref.day) < (born.month, born.day))
            try:
                values["age"], _ = parse_value(index["age"], float(years), where=f"{where} birthDate")
            except InputError as error:
                raise InputError(
                    error.field,
                    f"{error.problem} (age on {ref.date().isoformat()} from birthDate {resource['birthDate']})",
                    error.accepted,
                    "age",
                    error.kind,
                ) from None
            notes.append(f"age: {years} years from birthDate {resource['birthDate']}, on {ref_text}")
        except InputError as error:
            errors.errors.append(error)
    elif "age" in index:
        notes.append("age not measured: the Patient has no birthDate")
    if "sex" in index and "gender" in resource:
        gender = resource["gender"]
        mapped = PATIENT_GENDER.get(gender) if isinstance(gender, str) else None
        if mapped is None:
            notes.append(f"sex not measured: Patient gender {gender!r} is not a category of the model")
        else:
            try:
                values["sex"], _ = parse_value(index["sex"], mapped, where=f"{where} gender")
            except InputError as error:
                errors.errors.append(error)


# ------------------------------------------------------------------------------------------- Observation
def _codings(concept: Mapping) -> list:
    """concept.coding as a list: absent or of the wrong JSON type -> none (a single Coding object -> one)."""
    coding = concept.get("coding")
    if isinstance(coding, list):
        return coding
    return [coding] if isinstance(coding, Mapping) else []


def _loinc_codes(concept: Any) -> list[str]:
    if not isinstance(concept, Mapping):
        return []
    codes = []
    for coding in _codings(concept):
        if not isinstance(coding, Mapping) or not isinstance(coding.get("code"), str):
            continue
        system = coding.get("system")
        if system in LOINC_SYSTEMS or (
            system is None and (coding["code"] in LOINC_FEATURES or coding["code"] in LOINC_PANELS)
        ):
            codes.append(coding["code"])
    return codes


def _concept_text(concept: Any) -> str:
    if not isinstance(concept, Mapping):
        return "?"
    if isinstance(concept.get("text"), str):
        return concept["text"]
    for coding in _codings(concept):
        if isinstance(coding, Mapping):
            return str(coding.get("display") or coding.get("code") or "?")
    return "?"


def _observations(
    items: list[_Resource], index: dict[str, FeatureSpec], refs: set[str], errors: ErrorCollector, notes: list[str]
) -> list[_Reading]:
    readings: list[_Reading] = []
    unused: Counter[str] = Counter()
    not_in_model: Counter[str] = Counter()
    skipped: list[str] = []
    absent: list[str] = []
    for order, item in enumerate(items):
        resource, where = item.resource, item.where
        try:
            _check_subject(resource, where, refs)
            code = resource.get("code")
            if not isinstance(code, Mapping) or not (
                _codings(code) or (isinstance(code.get("text"), str) and code["text"].strip())
            ):
                raise InputError(
                    where,
                    "the Observation has no code",
                    "an Observation with code.coding (system http://loinc.org and a LOINC code)",
                )
            status = resource.get("status")
            if status is not None and not isinstance(status, str):
                raise InputError(
                    f"{where} status",
                    f"the status is a JSON {_json_type(status)}, not a code",
                    "a status code such as final, amended or preliminary",
                )
            if status in SKIPPED_OBSERVATION_STATUS:
                skipped.append(f"{where} (status {status})")
                continue
            codes = _loinc_codes(code)
            panel = next((c for c in codes if c in LOINC_PANELS), None)
            mapped = next((c for c in codes if c in LOINC_FEATURES), None)
            if mapped is None:
                if panel is None:
                    unused[f"{(codes or ['no LOINC code'])[0]} {_concept_text(code)}"] += 1
                    continue
                time = _time(resource, where, OBSERVATION_TIMES)
                found = _panel(resource, where, panel, time, order, index, errors, not_in_model)
                readings.extend(found)
                continue
            time = _time(resource, where, OBSERVATION_TIMES)
            feature_name, _, display = LOINC_FEATURES[mapped]
            if feature_name not in index:
                not_in_model[feature_name] += 1
                continue
            where_code = f"{where} (LOINC {mapped} {display})"
            value = _value(resource, where_code, index[feature_name], absent, notes)
            if value is not None:
                readings.append(_Reading(feature_name, value, time, where, order))
        except InputError as error:
            errors.errors.append(error)
    if skipped:
        notes.append(
            f"skipped {len(skipped)} Observation(s) with status entered-in-error / cancelled: {', '.join(skipped)}"
        )
    if absent:
        notes.append(f"Observation(s) without a value (dataAbsentReason): {', '.join(absent)}")
    if unused:
        notes.append(
            "ignored Observations the model does not use: "
            + ", ".join(f"{code} ({n})" if n > 1 else code for code, n in unused.items())
        )
    if not_in_model:
        notes.append("ignored Observations of features this model does not have: " + ", ".join(sorted(not_in_model)))
    return readings


def _panel(
    resource: Mapping, where: str, panel: str, time, order: int, index, errors: ErrorCollector, not_in_model: Counter
) -> list[_Reading]:
    components = resource.get("component")
    if not isinstance(components, list) or not components:
        raise InputError(
            where,
            f"the {LOINC_PANELS[panel]} ({panel}) has no component list",
            "a panel whose component[] hold the values (e.g. systolic 8480-6)",
        )
    out = []
    for j, component in enumerate(components):
        if not isinstance(component, Mapping):
            errors.add(f"{where} component[{j}]", "the component is not an object", "component objects")
            continue
        codes = [c for c in _loinc_codes(component.get("code")) if c in LOINC_FEATURES]
        if not codes:
            continue
        feature_name, _, display = LOINC_FEATURES[codes[0]]
        if feature_name not in index:
            not_in_model[feature_name] += 1
            continue
        try:
            value = _value(
                component, f"{where} component[{j}] (LOINC {codes[0]} {display})", index[feature_name], [], []
            )
        except InputError as error:
            errors.errors.append(error)
            continue
        if value is not None:
            out.append(_Reading(feature_name, value, time, where, order))
    return out


def _value(holder: Mapping, where: str, feature: FeatureSpec, absent: list[str], notes: list[str]) -> float | None:
    """The value of an Observation (or component) in the feature's unit, checked against its range."""
    units = f"valueQuantity in {unit_list(accepted_units(feature))}"
    if "valueQuantity" in holder:
        quantity = holder["valueQuantity"]
        if not isinstance(quantity, Mapping):
            raise InputError(where, "valueQuantity is not an object", units)
        number = quantity.get("value")
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise InputError(
                where,
                f"valueQuantity.value {number!r} is not a number"
                if "value" in quantity
                else "valueQuantity has no value",
                units,
            )
        unit = _quantity_unit(quantity)
        if unit is not None and unit_class(unit) is None:
            code, shown = quantity.get("code"), quantity.get("unit")
            both = (
                f"{shown!r} (code {code!r})"
                if isinstance(code, str) and isinstance(shown, str) and code != shown
                else repr(unit)
            )
            raise InputError(
                where,
                f"unit {both} is not accepted for {feature.name}",
                f"{unit_list(accepted_units(feature))} (UCUM codes or their usual spellings; converted to "
                f"{feature.unit})",
            )
        comparator = quantity.get("comparator")
        try:
            number = float(number)
        except OverflowError:  # JSON integers have no size limit
            raise InputError(where, "valueQuantity.value is too large to be a number", units) from None
        value, note = parse_value(feature, number, where=where, unit=unit, origin=where.split(" (")[0])
        if unit is None:
            notes.append(f"{feature.name}: {where} has no unit; read as {feature.unit}")
        if comparator:
            notes.append(f"{feature.name}: {where} is '{comparator} {fmt(float(number))}'; used {fmt(value)}")
        if note:
            notes.append(note)
        return value
    if "valueInteger" in holder:
        value, _ = parse_value(feature, holder["valueInteger"], where=where)
        return value
    if "dataAbsentReason" in holder:
        absent.append(f"{where} ({_concept_text(holder['dataAbsentReason'])})")
        return None
    present = [k for k in VALUE_KEYS if k in holder]
    if present:
        raise InputError(where, f"the value is a {present[0]}", units)
    raise InputError(where, "the Observation has no value (no valueQuantity and no dataAbsentReason)", units)


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", bool: "boolean", int: "number", float: "number", str: "string"}.get(
        type(value), type(value).__name__
    )


def _quantity_unit(quantity: Mapping) -> str | None:
    """The UCUM code if it is known, else the human-readable unit, else the code; None if neither."""
    code, unit = quantity.get("code"), quantity.get("unit")
    if isinstance(code, str) and code.strip() and unit_class(code) is not None:
        return code
    if isinstance(unit, str) and unit.strip():
        return unit
    if isinstance(code, str) and code.strip():
        return code
    return None


def _aggregate(readings: list[_Reading], index: dict[str, FeatureSpec], values: dict, notes: list[str]) -> None:
    groups: dict[str, list[_Reading]] = {}
    for reading in readings:
        groups.setdefault(reading.feature, []).append(reading)
    how_by_feature = {feature: how for feature, how, _ in LOINC_FEATURES.values()}
    for name, group in groups.items():
        how = how_by_feature[name]
        unit = index[name].unit or ""
        if how == "max":
            chosen = max(group, key=lambda r: r.value)
        elif how == "min":
            chosen = min(group, key=lambda r: r.value)
        else:
            chosen = max(group, key=lambda r: (r.time is not None, r.time or datetime.min.replace(tzinfo=UTC), r.order))
        values[name] = chosen.value
        if len(group) > 1:
            what = {"max": "the highest", "min": "the lowest"}.get(how, "the latest")
            notes.append(f"{name}: {fmt(chosen.value)} {unit} is {what} of {len(group)} Observations ({chosen.where})")
            if how == "latest" and any(r.time is None for r in group):
                notes.append(f"{name}: some Observations have no effective time; those count as the oldest")


# ------------------------------------------------------------------------------------------- medications, conditions
def _medications(items: list[_Resource], index, values: dict, errors: ErrorCollector, notes: list[str]) -> None:
    if not items:
        if "n_medications" in index:
            notes.append("n_medications not measured: the bundle has no MedicationRequest")
        return
    if "n_medications" not in index:
        return
    keys: list[str] = []
    not_counted: Counter[str] = Counter()
    duplicates = 0
    for item in items:
        resource = item.resource
        status = resource.get("status")
        if not isinstance(status, str):
            errors.add(
                item.where,
                "the MedicationRequest has no status",
                f"a status; {', '.join(sorted(COUNTED_MEDICATION_STATUS))} are counted",
            )
            continue
        if status not in COUNTED_MEDICATION_STATUS:
            not_counted[status] += 1
            continue
        key = _medication_key(resource) or f"entry {item.index}"
        if key in keys:
            duplicates += 1
            continue
        keys.append(key)
    try:
        values["n_medications"], _ = parse_value(
            index["n_medications"], float(len(keys)), where="MedicationRequest count"
        )
    except InputError as error:
        errors.errors.append(error)
    note = f"n_medications: {len(keys)} distinct medication(s) from MedicationRequests with status active / completed"
    if duplicates:
        note += f"; {duplicates} repeated request(s) counted once"
    if not_counted:
        note += "; not counted: " + ", ".join(f"{n} {status}" for status, n in sorted(not_counted.items()))
    notes.append(note)


def _medication_key(resource: Mapping) -> str | None:
    concept = resource.get("medicationCodeableConcept")
    if isinstance(concept, Mapping):
        for coding in _codings(concept):
            if isinstance(coding, Mapping) and coding.get("code"):
                return f"{coding.get('system', '')}|{coding['code']}"
        if isinstance(concept.get("text"), str):
            return "text|" + concept["text"].strip().lower()
    reference = resource.get("medicationReference")
    if isinstance(reference, Mapping) and isinstance(reference.get("reference"), str):
        return "ref|" + reference["reference"]
    return None


def _conditions(items: list[_Resource], notes: list[str]) -> None:
    kept = []
    for item in items:
        verification = _concept_text(item.resource.get("verificationStatus")).lower()
        if verification in ("entered-in-error", "refuted"):
            continue
        kept.append(_concept_text(item.resource.get("code")))
    if kept:
        shown = ", ".join(kept[:10]) + (f", and {len(kept) - 10} more" if len(kept) > 10 else "")
        notes.append(f"{len(kept)} Condition(s) in the bundle (for information; not a model feature): {shown}")


# ------------------------------------------------------------------------------------------- Encounter
def _encounters(
    items: list[_Resource], errors: ErrorCollector
) -> list[tuple[_Resource, datetime | None, datetime | None]]:
    out = []
    for item in items:
        period = item.resource.get("period")
        start = end = None
        try:
            if period is not None:
                if not isinstance(period, Mapping):
                    raise InputError(f"{item.where} period", "period is not an object", '{"start": ..., "end": ...}')
                start = _parse_time(period["start"], f"{item.where} period.start") if "start" in period else None
                end = _parse_time(period["end"], f"{item.where} period.end") if "end" in period else None
                if start and end and end < start:
                    raise InputError(
                        f"{item.where} period",
                        f"end {period['end']} is before start {period['start']}",
                        "a period whose end is after its start",
                    )
        except InputError as error:
            errors.errors.append(error)
            continue
        out.append((item, start, end))
    return out


def _codes(concept: Any) -> list[str]:
    """Codes of a Coding, a CodeableConcept or a list of them (R4 class is a Coding, R5 a list)."""
    if isinstance(concept, list):
        return [c for part in concept for c in _codes(part)]
    if not isinstance(concept, Mapping):
        return []
    if "coding" in concept:
        return [c["code"] for c in _codings(concept) if isinstance(c, Mapping) and isinstance(c.get("code"), str)]
    return [concept["code"]] if isinstance(concept.get("code"), str) else []


def _texts(concept: Any) -> list[str]:
    if isinstance(concept, list):
        return [t for part in concept for t in _texts(part)]
    if not isinstance(concept, Mapping):
        return []
    texts = [concept.get("text"), concept.get("display")]
    texts += [c.get("display") for c in _codings(concept) if isinstance(c, Mapping)]
    return [t.lower() for t in texts if isinstance(t, str)]


def _encounter_values(
    encounters, index: dict[str, FeatureSpec], values: dict, errors: ErrorCollector, notes: list[str]
) -> None:
    if not encounters:
        return
    floor = datetime.min.replace(tzinfo=UTC)
    ordered = sorted(encounters, key=lambda e: (e[1] or e[2] or floor, e[0].index))
    item, start, end = ordered[-1]
    resource, where = item.resource, item.where
    if len(encounters) > 1:
        notes.append(f"{len(encounters)} Encounters: the latest ({where}) is the index stay")

    def put(name: str, value: Any, field: str, note: str | None = None) -> None:
        if name not in index or value is None:
            return
        try:
            values[name], _ = parse_value(index[name], value, where=f"{where} {field}")
        except InputError as error:
            errors.errors.append(error)
            return
        if note:
            notes.append(note)

    hospitalization = resource.get("hospitalization") if isinstance(resource.get("hospitalization"), Mapping) else {}
    admission = None
    for table, codes in (
        (ENCOUNTER_PRIORITY, _codes(resource.get("priority"))),
        (ENCOUNTER_CLASS, _codes(resource.get("class"))),
        (ENCOUNTER_ADMIT_SOURCE, _codes(hospitalization.get("admitSource"))),
    ):
        admission = next((table[c] for c in codes if c in table), None)
        if admission:
            break
    if admission is None:
        words = " ".join(
            _texts(resource.get("type")) + _texts(resource.get("priority")) + _texts(resource.get("class"))
        )
        admission = next((category for word, category in ADMISSION_WORDS if word in words), None)
    if admission:
        put("admission_type", admission, "class / priority", f"admission_type: {admission} from {where}")
    elif "admission_type" in index:
        notes.append(f"admission_type not measured: {where} has no priority, class or type that maps to one")

    if start and end:
        days = round((end - start).total_seconds() / 86400.0, 3)
        put("length_of_stay", days, "period", f"length_of_stay: {fmt(days)} days from {where} period")
    elif "length_of_stay" in index:
        notes.append(f"length_of_stay not measured: {where} has no period with start and end")

    disposition = hospitalization.get("dischargeDisposition")
    if disposition is not None and "discharge_disposition" in index:
        codes = _codes(disposition)
        known = [c for c in codes if c in DISCHARGE_DISPOSITION]
        if known:
            mapped = DISCHARGE_DISPOSITION[known[0]]
        else:
            text = " ".join(_texts(disposition))
            mapped = next((category for word, category in DISCHARGE_WORDS if word in text), None)
        if mapped:
            put(
                "discharge_disposition",
                mapped,
                "hospitalization.dischargeDisposition",
                f"discharge_disposition: {mapped} from {where}",
            )
        else:
            notes.append(
                f"discharge_disposition not measured: {_concept_text(disposition)!r} ({', '.join(codes) or 'no code'}) "
                "is not a category of the model"
            )

    if "prior_admissions_12m" in index and len(encounters) > 1 and start is not None:
        earlier = [
            e
            for e in ordered[:-1]
            if e[1] is not None
            and start - timedelta(days=365) <= e[1] < start
            and set(_codes(e[0].resource.get("class"))) & INPATIENT_CLASSES
        ]
        put(
            "prior_admissions_12m",
            float(len(earlier)),
            "period",
            f"prior_admissions_12m: {len(earlier)} inpatient Encounter(s) in the 12 months before {where} "
            "(counted from this bundle only)",
        )
