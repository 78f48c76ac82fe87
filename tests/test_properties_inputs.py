"""Property tests (hypothesis, fixed small budgets) of every input parser and validator: whatever the input, a
parser either returns a valid result or raises only the documented InputError / InputErrors, each naming a field;
accepted values survive parse -> serialise -> parse unchanged (JSON, wide CSV, long CSV), an accepted note equals
its bytes. The properties are the fuzz targets' own checks (mmnar_lab.fuzz_targets), so `python -m mmnar_core
fuzz` and these tests hold the parsers to the same rules."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from mmnar_core.inputs import (
    InputError,
    InputErrors,
    build_record,
    parse_fhir_bundle,
    parse_structured_csv,
    parse_structured_file,
    parse_structured_form,
    parse_structured_json,
    parse_value,
    read_image_upload,
    read_text_upload,
)
from mmnar_core.schema import FeatureKind, ModalityKind, ModalitySpec
from mmnar_lab import fuzz_targets as ft

from support.property_budget import budget

FEATURES = ft.demo_features()
NAMES = [f.name for f in FEATURES]
CONTEXT = {"features": FEATURES}


# ------------------------------------------------------------------------------------------------ strategies
TRICKY_STRINGS = [
    "38.5",
    "101.3 °F",
    "101.3°F",
    "NA",
    "n/a",
    "",
    "  ",
    "<0.5",
    ">= 3",
    "38,5",
    "1,200",
    "1e3",
    " 1e999 ",
    "\u22121.5",
    "nan",
    "inf",
    "-inf",
    "female",
    "F",
    "Male ",
    "yes",
    "no",
    "true",
    "0",
    "1",
    "2",
    "133 umol/L",
    "8500 /uL",
    "0.93",
    "13.2 10*3/uL",
    "7 days",
    "36 h",
    "3 weeks",
    "850 months",
    "1 kg",
    "37 Cel",
    "310 K",
    "Home with services",
    "SNF",
    "home-health",
    "emergency",
    "URGENT",
    "\x00",
    "١٢٣",
    "12\u00a0mmHg",
    "0x10",
    "1_000",
    "+5",
    ".5",
    "5.",
    "1e-400",
    "99999999999999999999",
]
UNITS = [
    "°F",
    "[degF]",
    "Cel",
    "K",
    "umol/L",
    "µmol/L",
    "mmol/L",
    "g/L",
    "mg/dL",
    "/uL",
    "10*3/uL",
    "%",
    "1",
    "months",
    "h",
    "wk",
    "kPa",
    "mm[Hg]",
    "/min",
    "bpm",
    "pg/mL",
    "ng/L",
    "furlong",
    "",
    "   ",
]
# integers beyond the float range and beyond Python's 4,300-digit str() limit (built lazily: hypothesis reprs strategies)
# (JSON files cannot hold more than 4,300 digits: load_json refuses them; Python callers of the form can)
huge = st.sampled_from([(1, 400), (-1, 400), (1, 20), (1, 4000)]).map(lambda sign_exp: sign_exp[0] * 10 ** sign_exp[1])
huger = st.sampled_from([5000, 9000]).map(lambda exponent: 10**exponent)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(TRICKY_STRINGS),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["value", "unit", "x", "1"]), inner, max_size=3)
    ),
    max_leaves=6,
)
with_unit = st.fixed_dictionaries(
    {"value": st.one_of(json_values, huger)}, optional={"unit": st.one_of(st.sampled_from(UNITS), json_values)}
)
raw_values = st.one_of(scalars, scalars, with_unit, json_values, huger)
keys = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(NAMES),
    st.sampled_from(["heart_rate", "Age", "sex ", "wbc_count", ""]),
    st.text(max_size=15),
)


def valid_value(feature):
    """A value the feature accepts, in its own unit (or not measured)."""
    if feature.kind is FeatureKind.CATEGORICAL:
        return st.one_of(st.none(), st.sampled_from(list(feature.categories)))
    if feature.kind is FeatureKind.BINARY:
        return st.one_of(st.none(), st.sampled_from([0.0, 1.0]))
    low, high = feature.valid_range if feature.valid_range is not None else (-1e6, 1e6)
    if (feature.unit or "").lower() in ("count", "") and float(low).is_integer() and feature.unit == "count":
        return st.one_of(st.none(), st.integers(int(math.ceil(low)), int(high)).map(float))
    return st.one_of(st.none(), st.floats(low, high, allow_nan=False, allow_infinity=False))


valid_patients = st.fixed_dictionaries({f.name: valid_value(f) for f in FEATURES})


def mutated(seeds: list[bytes]):
    """A seed with a few edits: truncation, a byte flipped or set, a run of random bytes inserted or written."""
    edit = st.tuples(
        st.sampled_from(["cut", "flip", "set", "insert", "write"]),
        st.integers(0, 2**31),
        st.integers(0, 255),
        st.binary(min_size=1, max_size=32),
    )

    def apply(seed_edits):
        seed, edits = seed_edits
        data = bytearray(seed)
        for kind, position, byte, run in edits:
            at = position % (len(data) + 1)
            if kind == "cut":
                del data[at:]
            elif kind == "flip" and data:
                data[min(at, len(data) - 1)] ^= 1 << (byte % 8)
            elif kind == "set" and data:
                data[min(at, len(data) - 1)] = byte
            elif kind == "insert":
                data[at:at] = run
            else:
                data[at : at + len(run)] = run
        return bytes(data)

    return st.tuples(st.sampled_from(seeds), st.lists(edit, min_size=1, max_size=4)).map(apply)


def outcome_of(call, *args, **kwargs):
    """('accepted', result) or ('refused', None); only InputError / InputErrors, each naming a field, may escape."""
    return ft._parse(call, CONTEXT, *args, **kwargs)


# ------------------------------------------------------------------------------------------------ one value, a form
@budget(300)
@given(feature=st.sampled_from(FEATURES), raw=raw_values)
@example(feature=FEATURES[0], raw=10**400)  # int beyond the float range: was an OverflowError
def test_parse_value_gives_a_valid_value_or_an_error_naming_the_feature(feature, raw):
    try:
        value, note = parse_value(feature, raw)
    except InputError as error:
        ft.check_input_errors(error)
        assert error.field == feature.name and error.feature == feature.name
        return
    ft.check_structured(_only(feature, value), FEATURES)
    assert note is None or note.startswith(feature.name + ": ")


def _only(feature, value):
    from mmnar_core.inputs import StructuredInput

    return StructuredInput({**{n: None for n in NAMES}, feature.name: value})


@budget(200)
@given(values=st.dictionaries(keys, raw_values, max_size=8))
def test_any_form_parses_or_raises_input_errors_with_a_partial_result(values):
    outcome, result = outcome_of(parse_structured_form, values, FEATURES)
    if outcome == "accepted":
        ft.check_structured(result, FEATURES)
        ft.round_trip(result.values, FEATURES)
    else:
        with pytest.raises(InputErrors) as info:
            parse_structured_form(values, FEATURES)
        named = {e.feature for e in info.value.errors if e.feature}
        assert all(info.value.partial.values[name] is None for name in named)  # a bad field is never kept


@budget(120)
@given(patient=valid_patients)
def test_valid_values_round_trip_through_form_json_wide_and_long_csv(patient):
    form = parse_structured_form(patient, FEATURES)
    assert form.values == patient  # already in the features' units: nothing converted
    as_json = json.dumps({k: v for k, v in patient.items() if v is not None}).encode()
    assert parse_structured_json(as_json, FEATURES).values == patient
    assert parse_structured_file("p.json", as_json, FEATURES).values == patient

    def cell(v):
        return "" if v is None else repr(v) if isinstance(v, float) else str(v)

    measured = [n for n in NAMES if patient[n] is not None]
    assume(measured)  # a CSV row of empty cells is a blank line (skipped): a wide CSV needs one value
    wide = ",".join(NAMES) + "\r\n" + ",".join(cell(patient[n]) for n in NAMES) + "\r\n"
    assert parse_structured_csv(wide.encode(), FEATURES).values == patient
    assert parse_structured_csv(wide.replace(",", ";").encode("utf-8-sig"), FEATURES).values == patient
    long = "feature,value\n" + "".join(f"{n},{cell(patient[n])}\n" for n in measured)
    assert parse_structured_file("p.csv", long.encode(), FEATURES).values == patient


# ------------------------------------------------------------------------------------------------ files
csv_cells = st.one_of(
    st.sampled_from(NAMES + ["feature", "value", "unit", "Feature", "VALUE"]),
    st.sampled_from(TRICKY_STRINGS),
    st.sampled_from(UNITS),
    st.text(max_size=8),
)
csv_text = st.builds(
    lambda rows, delimiter, newline, quote: newline.join(
        delimiter.join(('"' + c.replace('"', '""') + '"') if quote and c else c for c in row) for row in rows
    ),
    st.lists(st.lists(csv_cells, min_size=1, max_size=6), min_size=0, max_size=5),
    st.sampled_from([",", ";", "\t", "|"]),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
)


@budget(200)
@given(
    data=st.one_of(
        csv_text.map(lambda t: t.encode("utf-8")),
        st.binary(max_size=300),
        st.sampled_from(ft._structured_seeds(CONTEXT)),
        mutated(ft._structured_seeds(CONTEXT)),
    )
)
def test_any_csv_or_structured_file_parses_or_raises_input_errors(data):
    assert ft._structured_csv(CONTEXT, data) in ("accepted", "refused")
    assert ft._structured_file(CONTEXT, data) in ("accepted", "refused")


@budget(80)
@given(text=st.text(max_size=200), digits=st.integers(4301, 6000))
def test_json_with_a_very_long_integer_is_an_input_error(text, digits):
    data = ('{"age": ' + "7" * digits + "}").encode()
    for call in (
        lambda: parse_structured_json(data, FEATURES),
        lambda: parse_structured_file("x.json", data, FEATURES),
    ):
        with pytest.raises(InputErrors, match="more than 4,300 digits"):
            call()
    assert ft._structured_form(CONTEXT, text.encode()) in ("accepted", "refused", "skipped")


# ------------------------------------------------------------------------------------------------ FHIR
SEED_BUNDLE = json.loads(ft.fhir_seed())


@st.composite
def bundles(draw):
    """The seed bundle with some resources dropped, repeated or changed: a key deleted or given any JSON value."""
    bundle = json.loads(json.dumps(SEED_BUNDLE))
    entries = bundle["entry"]
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["delete key", "set key", "set nested", "drop", "repeat", "entry junk"]))
        i = draw(st.integers(0, len(entries) - 1)) if entries else 0
        if not entries:
            break
        resource = entries[i].get("resource") if isinstance(entries[i], dict) else None
        if action in ("delete key", "set key", "set nested") and isinstance(resource, dict) and resource:
            key = draw(st.sampled_from(sorted(resource)))
            if action == "delete key":
                del resource[key]
            elif action == "set key" or not isinstance(resource[key], dict) or not resource[key]:
                resource[key] = draw(json_values)
            else:
                inner = resource[key]
                inner[draw(st.sampled_from(sorted(inner)))] = draw(json_values)
        elif action == "drop":
            entries.pop(i)
        elif action == "repeat":
            entries.append(json.loads(json.dumps(entries[i])))
        else:
            entries[i] = draw(st.one_of(json_values, st.fixed_dictionaries({"resource": json_values})))
    return bundle


@budget(250)
@given(bundle=bundles())
@example(
    bundle={
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": {"coding": []},
                    "code": {"coding": [{"code": "8867-4"}]},
                }
            }
        ],
    }
)
@example(
    bundle={
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"code": "8867-4"}]},
                    "valueQuantity": {"value": 10**400, "unit": "/min"},
                }
            }
        ],
    }
)
def test_any_fhir_bundle_parses_or_raises_input_errors(bundle):
    outcome, result = outcome_of(parse_fhir_bundle, bundle, FEATURES, "bundle.json", ft.REFERENCE_TIME)
    if outcome == "accepted":
        ft.check_structured(result, FEATURES)
    assert ft._fhir(CONTEXT, json.dumps(bundle).encode()) == outcome  # bytes and dict agree


@budget(80)
@given(data=st.one_of(st.binary(max_size=200), mutated(ft._fhir_seeds(CONTEXT))))
def test_any_fhir_bytes_parse_or_raise_input_errors(data):
    assert ft._fhir(CONTEXT, data) in ("accepted", "refused")


# ------------------------------------------------------------------------------------------------ uploads
IMAGES = ft.image_seeds()


@budget(150)
@given(
    data=st.one_of(mutated(IMAGES), st.binary(max_size=64), st.sampled_from(IMAGES)),
    name=st.sampled_from(["cxr.png", "cxr.jpg", "scan.dcm", "x", "notes.txt"]),
)
def test_any_image_upload_is_an_image_or_an_input_error(data, name):
    outcome, upload = outcome_of(read_image_upload, name, data, ft.MAX_IMAGE_BYTES, ft.MAX_PIXELS)
    if outcome == "accepted":
        assert upload.data == data and upload.preview.ndim == 2 and upload.width * upload.height >= 1
    assert ft._image(CONTEXT, data) == outcome


@budget(200)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(lambda t: t.encode("utf-8")),
        mutated(ft.text_seeds()),
        st.sampled_from(ft.text_seeds()),
    )
)
def test_any_note_is_its_own_text_or_an_input_error(data):
    assert ft._text(CONTEXT, data) in ("accepted", "refused")


@budget(100)
@given(
    body=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=200),
    bom=st.booleans(),
    crlf=st.booleans(),
)
def test_a_clinical_note_round_trips_unchanged(body, bom, crlf):
    text = f"Chest pain for 2 days; troponin rising. {body}\nPlan: admit to cardiology.\n"
    text = text.replace("\n", "\r\n") if crlf else text
    assert read_text_upload("discharge_note", ("\ufeff" if bom else "").encode() + text.encode("utf-8")) == text
    assert read_text_upload("discharge_note", text) == text


MODALITIES = [
    ModalitySpec("structured", ModalityKind.TABULAR, 19),
    ModalitySpec("cxr", ModalityKind.IMAGE, 256),
    ModalitySpec("discharge_note", ModalityKind.TEXT, 384),
]


@budget(100)
@given(
    patient_id=st.one_of(st.text(max_size=10), st.none(), st.integers()),
    images=st.dictionaries(
        st.sampled_from(["cxr", "ct", "discharge_note"]), st.one_of(st.none(), json_values), max_size=2
    ),
    texts=st.dictionaries(
        st.sampled_from(["discharge_note", "cxr", "notes"]),
        st.one_of(st.none(), st.text(max_size=40), st.binary(max_size=20)),
        max_size=2,
    ),
)
def test_build_record_takes_what_fits_the_model_or_raises_input_errors(patient_id, images, texts):
    try:
        record = build_record(patient_id, None, images, texts, MODALITIES)
    except InputErrors as error:
        ft.check_input_errors(error)
        return
    assert record.patient_id == patient_id.strip() and set(record.images) <= {"cxr"}
