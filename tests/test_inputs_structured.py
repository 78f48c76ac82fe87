"""Structured values from a form, a CSV file and a JSON file: happy paths, unit conversions with notes,
and one specific message per kind of bad input (naming the field / file / line and what is accepted)."""

import json

import pytest

from mmnar_core.inputs import (
    InputError,
    InputErrors,
    StructuredInput,
    parse_structured_csv,
    parse_structured_file,
    parse_structured_form,
    parse_structured_json,
    unit_hint,
)
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.schema import FeatureSpec

FEATURES = [FeatureSpec.from_dict(f) for f in json.loads((DEMO_BUNDLE / "dataset.json").read_text())["features"]]
BY_NAME = {f.name: f for f in FEATURES}
NAMES = [f.name for f in FEATURES]

PATIENT = {  # one plausible patient, in the features' own units
    "age": 71,
    "sex": "female",
    "admission_type": "emergency",
    "length_of_stay": 6.5,
    "prior_admissions_12m": 2,
    "n_medications": 9,
    "discharge_disposition": "skilled_nursing",
    "heart_rate_max": 112,
    "resp_rate_max": 24,
    "spo2_min": 91,
    "temperature_max": 38.4,
    "sbp_min": 96,
    "wbc": 13.2,
    "hemoglobin": 11.8,
    "sodium": 134,
    "creatinine": 1.5,
    "lactate": 2.9,
    "nt_probnp": 2400,
    "albumin": 3.1,
}


def errors_of(call, *args, **kwargs) -> list[InputError]:
    with pytest.raises(InputErrors) as info:
        call(*args, **kwargs)
    return info.value.errors


def one_error(call, *args, **kwargs) -> InputError:
    errors = errors_of(call, *args, **kwargs)
    assert len(errors) == 1, [str(e) for e in errors]
    return errors[0]


def wide_csv(values: dict, sep: str = ",") -> bytes:
    header = sep.join(NAMES)
    row = sep.join("" if values.get(n) is None else str(values[n]) for n in NAMES)
    return f"{header}\n{row}\n".encode()


# --------------------------------------------------------------------------------------------- errors
def test_input_error_format_and_collection():
    error = InputError("temperature_max", "101.3 is outside the plausible range.", "a number in °C", "temperature_max")
    assert str(error) == "temperature_max: 101.3 is outside the plausible range. Accepted: a number in °C"
    assert error.errors == [error] and error.to_dict()["feature"] == "temperature_max"
    both = InputErrors([error, InputError("sex", "'x' is not a category", "female, male")])
    assert str(both).splitlines()[0] == "2 problems:" and "- sex: 'x' is not a category" in str(both)
    assert both.fields == ["temperature_max", "sex"] and isinstance(both, ValueError)
    assert str(InputErrors([error])) == str(error)


# --------------------------------------------------------------------------------------------- form
def test_form_happy_path_every_feature_is_a_key():
    form = {
        **{k: str(v) for k, v in PATIENT.items()},
        "sex": " Female ",
        "discharge_disposition": "Skilled nursing",
        "albumin": "",
        "lactate": None,
    }
    form.pop("nt_probnp")
    result = parse_structured_form(form, FEATURES)
    assert isinstance(result, StructuredInput) and result.source == "form"
    assert list(result.values) == NAMES
    assert result.values["age"] == 71.0 and result.values["sex"] == "female"
    assert result.values["discharge_disposition"] == "skilled_nursing"
    assert result.values["albumin"] is None and result.values["lactate"] is None and result.values["nt_probnp"] is None
    assert result.notes == []


@pytest.mark.parametrize(
    "feature, raw, expected, note",
    [
        ("temperature_max", "101.3 °F", 38.5, "temperature_max: 101.3 °F converted to 38.5 °C"),
        ("temperature_max", "101.3F", 38.5, "°F converted"),
        ("temperature_max", {"value": 311.65, "unit": "K"}, 38.5, "311.6 K converted to 38.5 °C"),
        ("creatinine", "133 µmol/L", 1.50418, "133 µmol/L converted to 1.504 mg/dL"),
        ("creatinine", "133 umol/l", 1.50418, "µmol/L"),
        ("hemoglobin", {"value": 118, "unit": "g/L"}, 11.8, "118 g/L converted to 11.8 g/dL"),
        ("hemoglobin", "7.3 mmol/L", 11.7632, "mmol/L converted"),
        ("albumin", "31 g/L", 3.1, "31 g/L converted to 3.1 g/dL"),
        ("lactate", "27 mg/dL", 2.99734, "27 mg/dL converted to 2.997 mmol/L"),
        ("wbc", "13200 /uL", 13.2, "13200 /uL converted to 13.2 K/uL"),
        ("sbp_min", "12.8 kPa", 96.0079, "kPa converted"),
        ("nt_probnp", "283.8 pmol/L", 2400.1, "pmol/L converted"),
        ("length_of_stay", "36 h", 1.5, "36 hours converted to 1.5 days"),
    ],
)
def test_form_unit_conversions_with_notes(feature, raw, expected, note):
    result = parse_structured_form({feature: raw}, FEATURES)
    assert result.values[feature] == pytest.approx(expected, rel=1e-4)
    assert len(result.notes) == 1 and note in result.notes[0] and result.notes[0].startswith(feature)


def test_same_unit_in_another_spelling_is_not_a_conversion():
    result = parse_structured_form(
        {
            "heart_rate_max": "112 bpm",
            "temperature_max": "38.4 Cel",
            "sodium": "134 mmol/L",
            "n_medications": {"value": 9, "unit": "{count}"},
        },
        FEATURES,
    )
    assert result.values["heart_rate_max"] == 112 and result.values["temperature_max"] == 38.4
    assert result.values["sodium"] == 134 and result.values["n_medications"] == 9 and result.notes == []


def test_form_reports_every_bad_field_and_keeps_the_valid_ones():
    form = {**PATIENT, "temperature_max": "hot", "sex": "Fem", "sbp_min": 400, "heart_rate_max": True}
    with pytest.raises(InputErrors) as info:
        parse_structured_form(form, FEATURES)
    errors = {e.field: e for e in info.value.errors}
    assert set(errors) == {"temperature_max", "sex", "sbp_min", "heart_rate_max"}
    assert "'hot' is not a number" in errors["temperature_max"].problem
    assert "did you mean 'female'" in errors["sex"].problem and "female, male" in errors["sex"].accepted
    assert "outside the plausible range 40-250 mmHg" in errors["sbp_min"].problem
    assert "yes/no value, not a number" in errors["heart_rate_max"].problem
    assert all(e.feature == e.field for e in info.value.errors)
    partial = info.value.partial
    assert partial.values["age"] == 71 and partial.values["sodium"] == 134 and partial.values["sex"] is None
    assert str(info.value).startswith("4 problems:")


@pytest.mark.parametrize(
    "feature, value, unit_word, converted",
    [
        ("temperature_max", 101.3, "°F", "38.5 °C"),
        ("creatinine", 88, "µmol/L", "0.9952 mg/dL"),
        ("hemoglobin", 135, "g/L", "13.5 g/dL"),
        ("albumin", 35, "g/L", "3.5 g/dL"),
        ("lactate", 45, "mg/dL", "4.996 mmol/L"),
        ("wbc", 8500, "/uL", "8.5 K/uL"),
        ("sbp_min", 16, "kPa", "120 mmHg"),
        ("spo2_min", 0.93, "fraction", "93 %"),
    ],
)
def test_out_of_range_values_in_a_wrong_unit_get_a_hint(feature, value, unit_word, converted):
    hint = unit_hint(BY_NAME[feature], value)
    assert (
        hint is not None and unit_word in hint and converted in hint and hint.endswith(f"enter {BY_NAME[feature].unit}")
    )
    error = one_error(parse_structured_form, {feature: value}, FEATURES)
    assert error.field == feature and "outside the plausible range" in error.problem
    assert "looks like" in error.problem and unit_word in error.problem
    if unit_word != "fraction":  # a fraction is written as a number: no unit to write after it
        # the number written with its likely unit, and the advice to type it so, which a form rewords
        assert error.unit_example is not None and error.unit_example.endswith(unit_word)
        assert error.problem.endswith(f", or write the unit after the number (e.g. '{error.unit_example}')")
        assert error.problem.endswith(error.unit_advice)
    else:
        assert error.unit_example is None and error.unit_advice == ""


def test_no_hint_when_in_range_or_no_unit_fits():
    assert unit_hint(BY_NAME["temperature_max"], 38.5) is None
    assert unit_hint(BY_NAME["sodium"], 1400) is None
    assert unit_hint(BY_NAME["heart_rate_max"], 400) is None
    error = one_error(parse_structured_form, {"heart_rate_max": "400"}, FEATURES)
    assert "400 is outside the plausible range 20-250 beats/min" in error.problem and "looks like" not in error.problem
    assert "from 20 to 250 beats/min" in error.accepted


def test_converted_value_out_of_range_says_both_numbers():
    error = one_error(parse_structured_form, {"hemoglobin": "13.5 g/L"}, FEATURES)
    assert "13.5 g/L = 1.35 g/dL is outside the plausible range 2-25 g/dL" in error.problem
    assert "is the unit right" in error.problem


@pytest.mark.parametrize(
    "raw, words",
    [
        ("38 bananas", ["unit 'bananas' is not accepted for temperature_max"]),
        ("38,5", ["has a comma"]),
        ("<35", ["censored"]),
        ("inf", ["not a number"]),
        ([38.5], ["list is not a number"]),
        ({"valu": 38.5}, ["key(s) ['valu']"]),
    ],
)
def test_bad_numbers(raw, words):
    error = one_error(parse_structured_form, {"temperature_max": raw}, FEATURES)
    assert error.field == "temperature_max"
    for word in words:
        assert word in error.problem
    if "bananas" in str(raw):
        assert "°C" in error.accepted and "°F" in error.accepted


def test_counts_categories_and_unknown_fields():
    assert "not a whole number" in one_error(parse_structured_form, {"n_medications": 2.5}, FEATURES).problem
    error = one_error(parse_structured_form, {"admission_type": 1}, FEATURES)
    assert "1 is not a category" in error.problem and "emergency, urgent, elective" in error.accepted
    error = one_error(parse_structured_form, {"sex": "70 kg"}, FEATURES)
    assert "not a category of sex" in error.problem
    error = one_error(parse_structured_form, {"temprature_max": 38.5, "hr": 90}, FEATURES)
    assert (
        error.field == "form"
        and "'temprature_max'" in error.problem
        and "temperature_max for 'temprature_max'" in error.problem
    )
    assert "age, sex, admission_type" in error.accepted


def test_aliases_and_missing_markers():
    result = parse_structured_form({"sex": "M", "wbc": "NA", "albumin": "n/a", "lactate": float("nan")}, FEATURES)
    assert result.values["sex"] == "male" and result.values["wbc"] is None and result.values["lactate"] is None


# --------------------------------------------------------------------------------------------- CSV
def test_csv_wide_happy_path():
    result = parse_structured_csv(wide_csv({**PATIENT, "albumin": None}), FEATURES)
    assert result.source == "csv" and list(result.values) == NAMES
    assert result.values["sodium"] == 134 and result.values["sex"] == "female" and result.values["albumin"] is None


def test_csv_wide_excel_flavour_bom_semicolons_crlf_quotes_units():
    values = {**PATIENT, "temperature_max": "101.3 °F", "nt_probnp": None}
    data = ("\ufeff" + wide_csv(values, sep=";").decode().replace("\n", "\r\n") + "\r\n").encode("utf-8")
    data = data.replace(b";female;", b';"female";')
    result = parse_structured_csv(data, FEATURES, filename="excel.csv")
    assert result.values["temperature_max"] == 38.5 and result.values["sex"] == "female"
    assert result.notes == ["temperature_max: 101.3 °F converted to 38.5 °C"]


def test_csv_long_happy_path_with_units_and_notes():
    data = (
        b"feature,value,unit\n"
        b"age,71,\nsex,female,\ntemperature_max,101.3,[degF]\ncreatinine,133,umol/L\nhemoglobin,118,g/L\n"
        b"heart_rate_max,112,/min\n\n"
    )
    result = parse_structured_csv(data, FEATURES)
    assert result.values["temperature_max"] == 38.5 and result.values["hemoglobin"] == 11.8
    assert result.values["creatinine"] == pytest.approx(1.504, abs=1e-3) and result.values["heart_rate_max"] == 112
    assert result.values["sodium"] is None and len(result.notes) == 3
    assert parse_structured_csv(b"Feature,Value\nage,71\n", FEATURES).values["age"] == 71


def test_csv_missing_columns_named_with_the_not_measured_advice():
    names = [n for n in NAMES if n not in ("sodium", "albumin")]
    data = (",".join(names) + "\n" + ",".join(str(PATIENT[n]) for n in names) + "\n").encode()
    error = one_error(parse_structured_csv, data, FEATURES, filename="pt.csv")
    assert error.field == "pt.csv header (line 1)"
    assert "missing column(s): sodium, albumin" in error.problem
    assert "keep the column and leave the cell empty" in error.accepted


def test_csv_unknown_columns_named_with_accepted_names_and_partial():
    data = wide_csv(PATIENT).decode().splitlines()
    data = (data[0] + ",patient_id,temp\n" + data[1] + ",123,38\n").encode()
    with pytest.raises(InputErrors) as info:
        parse_structured_csv(data, FEATURES)
    (error,) = info.value.errors
    assert "unknown columns: 'patient_id', 'temp'" in error.problem and "temperature_max for 'temp'" in error.problem
    assert "the model's feature names: age, sex" in error.accepted and "albumin" in error.accepted
    assert info.value.partial.values["age"] == 71  # the valid columns are kept


@pytest.mark.parametrize(
    "data, field, words",
    [
        (wide_csv(PATIENT) + b"70,male" + b"," * 17 + b"\n", "upload.csv", ["2 data rows", "one patient"]),
        (",".join(NAMES).encode() + b"\n", "upload.csv", ["header but no data row"]),
        (b"", "upload.csv", ["empty"]),
        (b"  \n\n", "upload.csv", ["only whitespace"]),
        (
            "age,sex\n70,f\u00e9male\n".encode("cp1252"),
            "upload.csv",
            ["byte 12 (0xe9, line 2) is not valid UTF-8", "Windows-1252", "save the file as UTF-8"],
        ),
        ("age,sex\n70,female\n".encode("utf-16"), "upload.csv", ["UTF-16"]),
        (b"PK\x03\x04\x14\x00\x06\x00 workbook", "upload.csv", ["ZIP archive", "xlsx"]),
        (b"%PDF-1.7 \x00\x01", "upload.csv", ["PDF document"]),
        (b'{"age": 71}', "upload.csv", ["looks like JSON"]),
        (b"patient record for Mrs Smith\n", "upload.csv", ["not a CSV table"]),
        (b'age,sex\n71,"female\n', "upload.csv line", ["not valid CSV"]),
        (b"feature,value,unit,comment\nage,71,,\n", "upload.csv header", ["unexpected column(s) ['comment']"]),
    ],
)
def test_csv_file_level_errors(data, field, words):
    error = one_error(parse_structured_csv, data, FEATURES)
    assert error.field.startswith(field)
    for word in words:
        assert word in str(error)
    assert "Accepted:" in str(error)


def test_csv_cell_errors_name_the_line_and_feature():
    values = {**PATIENT, "creatinine": 88, "sex": "unknown"}
    errors = errors_of(parse_structured_csv, wide_csv(values), FEATURES, filename="pt.csv")
    fields = {e.field: e for e in errors}
    assert set(fields) == {"pt.csv line 2, creatinine", "pt.csv line 2, sex"}
    assert "looks like µmol/L" in fields["pt.csv line 2, creatinine"].problem
    short = (",".join(NAMES) + "\n71,female\n").encode()
    assert "2 cells but the header has 19 columns" in one_error(parse_structured_csv, short, FEATURES).problem


def test_csv_long_errors():
    data = b"feature,value,unit\nage,71,\nage,72,\nfoo,1,\ntemperature_max,38,bananas\n,3,\n"
    errors = {e.field: e for e in errors_of(parse_structured_csv, data, FEATURES)}
    assert "appears again (first on line 2)" in errors["upload.csv line 3"].problem
    assert "unknown feature: 'foo' on line(s) 4" in errors["upload.csv"].problem
    assert "unit 'bananas' is not accepted" in errors["upload.csv line 5, temperature_max"].problem
    assert "feature cell is empty" in errors["upload.csv line 6"].problem
    assert "no data rows" in one_error(parse_structured_csv, b"feature,value\n", FEATURES).problem


# --------------------------------------------------------------------------------------------- JSON
def test_json_both_forms():
    data = json.dumps(
        {
            "age": 71,
            "sex": "female",
            "temperature_max": {"value": 101.3, "unit": "[degF]"},
            "creatinine": {"value": 1.5},
            "albumin": None,
            "sodium": "134",
        }
    ).encode()
    result = parse_structured_json(data, FEATURES)
    assert result.source == "json" and list(result.values) == NAMES
    assert result.values["temperature_max"] == 38.5 and result.values["creatinine"] == 1.5
    assert result.values["sodium"] == 134 and result.values["albumin"] is None
    assert result.notes[0] == "temperature_max: 101.3 °F converted to 38.5 °C"
    assert result.notes[1].startswith("not in the file, so not measured: admission_type")


@pytest.mark.parametrize(
    "data, field, words",
    [
        (b'{"age": 71,', "upload.json", ["not valid JSON", "line 1, column 12"]),
        (b'[{"age": 71}]', "upload.json", ["list of 1 item"]),
        (b'"age"', "upload.json", ["top level is a str"]),
        (b'{"resourceType": "Bundle", "entry": []}', "upload.json", ["FHIR resource", "FHIR R4 Bundle"]),
        (b'{"age": 71, "bmi": 30}', "upload.json", ["unknown feature: 'bmi'"]),
        (b'{"temperature_max": {"value": 38.5, "units": "C"}}', "upload.json temperature_max", ["key(s) ['units']"]),
        (b'{"temperature_max": {"unit": "C"}}', "upload.json temperature_max", ['without a "value" key']),
        (
            b'{"temperature_max": {"value": 101.3, "unit": "Cel"}}',
            "upload.json temperature_max",
            ["outside the plausible range 30-44 °C"],
        ),
        (b"\xff\xfe{\x00}\x00", "upload.json", ["UTF-16"]),
        (b"", "upload.json", ["empty"]),
    ],
)
def test_json_errors(data, field, words):
    error = one_error(parse_structured_json, data, FEATURES)
    assert error.field == field
    for word in words:
        assert word in error.problem or word in error.accepted


def test_parse_structured_file_dispatches_on_content():
    assert parse_structured_file("x.txt", wide_csv(PATIENT), FEATURES).source == "csv"
    assert parse_structured_file("x.csv", b' \n{"age": 71}', FEATURES).source == "json"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Patient", "id": "p", "gender": "male"}}],
    }
    result = parse_structured_file("b.json", json.dumps(bundle).encode(), FEATURES)
    assert result.source == "fhir" and result.values["sex"] == "male"


# ------------------------------------------------------------------------------- digits and new categories
@pytest.mark.parametrize(
    "raw, digit",
    [
        ("\u0663\u0668", "\u0663"),  # Arabic-Indic 38: float() reads it as 38.0
        ("\uff13\uff18.\uff15", "\uff13"),  # full-width 38.5
        ("38.\u0665", "\u0665"),  # one non-ASCII digit is enough
        ("\u06f3\u06f8 \u00b0C", "\u06f3"),  # extended Arabic-Indic, with a unit
    ],
)
def test_only_ascii_digits_are_numbers(raw, digit):
    assert float(raw.split()[0]) > 0  # Python would accept it: the parser must not
    error = one_error(parse_structured_form, {"temperature_max": raw}, FEATURES)
    assert error.field == "temperature_max"
    assert f"has a digit that is not 0-9 ({digit!r}" in error.problem and "digits 0-9" in error.accepted
    error = one_error(parse_structured_csv, f"feature,value\ntemperature_max,{raw}\n".encode(), FEATURES)
    assert "not 0-9" in error.problem and "line 2" in error.field
    assert parse_structured_form({"temperature_max": "38.5"}, FEATURES).values["temperature_max"] == 38.5


OPEN = [
    FeatureSpec.from_dict({**f.to_dict(), "accepts_unknown": True}) if f.name == "discharge_disposition" else f
    for f in FEATURES
]


def test_an_unseen_category_is_accepted_with_a_note_when_the_feature_allows_it():
    result = parse_structured_form({"discharge_disposition": " Hospice "}, OPEN)
    assert result.values["discharge_disposition"] == "Hospice"
    assert result.notes == [
        "discharge_disposition: 'Hospice' is not a category the model was trained on; treated as unknown"
    ]
    typo = parse_structured_form({"discharge_disposition": "skilled_nursin"}, OPEN)
    assert (
        typo.values["discharge_disposition"] == "skilled_nursin" and "did you mean 'skilled_nursing'?" in typo.notes[0]
    )
    known = parse_structured_form({"discharge_disposition": "SNF"}, OPEN)  # an alias is still the category
    assert known.values["discharge_disposition"] == "skilled_nursing" and known.notes == []
    from_csv = parse_structured_csv(wide_csv({**PATIENT, "discharge_disposition": "hospice"}), OPEN)
    assert from_csv.values["discharge_disposition"] == "hospice" and "treated as unknown" in from_csv.notes[0]
    from_json = parse_structured_json(json.dumps({"discharge_disposition": "hospice"}).encode(), OPEN)
    assert any("treated as unknown" in note for note in from_json.notes)
    assert (
        "another value is treated as unknown"
        in one_error(parse_structured_form, {"discharge_disposition": 3}, OPEN).accepted
    )


def test_an_unseen_category_is_still_refused_where_the_model_cannot_take_it():
    error = one_error(parse_structured_form, {"discharge_disposition": "hospice"}, FEATURES)
    assert "'hospice' is not a category of discharge_disposition" in error.problem
    error = one_error(parse_structured_form, {"sex": "hospice"}, OPEN)  # only the open feature accepts it
    assert "not a category of sex" in error.problem
    with pytest.raises(ValueError, match="accepts_unknown"):
        FeatureSpec("age", "numeric", "structured", accepts_unknown=True)
    assert "accepts_unknown" not in FEATURES[1].to_dict()  # datasets and saved states never carry the flag
