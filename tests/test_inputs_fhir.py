"""FHIR R4 Bundles: a realistic bundle built here -> the demo model's features (LOINC mapping, max / min /
latest, unit conversions with notes, Patient / MedicationRequest / Condition / Encounter), and one
specific message per kind of malformed FHIR, naming the entry index and resource id."""

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mmnar_core.inputs import InputErrors, parse_fhir_bundle, parse_fhir_datetime
from mmnar_core.inputs.fhir_tables import DISCHARGE_DISPOSITION, LOINC_FEATURES, LOINC_PANELS
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.schema import FeatureSpec

from support.fhir import encounter, make_bundle, observation

ROOT = Path(__file__).resolve().parents[1]
DATASET = json.loads((DEMO_BUNDLE / "dataset.json").read_text())
FEATURES = [FeatureSpec.from_dict(f) for f in DATASET["features"]]


def with_entry(bundle: dict, resource: dict, replace: str | None = None) -> dict:
    bundle = copy.deepcopy(bundle)
    if replace:
        bundle["entry"] = [e for e in bundle["entry"] if e["resource"].get("id") != replace]
    bundle["entry"].append({"resource": resource})
    return bundle


def errors_of(data, **kwargs):
    with pytest.raises(InputErrors) as info:
        parse_fhir_bundle(data, FEATURES, **kwargs)
    return info.value


def one_error(data, **kwargs):
    errors = errors_of(data, **kwargs).errors
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


# --------------------------------------------------------------------------------------------- happy path
def test_realistic_bundle_maps_every_feature():
    result = parse_fhir_bundle(json.dumps(make_bundle()).encode(), FEATURES)
    v = result.values
    assert result.source == "fhir" and list(v) == [f.name for f in FEATURES]
    assert v["age"] == 73 and v["sex"] == "female"  # on 2024-03-06, the latest time in the bundle
    assert v["heart_rate_max"] == 112 and v["resp_rate_max"] == 24 and v["spo2_min"] == 89
    assert v["temperature_max"] == 38.5  # 101.3 °F beats 37.8 °C
    assert v["sbp_min"] == 96  # from the blood-pressure panels' systolic components
    assert v["wbc"] == 13.2  # the latest, not the largest
    assert v["hemoglobin"] == 11.8 and v["sodium"] == 134 and v["albumin"] == 3.1
    assert v["creatinine"] == pytest.approx(1.504, abs=1e-3) and v["lactate"] == pytest.approx(2.997, abs=1e-3)
    assert v["nt_probnp"] == 2400
    assert v["n_medications"] == 4  # amlodipine once, furosemide, lisinopril, amoxicillin (completed); not metformin
    assert v["admission_type"] == "emergency" and v["discharge_disposition"] == "skilled_nursing"
    assert v["length_of_stay"] == 5.5 and v["prior_admissions_12m"] == 1
    notes = "\n".join(result.notes)
    for expected in [
        "temperature_max: 101.3 °F converted to 38.5 °C",
        "creatinine: 133 µmol/L converted to 1.504 mg/dL",
        "hemoglobin: 118 g/L converted to 11.8 g/dL",
        "albumin: 31 g/L converted to 3.1 g/dL",
        "lactate: 27 mg/dL converted to 2.997 mmol/L",
        "age: 73 years from birthDate 1950-06-15",
        "heart_rate_max: 112 beats/min is the highest of 3 Observations",
        "wbc: 13.2 K/uL is the latest of 2 Observations",
        "1 repeated request(s) counted once",
        "not counted: 1 stopped",
        "3 Condition(s) in the bundle",
        "Pneumonia, Heart failure",
        "39156-5 Body mass index",
        "ignored resources the model does not use: Procedure (1)",
        "length_of_stay: 5.5 days",
    ]:
        assert expected in notes, expected
    assert "Observation/temp-2" in notes  # conversion notes name the resource


def test_mapping_input_reference_time_and_gender_other():
    bundle = make_bundle()
    bundle["entry"][0]["resource"]["gender"] = "other"
    result = parse_fhir_bundle(bundle, FEATURES, reference_time=datetime(2030, 1, 1))
    assert result.values["age"] == 79 and result.values["sex"] is None
    assert any("gender 'other' is not a category" in n for n in result.notes)


def test_skipped_absent_and_minimal_bundles():
    bundle = with_entry(
        make_bundle(), observation("hr-9", "8867-4", "Heart rate", 190, "/min", status="entered-in-error")
    )
    lactate = observation(
        "lac-2", "2524-7", "Lactate", when="2024-03-05T00:00:00Z", dataAbsentReason={"text": "Sample hemolysed"}
    )
    bundle = with_entry(bundle, lactate)
    result = parse_fhir_bundle(bundle, FEATURES)
    assert result.values["heart_rate_max"] == 112
    assert any("entered-in-error" in n and "Observation/hr-9" in n for n in result.notes)
    assert any("Sample hemolysed" in n for n in result.notes) and result.values["lactate"] == pytest.approx(
        2.997, abs=1e-3
    )
    only = {"resourceType": "Bundle", "entry": [{"resource": observation("x", "8867-4", "Heart rate", 80, "/min")}]}
    result = parse_fhir_bundle(only, FEATURES)
    assert result.values["heart_rate_max"] == 80 and result.values["n_medications"] is None
    assert any("no Patient resource" in n for n in result.notes)


def test_loinc_table_matches_the_demo_model():
    names = {f.name for f in FEATURES}
    assert {feature for feature, _, _ in LOINC_FEATURES.values()} <= names
    required = {
        "8867-4",
        "9279-1",
        "59408-5",
        "2708-6",
        "8310-5",
        "8480-6",
        "6690-2",
        "26464-8",
        "718-7",
        "2951-2",
        "2160-0",
        "2524-7",
        "32693-4",
        "33762-6",
        "1751-7",
    }
    assert required <= set(LOINC_FEATURES) and "85354-9" in LOINC_PANELS
    assert {how for _, how, _ in LOINC_FEATURES.values()} == {"max", "min", "latest"}
    categories = next(f.categories for f in FEATURES if f.name == "discharge_disposition")
    assert {v for v in DISCHARGE_DISPOSITION.values() if v} <= set(categories)


def test_fhir_datetimes():
    assert parse_fhir_datetime("2024") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_fhir_datetime("2024-03-05T14:30:00+02:00") == datetime(2024, 3, 5, 12, 30, tzinfo=UTC)
    for bad in (
        "2024-13-01",
        "05/03/2024",
        "2024-03-05 14:30",
        20240305,
        "\u0661\u0669\u0665\u0660",
        "\uff12\uff10\uff12\uff14-03-05T14:30:00Z",
    ):  # Arabic-Indic 1950, full-width 2024: digits are 0-9
        with pytest.raises(ValueError):
            parse_fhir_datetime(bad)


# --------------------------------------------------------------------------------------------- malformed FHIR
def test_file_level_errors():
    assert "not valid JSON" in one_error(b'{"resourceType": "Bundle",').problem
    assert "top level is a JSON list" in one_error(b"[]").problem
    error = one_error(json.dumps({"resourceType": "Patient", "id": "p"}).encode(), filename="pat.json")
    assert error.field == "pat.json" and "resourceType is 'Patient': a single resource, not a Bundle" in error.problem
    assert "FHIR R4 Bundle" in error.accepted
    assert "no resourceType" in one_error(b'{"entry": []}').problem
    assert "has no entries" in one_error(b'{"resourceType": "Bundle", "type": "collection"}').problem
    assert "not a list" in one_error(b'{"resourceType": "Bundle", "entry": {}}').problem


def test_entry_without_resource_or_resource_type():
    bundle = make_bundle()
    bundle["entry"][3] = {"fullUrl": "urn:uuid:lost", "request": {"method": "POST"}}
    bundle["entry"][4] = {"resource": {"id": "typeless"}}
    bundle["entry"][5] = "Observation"
    errors = {e.field: e for e in errors_of(bundle).errors}
    assert "the entry has no resource" in errors["bundle.json entry[3] (urn:uuid:lost)"].problem
    assert "has no resourceType" in errors["bundle.json entry[4]"].problem
    assert "not an object" in errors["bundle.json entry[5]"].problem


@pytest.mark.parametrize(
    "resource, field, words",
    [
        (
            {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "valueQuantity": {"value": 80, "unit": "/min"},
            },
            "Observation/o1",
            ["has no code"],
        ),
        (observation("o2", "8867-4", "Heart rate"), "Observation/o2 (LOINC 8867-4 Heart rate)", ["has no value"]),
        (
            observation("o3", "8867-4", "Heart rate", 80, "/min", when="2024-02-30T25:00"),
            "Observation/o3 effectiveDateTime",
            ["not a valid FHIR date"],
        ),
        (
            observation("o4", "8310-5", "Body temperature", 38.5, "degrees", "deg"),
            "Observation/o4 (LOINC 8310-5 Body temperature)",
            ["unit 'degrees' (code 'deg') is not accepted for temperature_max"],
        ),
        (
            observation("o5", "8867-4", "Heart rate", 400, "/min"),
            "Observation/o5 (LOINC 8867-4 Heart rate)",
            ["400 beats/min is outside the plausible range 20-250 beats/min"],
        ),
        (
            observation("o6", "718-7", "Hemoglobin", valueString="12.1 g/dL"),
            "Observation/o6 (LOINC 718-7",
            ["the value is a valueString"],
        ),
        (
            observation("o7", "8867-4", "Heart rate", subject={"reference": "Patient/someone-else"})
            | {"valueQuantity": {"value": 80}},
            "Observation/o7 subject",
            ["refers to Patient/someone-else"],
        ),
        (
            observation("o8", "8867-4", "Heart rate") | {"valueQuantity": {"value": "80", "unit": "/min"}},
            "Observation/o8 (LOINC 8867-4",
            ["valueQuantity.value '80' is not a number"],
        ),
        (observation("bp", "85354-9", "Blood pressure panel"), "Observation/bp", ["has no component list"]),
        (encounter("e2", "2024-03-06T00:00:00Z", "2024-03-01T00:00:00Z"), "Encounter/e2 period", ["is before start"]),
        (encounter("e3", "yesterday", None), "Encounter/e3 period.start", ["not a valid FHIR date"]),
        (
            {"resourceType": "MedicationRequest", "id": "m9", "intent": "order"},
            "MedicationRequest/m9",
            ["has no status"],
        ),
        ({"resourceType": "Patient", "id": "pat-2"}, "bundle.json", ["2 Patient resources"]),
    ],
)
def test_resource_errors_name_entry_id_and_problem(resource, field, words):
    bundle = with_entry(make_bundle(), resource)
    error_set = errors_of(bundle)
    assert len(error_set.errors) == 1, [str(e) for e in error_set.errors]
    (error,) = error_set.errors
    index = len(bundle["entry"]) - 1
    assert field in error.field
    if field != "bundle.json":
        assert error.field.startswith(f"bundle.json entry[{index}] ")
    for word in words:
        assert word in error.problem
    assert error.accepted
    # the valid parts are kept
    assert error_set.partial.values["sodium"] == 134


def test_unknown_unit_lists_the_accepted_units():
    error = one_error(with_entry(make_bundle(), observation("cr-9", "2160-0", "Creatinine", 1.2, "mg/mL")))
    assert "entry[32] Observation/cr-9 (LOINC 2160-0 Creatinine" in error.field
    assert "unit 'mg/mL'" in error.problem
    assert "mg/dL" in error.accepted and "µmol/L" in error.accepted


def test_bad_birth_date_and_several_errors_at_once():
    bundle = make_bundle()
    bundle["entry"][0]["resource"]["birthDate"] = "15.06.1950"
    bundle["entry"][3]["resource"]["valueQuantity"]["unit"] = bundle["entry"][3]["resource"]["valueQuantity"][
        "code"
    ] = "furlongs"
    error_set = errors_of(bundle)
    fields = [e.field for e in error_set.errors]
    assert "bundle.json entry[0] Patient/pat-1 birthDate" in fields
    assert any(f.startswith("bundle.json entry[3] Observation/hr-1") for f in fields)
    assert str(error_set).startswith("2 problems:")
    assert error_set.partial.values["age"] is None and error_set.partial.values["heart_rate_max"] == 112


def test_age_out_of_range_says_where_it_came_from():
    bundle = make_bundle()
    bundle["entry"][0]["resource"]["birthDate"] = "2012-01-01"
    error = one_error(bundle)
    assert error.field == "bundle.json entry[0] Patient/pat-1 birthDate"
    assert (
        "12 is outside the plausible range 18-110 years" in error.problem
        and "from birthDate 2012-01-01" in error.problem
    )


def test_docs_loinc_table_is_the_code_table():
    import re

    text = (ROOT / "docs" / "inputs.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+-\d) \| [^|]+ \| `(\w+)` \| (max|min|latest) \|$", text, flags=re.M)
    assert {code: (feature, how) for code, feature, how in rows} == {
        code: (feature, how) for code, (feature, how, _) in LOINC_FEATURES.items()
    }
    for panel in LOINC_PANELS:
        assert f"| {panel} |" in text
