"""Property tests of the model server's request bodies, through FastAPI's TestClient with the demo model loaded
once: any multipart body (fields known or not, repeated, empty; values valid, damaged or random; a broken body;
another Content-Type) gets a 200 with risks / subsets, or a 400 / 413 / 415 / 422 JSON answer whose every error
names a field; never a 500."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mmnar_lab import fuzz_targets as ft
from mmnar_lab.dicom import dicom_bytes

from support.property_budget import budget


@pytest.fixture(scope="module")
def context():
    context = ft._server_setup()
    yield context
    ft._server_teardown(context)


IMAGES = ft.image_seeds()
# the windowed DICOM seed's attributes
WINDOWED_DX = dict(Modality="DX", WindowCenter="2000", WindowWidth="4000", RescaleSlope="1.5", RescaleIntercept="-10")
NOTES = ft.text_seeds()
STRUCTURED = [
    json.dumps({"age": 71, "sex": "female"}).encode(),
    json.dumps(ft.PATIENT).encode(),
    b'{"age": 500}',
    b'{"agee": 1}',
    b"[1, 2]",
    b"not json",
    b"{}",
    b"",
    b'{"age": ' + b"9" * 400 + b"}",
    b'{"age": ' + b"9" * 5000 + b"}",
    b'{"sex": {"value": "F", "unit": "kg"}}',
]
FILES = [
    ft.fhir_seed(),
    b"feature,value\nage,71\ncreatinine,133 umol/L\n",
    b"age,sex\n71,F\n",
    b"%PDF-1.4",
    b"feature,value\nage,71\nage,72\n",
]
FIELDS = ["structured", "structured_file", "cxr", "discharge_note", "radiology_report", "patient_id", "task"]


def mutate(seeds):
    return st.tuples(st.sampled_from(seeds), st.integers(0, 10**6), st.binary(max_size=12), st.booleans()).map(
        lambda s: (
            (s[0][: s[1] % (len(s[0]) + 1)] + s[2])
            if s[3]
            else (s[0][: s[1] % (len(s[0]) + 1)] + s[2] + s[0][s[1] % (len(s[0]) + 1) + len(s[2]) :])
        )
    )


values = st.one_of(
    st.sampled_from(IMAGES + NOTES + STRUCTURED + FILES),
    mutate(IMAGES),
    mutate(STRUCTURED + FILES),
    st.binary(max_size=40),
    st.sampled_from([b"icu_90d", b"death_180d", b"nope", b"bed 7", b"\xff"]),
)
parts = st.tuples(
    st.one_of(st.sampled_from(FIELDS), st.sampled_from(["xray", "", "cxr ", "Structured"])),
    values,
    st.one_of(st.none(), st.sampled_from(["f.png", "note.txt", "vitals.csv", "", "b.json", "x.dcm"])),
)


@st.composite
def requests(draw):
    selector = draw(st.sampled_from([0, 0, 1, 3, 4 << 2, 3 << 2, 7 << 2]))  # mostly /predict, multipart
    chosen = draw(st.lists(parts, max_size=4))
    body = ft.multipart(chosen)
    if draw(st.integers(0, 9)) == 0:  # now and then a damaged body
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.binary(max_size=8))
    return bytes([selector]) + body


@budget(45)
@given(data=requests())
@example(data=bytes([0]) + ft.multipart([("", b"x", None)]))  # a part without a name: the error named no field
@example(data=bytes([0]) + ft.multipart([("structured", b'{"age": ' + b"9" * 400 + b"}", None)]))  # was a 500
@example(data=bytes([0]) + ft.multipart([("structured", b'{"age": ' + b"9" * 5000 + b"}", None)]))  # was a 500
@pytest.mark.slow
def test_any_request_body_gets_200_or_a_4xx_naming_a_field(context, data):
    assert ft._server(context, data) in ("accepted", "refused")


def test_the_seed_requests_behave(context):
    outcomes = [ft._server(context, seed) for seed in ft._server_seeds(context)]
    assert outcomes.count("accepted") >= 4 and "refused" in outcomes


@pytest.mark.parametrize(
    "fields, status, words",
    [
        ([("structured", b'{"age": ' + b"9" * 400 + b"}", None)], 422, "is too large to be a number"),
        ([("structured", b'{"age": ' + b"9" * 5000 + b"}", None)], 400, "more than 4,300 digits"),
        ([("", b"x", None)], 400, "a part named '' is not a field"),
        (
            [
                (
                    "structured_file",
                    json.dumps(
                        {
                            "resourceType": "Bundle",
                            "entry": [
                                {
                                    "resource": {
                                        "resourceType": "Observation",
                                        "status": "final",
                                        "code": {"coding": True},
                                    }
                                }
                            ],
                        }
                    ).encode(),
                    "b.json",
                )
            ],
            422,
            "has no code",
        ),
        (
            [
                (
                    "structured_file",
                    json.dumps(
                        {
                            "resourceType": "Bundle",
                            "entry": [
                                {
                                    "resource": {
                                        "resourceType": "Observation",
                                        "status": {"x": 1},
                                        "code": {"coding": [{"code": "8867-4"}]},
                                    }
                                }
                            ],
                        }
                    ).encode(),
                    "b.json",
                )
            ],
            422,
            "the status is a JSON object, not a code",
        ),
        (
            [
                (
                    "cxr",
                    dicom_bytes(np.zeros((24, 32)), "MONOCHROME1", **WINDOWED_DX, damage=[(b"1.5 ", b"1&5 ")]),
                    "cxr.dcm",
                )
            ],
            422,
            "the DICOM attribute RescaleSlope (0028,1053) is '1&5', not a number",
        ),
    ],
)
def test_inputs_that_were_500s_are_4xx_with_their_field(context, fields, status, words):
    """Regressions found by fuzzing: each of these used to end in a 500 (an exception in the parsers)."""
    response = context["client"].post(
        "/predict",
        content=ft.multipart(fields),
        headers={"content-type": f"multipart/form-data; boundary={ft.BOUNDARY}"},
    )
    assert response.status_code == status, response.text
    assert words in response.text
    ft.check_status_body(response.json(), status)
