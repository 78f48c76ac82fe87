"""Model server (mmnar_core.serving) on the demo bundle: every endpoint's round trip with numbers identical
to the in-process predictor, the app's input formats, and every bad-input class -> its 4xx JSON error
with the app's own message (never a 500 or a traceback)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mmnar_app.demo_patients import load_demo_patients
from mmnar_core.explain.explanation import input_hash
from mmnar_core.model_info import ModelInfo, model_info
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.serving import ServeConfig, create_app
from mmnar_lab.dicom import report_dicom
from mmnar_lab.serving.testing import cached_predictor

from support.fhir import make_bundle

BUNDLE = DEMO_BUNDLE
FAST_DEMO = "Demo 06"  # structured + X-ray, no notes: fast
EXTRA = ("input_hash", "input_notes", "model_id")


@pytest.fixture(scope="module")
def predictor():
    return cached_predictor(BUNDLE)


@pytest.fixture(scope="module")
def demo():
    return next(d for d in load_demo_patients() if d.label.startswith(FAST_DEMO))


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, ServeConfig())) as test_client:
        yield test_client


def inputs(demo, structured=None, **files):
    """(data, files) of a multipart request: the demo patient's values and X-ray unless replaced."""
    data = {"structured": json.dumps(demo.structured if structured is None else structured), "patient_id": demo.key}
    parts = {"cxr": ("cxr.png", demo.images["cxr"], "image/png")}
    parts.update(files)
    return data, [(k, v) for k, v in parts.items() if v is not None]


def without(body: dict, *keys) -> dict:
    return {k: v for k, v in body.items() if k not in keys}


def image_bytes(fmt: str, seed: int = 0, size=(96, 80)) -> bytes:
    buffer = io.BytesIO()
    pixels = (np.random.default_rng(seed).random(size[::-1]) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ round trips
@pytest.mark.slow
def test_probes_info_stats_and_docs(client, predictor):
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["model_id"] == predictor.model_id
    info = client.get("/info").json()
    assert info == json.loads(json.dumps(model_info(predictor).to_dict()))
    assert ModelInfo.from_dict(info).version == model_info(predictor).version and info["model_card"]
    stats = client.get("/stats").json()
    assert {"batches", "requests_per_batch", "queue_depth", "rejected", "timeouts"} <= set(stats)
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/what-if", "/explain", "/info", "/ready", "/health", "/stats"} <= set(schema["paths"])
    fields = schema["paths"]["/explain"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"][
        "properties"
    ]
    assert {"structured", "structured_file", "cxr", "discharge_note", "radiology_report", "task"} <= set(fields)
    assert fields["task"]["enum"] == [*predictor.config.tasks, "all"]
    assert {"400", "413", "415", "422", "503", "504"} <= set(schema["paths"]["/predict"]["post"]["responses"])
    assert "swagger" in client.get("/docs").text.lower()


def test_predict_what_if_explain_are_identical_to_the_predictor(client, predictor, demo):
    record = demo.record()
    data, files = inputs(demo)
    body = client.post("/predict", data=data, files=files).json()
    assert without(body, "input_hash", "input_notes") == predictor.predict(record).to_dict()  # bit-identical floats
    assert body["input_hash"] == input_hash(record) and body["model_id"] == predictor.model_id

    body = client.post("/what-if", data=data, files=files).json()
    assert without(body, *EXTRA) == predictor.what_if(record).to_dict()
    assert body["shapley"] and body["subsets"]

    task = predictor.config.tasks[-1]
    response = client.post("/explain", data={**data, "task": task}, files=files)
    expected = predictor.explain(record, tasks=[task]).to_dict()
    assert response.status_code == 200
    assert without(response.json(), "timings", "input_notes") == without(expected, "timings")
    again = client.post("/explain", data={**data, "task": task}, files=files).json()  # from the server's cache
    assert without(again, "timings", "input_notes") == without(expected, "timings")
    assert client.get("/stats").json()["explain_cache"]["hits"] >= 1
    first = client.post("/explain", data={**data, "task": task, "modalities": "structured"}, files=files).json()
    limited = predictor.explain(record, tasks=[task], modalities=["structured"]).to_dict()
    assert without(first, "timings", "input_notes") == without(limited, "timings")  # its own cache key too
    assert [a["modality"] for a in first["tabular"]] == ["structured"] and not first["images"]
    risks_only = client.post("/explain", data={**data, "task": task, "modalities": ""}, files=files).json()
    assert not risks_only["tabular"] and not risks_only["images"] and not risks_only["texts"]  # the app's first answer
    assert risks_only["prediction"] == expected["prediction"] and risks_only["what_if"] == expected["what_if"]
    other = client.post("/explain", data={**data, "task": task, "patient_id": "someone else"}, files=files).json()
    assert other["patient_id"] == other["prediction"]["patient_id"] == other["what_if"]["patient_id"] == "someone else"
    assert other["input_hash"] == expected["input_hash"]  # the id is not an input of the model
    default = client.post("/explain", data=data, files=files).json()
    assert default["tasks"] == [predictor.config.tasks[0]]
    # every outcome in one run: the predictor's explain without tasks, and a summary card per outcome
    every = client.post("/explain", data={**data, "task": "all"}, files=files).json()
    assert without(every, "timings", "input_notes") == without(predictor.explain(record).to_dict(), "timings")
    assert every["tasks"] == list(predictor.config.tasks)
    assert [card["task"] for card in every["summary"]] == list(predictor.config.tasks)
    assert all(card["drivers"] for card in every["summary"])
    refused = client.post("/explain", data={**data, "task": "everything"}, files=files)
    assert refused.status_code == 422 and "or all (every outcome in one run)" in refused.text


def test_each_uploaded_image_is_decoded_once_per_request(client, predictor, demo, monkeypatch):
    """Validation, the encoder and the explanation share one decoding of the X-ray."""
    from mmnar_core.encoders import image_io

    decoded = []
    decode = image_io._decode_pil
    monkeypatch.setattr(image_io, "_decode_pil", lambda *args: decoded.append(args[2]) or decode(*args))
    data, files = inputs(demo, cxr=("cxr.png", image_bytes("PNG", seed=7), "image/png"))  # not in the explain cache
    task = predictor.config.tasks[0]
    for endpoint, extra in (("/predict", {}), ("/explain", {"task": task})):
        decoded.clear()
        response = client.post(endpoint, data={**data, **extra}, files=files)
        assert response.status_code == 200, response.text
        assert decoded == ["png"], endpoint


def test_app_input_formats_are_accepted(client, predictor, demo):
    """CSV with a unit, FHIR Bundle, `structured` over a file, JPEG named .png, no structured at all."""
    csv = "feature,value,unit\nage,71,years\nsex,female,\nheart_rate_max,112,beats/min\ntemperature_max,101.3,°F\n"
    response = client.post(
        "/predict", data={"patient_id": "csv"}, files=[("structured_file", ("vitals.csv", csv.encode(), "text/csv"))]
    )
    assert response.status_code == 200, response.text
    assert any("°F converted to 38.5" in n for n in response.json()["input_notes"])
    assert response.json()["available"] == ["structured"]

    bundle = json.dumps(make_bundle()).encode()
    both = client.post(
        "/predict",
        data={"structured": json.dumps({"age": 50})},
        files=[("structured_file", ("bundle.json", bundle, "application/fhir+json"))],
    )
    assert both.status_code == 200, both.text
    fhir_only = client.post("/predict", files=[("structured_file", ("bundle.json", bundle, "application/json"))])
    assert fhir_only.status_code == 200 and fhir_only.json()["risks"] != both.json()["risks"]  # age 50 overrode

    jpeg = image_bytes("JPEG")
    response = client.post("/predict", files=[("cxr", ("xray.png", jpeg, "image/png"))])
    assert response.status_code == 200, response.text
    assert response.json()["available"] == ["cxr"]
    assert any("JPEG file although its name ends in .png" in n for n in response.json()["input_notes"])


# ------------------------------------------------------------------------------------------------ bad inputs
def _damaged_png() -> bytes:
    data = bytearray(image_bytes("PNG", seed=1))
    start = data.index(b"IDAT") + 40
    data[start : start + 200] = bytes(200)
    return bytes(data)


def _csv_unknown_column(predictor) -> bytes:
    names = [f.name for f in predictor.features]
    return (",".join(names + ["patient_id"]) + "\n" + ",".join([""] * len(names) + ["p1"]) + "\n").encode()


PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n"
BAD = [
    # (case, endpoint, request (predictor, demo) -> (data, files), status, words in the messages)
    (
        "pdf renamed as png",
        "/predict",
        lambda p, d: inputs(d, cxr=("scan.png", PDF, "image/png")),
        415,
        ["scan.png: this is not a PNG, JPEG or DICOM image although its name ends in .png", "PDF document"],
    ),
    (
        "text as image",
        "/predict",
        lambda p, d: inputs(d, cxr=("xray.jpg", b"just some text\n" * 10, "image/jpeg")),
        415,
        ["xray.jpg", "looks like text"],
    ),
    (
        "renamed field",
        "/predict",
        lambda p, d: ({}, [("xray", ("cxr.png", d.images["cxr"], "image/png"))]),
        400,
        ["xray: not a field of POST /predict", "cxr (an image file"],
    ),
    (
        "field twice",
        "/predict",
        lambda p, d: (
            {},
            [("cxr", ("a.png", d.images["cxr"], "image/png")), ("cxr", ("b.png", d.images["cxr"], "image/png"))],
        ),
        400,
        ["cxr: given more than once"],
    ),
    (
        "truncated png",
        "/predict",
        lambda p, d: inputs(d, cxr=("xray.png", d.images["cxr"][:2000], "image/png")),
        422,
        ["xray.png", "truncated"],
    ),
    (
        "damaged png",
        "/predict",
        lambda p, d: inputs(d, cxr=("bad.png", _damaged_png(), "image/png")),
        422,
        ["bad.png", "PNG"],
    ),
    (
        "empty image",
        "/predict",
        lambda p, d: inputs(d, cxr=("cxr.png", b"", "image/png")),
        422,
        ["cxr.png: the file is empty (0 bytes)"],
    ),
    (
        "dicom without pixels",
        "/what-if",
        lambda p, d: inputs(d, cxr=("report.dcm", report_dicom(), "application/dicom")),
        422,
        ["report.dcm: the DICOM file has no pixel data", "Basic Text SR", "it is not an image"],
    ),
    (
        "csv missing columns",
        "/predict",
        lambda p, d: ({}, [("structured_file", ("upload.csv", b"age,sex\n71,female\n", "text/csv"))]),
        422,
        ["upload.csv header (line 1): missing column(s):", "keep the column and leave the cell empty"],
    ),
    (
        "csv unknown column",
        "/predict",
        lambda p, d: ({}, [("structured_file", ("upload.csv", _csv_unknown_column(p), "text/csv"))]),
        422,
        ["unknown column: 'patient_id'", "the model's feature names"],
    ),
    (
        "workbook as csv",
        "/predict",
        lambda p, d: ({}, [("structured_file", ("labs.csv", b"PK\x03\x04" + bytes(60), "text/csv"))]),
        415,
        ["labs.csv: this is not a text file: it looks like a ZIP archive"],
    ),
    (
        "binary as csv",
        "/predict",
        lambda p, d: ({}, [("structured_file", ("labs.csv", b"ELF\x00\x01\x02binary\x00", "text/csv"))]),
        415,
        ["labs.csv: this is a binary file, not text (it contains NUL bytes)"],
    ),
    (
        "out of range, looks like another unit",
        "/predict",
        lambda p, d: inputs(d, {"temperature_max": 101.3}),
        422,
        ["temperature_max: 101.3 is outside the plausible range 30-44 °C; it looks like °F (101.3 °F = 38.5 °C)"],
    ),
    (
        "creatinine in umol/L",
        "/explain",
        lambda p, d: inputs(d, {"creatinine": 88}),
        422,
        ["creatinine: 88 is outside the plausible range", "µmol/L"],
    ),
    (
        "unknown unit and not a number",
        "/predict",
        lambda p, d: inputs(d, {"temperature_max": "38 bananas", "heart_rate_max": "fast"}),
        422,
        ["unit 'bananas' is not accepted for temperature_max", "heart_rate_max: 'fast' is not a number"],
    ),
    (
        "unknown feature",
        "/predict",
        lambda p, d: inputs(d, {"temprature_max": 38.0}),
        422,
        ["structured: unknown feature: 'temprature_max'", "did you mean temperature_max"],
    ),
    (
        "structured not JSON",
        "/predict",
        lambda p, d: ({"structured": "{age: 71}"}, []),
        400,
        ["structured: not valid JSON"],
    ),
    ("structured a list", "/predict", lambda p, d: ({"structured": "[71]"}, []), 400, ["structured: a JSON list"]),
    (
        "note not UTF-8",
        "/predict",
        lambda p, d: inputs(d, discharge_note=("note.txt", "Fièvre et toux".encode("latin-1"), "text/plain")),
        422,
        ["discharge_note file note.txt: byte 2 (0xe8, line 1) is not valid UTF-8", "Windows-1252"],
    ),
    (
        "note UTF-16",
        "/predict",
        lambda p, d: inputs(d, radiology_report=("r.txt", "Fever and cough.".encode("utf-16"), "text/plain")),
        422,
        ["radiology_report file r.txt: the file is UTF-16 encoded"],
    ),
    (
        "empty note file",
        "/predict",
        lambda p, d: inputs(d, discharge_note=("empty.txt", b"", "text/plain")),
        422,
        ["discharge_note file empty.txt: the file is empty"],
    ),
    (
        "pdf as note",
        "/predict",
        lambda p, d: inputs(d, discharge_note=("note.txt", PDF, "text/plain")),
        415,
        ["note.txt: this is not a text file: it looks like a PDF document"],
    ),
    (
        "FHIR resource, not a Bundle",
        "/predict",
        lambda p, d: (
            {},
            [("structured_file", ("bundle.json", b'{"resourceType": "Patient", "id": "p"}', "application/json"))],
        ),
        422,
        ["bundle.json: resourceType is 'Patient': a single resource, not a Bundle"],
    ),
    (
        "FHIR not JSON",
        "/predict",
        lambda p, d: (
            {},
            [("structured_file", ("bundle.json", b'{"resourceType": "Bundle", "entry": [}', "application/json"))],
        ),
        422,
        ["bundle.json: not valid JSON"],
    ),
    (
        "FHIR without entries",
        "/predict",
        lambda p, d: (
            {},
            [
                (
                    "structured_file",
                    ("bundle.json", b'{"resourceType": "Bundle", "type": "collection"}', "application/json"),
                )
            ],
        ),
        422,
        ["bundle.json: the Bundle has no entries"],
    ),
    (
        "unknown task",
        "/explain",
        lambda p, d: ({**inputs(d)[0], "task": "mortality"}, inputs(d)[1]),
        422,
        ["task: 'mortality' is not an outcome of this model", "one of: readmission_30d, icu_90d, death_180d"],
    ),
    (
        "task on /predict",
        "/predict",
        lambda p, d: ({"task": "icu_90d"}, []),
        400,
        ["task: not a field of POST /predict"],
    ),
    (
        "unknown modality to attribute",
        "/explain",
        lambda p, d: ({**inputs(d)[0], "modalities": "cxr, ecg"}, inputs(d)[1]),
        422,
        [
            "modalities: 'ecg' is not a modality of this model",
            "comma-separated modality names of this model (structured, cxr, discharge_note, radiology_report), "
            "or empty for none",
        ],
    ),
    (
        "only commas as the modalities to attribute",
        "/explain",
        lambda p, d: ({**inputs(d)[0], "modalities": " , ,"}, inputs(d)[1]),
        422,
        ["modalities: no modality named"],
    ),
    (
        "modalities on /what-if",
        "/what-if",
        lambda p, d: ({"modalities": "cxr"}, []),
        400,
        ["modalities: not a field of POST /what-if"],
    ),
]


@pytest.mark.parametrize("case, endpoint, make, status, words", BAD, ids=[b[0] for b in BAD])
def test_bad_inputs_give_specific_4xx_json(client, predictor, demo, case, endpoint, make, status, words):
    data, files = make(predictor, demo)
    response = _post(client, endpoint, data, files)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == status and body["errors"]
    messages = "\n".join(e["message"] for e in body["errors"])
    for word in words:
        assert word in messages, messages
    for error in body["errors"]:
        assert {"field", "problem", "accepted", "feature", "message", "status"} <= set(error)
        assert error["message"] == f"{error['field']}: {error['problem']}. Accepted: {error['accepted']}"
    assert "Traceback" not in response.text


def _post(client, endpoint, data, files):
    """Multipart even when there is no file (httpx sends urlencoded for data alone)."""
    if files:
        return client.post(endpoint, data=data, files=files)
    parts = [(k, (None, v.encode() if isinstance(v, str) else v)) for k, v in data.items()]
    return client.post(endpoint, files=parts)


def test_request_level_errors(client, demo):
    response = client.post("/predict", json={"structured": demo.structured})
    assert response.status_code == 415 and "not multipart/form-data" in response.json()["errors"][0]["message"]
    response = client.post("/predict", content=b"--xyz\r\nnot a part", headers={"content-type": "multipart/form-data"})
    assert response.status_code == 400 and "boundary" in response.json()["errors"][0]["problem"]
    assert client.get("/nowhere").status_code == 404


def test_size_limits_give_413(predictor, demo):
    config = ServeConfig(
        max_request_bytes=120_000, max_image_bytes=30_000, max_structured_bytes=2_000, max_text_chars=200
    )
    xray = len(demo.images["cxr"])
    with TestClient(create_app(predictor, config)) as small:
        cases = [
            (
                inputs(demo),
                [
                    f"cxr.png: the file is {xray / 1024:.1f} kB ({xray:,} bytes), larger than the limit of 29.3 kB "
                    "(30,000 bytes)"
                ],
            ),
            (
                ({}, [("cxr", ("big.png", b"\x89PNG\r\n\x1a\n" + bytes(200_000), "image/png"))]),
                ["request: the request body is", "larger than the limit of 117.2 kB (120,000 bytes)"],
            ),
            (
                ({}, [("structured_file", ("labs.csv", b"age\n" + b"7" * 3000 + b"\n", "text/csv"))]),
                ["structured_file labs.csv: the file is 2.9 kB (3,005 bytes), over the limit of 2.0 kB (2,000 bytes)"],
            ),
            (
                ({}, [("discharge_note", (None, ("Fever and cough. " * 20).encode()))]),
                ["discharge_note: the note has 340 characters, more than the limit of 200"],
            ),
        ]
        for (data, files), words in cases:
            response = small.post("/predict", data=data, files=files)
            assert response.status_code == 413, response.text
            messages = "\n".join(e["message"] for e in response.json()["errors"])
            assert all(w in messages for w in words), messages
        assert xray > 30_000  # the demo X-ray is over the limit
