"""Uploaded X-rays and notes: real and built PNG / JPEG / DICOM files, renamed and non-image files, cut and
damaged files, DICOM without pixel data, size limits, note encodings; and build_record -> a PatientRecord
the encoder takes as is (images as bytes)."""

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmnar_core.encoders.patient import PatientEncoder
from mmnar_core.inputs import (
    ImageUpload,
    InputError,
    InputErrors,
    build_record,
    parse_structured_form,
    read_image_upload,
    read_text_upload,
)
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.schema import MIMIC_STYLE_MODALITIES, FeatureSpec
from mmnar_lab.dicom import dicom_bytes, report_dicom

from support.encoders import tiny_image

ROOT = Path(__file__).resolve().parents[1]
COVID = ROOT.parent / "shared" / "data" / "covid-cxr-notes"
FEATURES = [FeatureSpec.from_dict(f) for f in json.loads((DEMO_BUNDLE / "dataset.json").read_text())["features"]]
MB = 2**20


def gradient(width=96, height=80) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return ((x * 2 + y) % 256).astype(np.uint8)


def png_bytes(array=None, mode="L") -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(gradient() if array is None else array)
    image.convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(array=None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gradient() if array is None else array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def error_of(call, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    return info.value


def real_case():
    """The first image of the COVID-19 image collection with a long clinical note, with that note."""
    if not (COVID / "metadata.csv").is_file():
        pytest.fail("../shared/data/covid-cxr-notes is not present: the tests read the shared data in place")
    with open(COVID / "metadata.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            path = COVID / "images" / row["staged_file"]
            if len(row["clinical_notes"]) > 200 and path.suffix == ".jpg" and path.is_file():
                return path, row["clinical_notes"]
    pytest.fail("no image with a clinical note in covid-cxr-notes")


# --------------------------------------------------------------------------------------------- images: happy
@pytest.mark.parametrize(
    "name, make, kind, media",
    [
        ("cxr.png", lambda: png_bytes(), "png", "image/png"),
        ("cxr_rgb.png", lambda: png_bytes(mode="RGB"), "png", "image/png"),
        ("cxr.jpg", lambda: jpeg_bytes(), "jpeg", "image/jpeg"),
        (
            "cxr.dcm",
            lambda: dicom_bytes(gradient().astype(np.uint16) * 16, bits_stored=12),
            "dicom",
            "application/dicom",
        ),
    ],
)
def test_images_are_read_with_preview(name, make, kind, media):
    data = make()
    upload = read_image_upload(name, data, max_bytes=MB)
    assert isinstance(upload, ImageUpload)
    assert (upload.kind, upload.media_type, upload.width, upload.height) == (kind, media, 96, 80)
    assert upload.data == data and upload.filename == name and upload.notes == []
    assert upload.preview.dtype == np.uint8 and upload.preview.shape == (80, 96)
    assert upload.preview.min() < 20 and upload.preview.max() > 200  # the gradient survives


def test_real_xray_jpeg_from_the_covid_collection():
    path, _ = real_case()
    data = path.read_bytes()
    upload = read_image_upload(path.name, data, max_bytes=16 * MB)
    with Image.open(path) as image:
        assert (upload.width, upload.height) == image.size
    assert upload.kind == "jpeg" and upload.preview.shape == (upload.height, upload.width)
    assert 20 < upload.preview.mean() < 235
    # the same file renamed to .png is still read as what it is
    renamed = read_image_upload("xray.png", data, max_bytes=16 * MB)
    assert renamed.kind == "jpeg" and "is a JPEG file although its name ends in .png" in renamed.notes[0]


def test_large_preview_is_downscaled_but_size_is_the_original():
    big = np.tile(gradient(), (30, 25))  # 2400 x 2400
    upload = read_image_upload("big.png", png_bytes(big), max_bytes=64 * MB)
    assert (upload.width, upload.height) == (2400, 2400) and upload.preview.shape == (1024, 1024)


# --------------------------------------------------------------------------------------------- images: bad
@pytest.mark.parametrize(
    "name, data, words",
    [
        (
            "scan.jpg",
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
            ["not a PNG, JPEG or DICOM image although its name ends in .jpg", "looks like a PDF document"],
        ),
        ("scan.png", b"PK\x03\x04\x14\x00\x00\x00 docx", ["looks like a ZIP archive"]),
        ("scan.png", b"Chest X-ray: no acute findings.\n", ["looks like text"]),
        ("scan.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00", ["looks like a GIF image"]),
        ("scan.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", ["looks like a HEIC photo"]),
        ("scan.bin", bytes(range(256)) * 4, ["unknown binary format"]),
    ],
)
def test_non_images_say_what_they_look_like(name, data, words):
    error = error_of(read_image_upload, name, data, max_bytes=MB)
    assert error.field == name
    for word in words:
        assert word in error.problem
    assert "PNG, JPEG or DICOM" in error.accepted


@pytest.mark.parametrize("name, make", [("cut.png", png_bytes), ("cut.jpg", jpeg_bytes)])
def test_truncated_images(name, make):
    data = make()
    error = error_of(read_image_upload, name, data[: len(data) // 2], max_bytes=MB)
    assert error.field == name and "is truncated" in error.problem and "complete file" in error.accepted


def test_truncated_dicom_pixel_data():
    data = dicom_bytes(gradient().astype(np.uint16))
    error = error_of(read_image_upload, "cut.dcm", data[:-3000], max_bytes=MB)
    assert "DICOM" in error.problem and "truncated" in error.problem


def test_damaged_png():
    data = bytearray(png_bytes(np.random.default_rng(0).integers(0, 255, (80, 96), dtype=np.uint8)))
    start = data.index(b"IDAT") + 40
    data[start : start + 200] = bytes(200)  # zero the middle of the compressed stream; IEND is still there
    error = error_of(read_image_upload, "bad.png", bytes(data), max_bytes=MB)
    assert "bad.png" == error.field and "PNG" in error.problem
    assert "damaged" in error.problem or "truncated" in error.problem


def test_dicom_without_pixel_data():
    error = error_of(read_image_upload, "report.dcm", report_dicom(), max_bytes=MB)
    assert error.field == "report.dcm" and "has no pixel data" in error.problem
    assert "Basic Text SR Storage" in error.problem and "modality SR" in error.problem
    assert "DICOM image" in error.accepted
    # image attributes but the pixel data element missing
    stripped = dicom_bytes(gradient().astype(np.uint16), pixel_data=False)
    error = error_of(read_image_upload, "stripped.dcm", stripped, max_bytes=MB)
    assert "has no pixel data" in error.problem


def test_size_limits_and_empty_file():
    data = png_bytes(np.random.default_rng(0).integers(0, 255, (80, 96), dtype=np.uint8))
    assert len(data) > 5000
    error = error_of(read_image_upload, "cxr.png", data, max_bytes=5000)
    assert "larger than the limit of 4.9 kB (5,000 bytes)" in error.problem and "at most 4.9 kB" in error.accepted
    error = error_of(read_image_upload, "cxr.png", data, max_bytes=MB, max_pixels=1000)
    assert "7,680 pixels is more than the limit of 1,000" in error.problem and "at most 1,000 pixels" in error.accepted
    assert "empty (0 bytes)" in error_of(read_image_upload, "cxr.png", b"", max_bytes=MB).problem


@pytest.mark.parametrize(
    "call, data, kind",
    [
        (read_image_upload, b"\x89PNG\r\n\x1a\n" + bytes(5000), "too_large"),  # over max_bytes=4000
        (read_image_upload, b"%PDF-1.4 scan", "wrong_type"),
        (
            read_image_upload,
            png_bytes(np.random.default_rng(0).integers(0, 255, (80, 96), dtype=np.uint8))[:2000],
            "invalid",
        ),  # truncated
        (read_image_upload, b"", "invalid"),
        (read_text_upload, b"x" * 5000, "too_large"),  # over max_chars=200 whatever the encoding
        (read_text_upload, "x" * 300, "too_large"),
        (read_text_upload, b"%PDF-1.4 discharge summary", "wrong_type"),
        (read_text_upload, b"ELF\x00\x01\x02binary", "wrong_type"),
        (read_text_upload, "Fi\u00e8vre".encode("latin-1"), "invalid"),
    ],
)
def test_errors_say_their_kind(call, data, kind):
    limit = {"max_bytes": 4000} if call is read_image_upload else {"max_chars": 200}
    error = error_of(call, "upload", data, **limit)
    assert error.kind == kind
    assert set(error.to_dict()) == {"field", "problem", "accepted", "feature", "message"}  # kind is not shown
    assert [e.kind for e in InputErrors([error]).errors] == [kind]


def test_error_kind_defaults_to_invalid_and_is_checked():
    assert InputError("age", "not a number", "a number").kind == "invalid"
    with pytest.raises(ValueError, match="too_large"):
        InputError("age", "not a number", "a number", kind="too big")


def test_server_upload_keeps_the_pixels_instead_of_a_preview(monkeypatch):
    """The server reads each image once: the encoder gets the pixels decoded while checking the upload."""
    from mmnar_core.encoders import image_io

    decoded = []
    decode = image_io._decode_pil
    monkeypatch.setattr(image_io, "_decode_pil", lambda *args: decoded.append(args[2]) or decode(*args))
    data = png_bytes()
    upload = read_image_upload("cxr.png", data, max_bytes=MB, preview=False, keep_pixels=True)
    assert upload.preview is None and upload.data == data and (upload.width, upload.height) == (96, 80)
    assert image_io.load_image(upload.data) is upload.data.pixels
    assert decoded == ["png"]
    with pytest.raises(image_io.ImageTooLargeError):  # a smaller limit than the upload's is still enforced
        image_io.load_image(upload.data, max_pixels=1000)
    assert read_image_upload("cxr.png", data, max_bytes=MB).data.__class__ is bytes  # the app keeps bytes only


# --------------------------------------------------------------------------------------------- notes
def test_real_note_text_and_bom():
    _, note = real_case()
    assert read_text_upload("discharge_note", note) == note
    assert read_text_upload("discharge_note", b"\xef\xbb\xbf" + note.encode("utf-8")) == note
    report = "FINDINGS: Heart size normal. No pleural effusion.\nIMPRESSION: No acute disease.\n"
    assert read_text_upload("radiology_report", report.encode()) == report


@pytest.mark.parametrize(
    "data, words",
    [
        (
            "Patient febrile, 38.9 \u00b0C; caf\u00e9 au lait spots.".encode("cp1252"),
            ["byte 22 (0xb0, line 1) is not valid UTF-8", "Windows-1252", "save the file as UTF-8"],
        ),
        ("No acute disease.".encode("utf-16"), ["UTF-16"]),
        (b"", ["the file is empty"]),
        (b"  \n\t\n", ["only whitespace"]),
        ("   ", ["only whitespace"]),
        ("Name: ___\nUnit No: ___\nAdmission Date: ___\n", ["no clinical text"]),
        (png_bytes(), ["not a text file", "PNG image"]),
        (b"%PDF-1.4 discharge summary", ["PDF document"]),
        (b"{\\rtf1\\ansi Discharge summary}", ["RTF document", "plain text"]),
        (b"ELF\x00\x01\x02binary\x00\x00", ["binary file"]),
        ("x" * 300, ["300 characters, more than the limit of 200"]),
        (b"x" * 2000, ["longer than the limit of 200 characters"]),
    ],
)
def test_bad_notes(data, words):
    error = error_of(read_text_upload, "discharge_note", data, max_chars=200)
    assert error.field == "discharge_note"
    for word in words:
        assert word in error.problem
    assert "UTF-8" in error.accepted


# --------------------------------------------------------------------------------------------- build_record
def test_build_record_passes_image_bytes_the_encoder_reads():
    path, note = real_case()
    upload = read_image_upload(path.name, path.read_bytes(), max_bytes=16 * MB)
    structured = parse_structured_form({"age": 64, "sex": "male", "temperature_max": "101.3 F"}, FEATURES)
    record = build_record(
        " p-1 ", structured, {"cxr": upload}, {"discharge_note": note, "radiology_report": "  "}, MIMIC_STYLE_MODALITIES
    )
    assert record.patient_id == "p-1" and record.images == {"cxr": upload.data}
    assert record.texts == {"discharge_note": note} and record.structured["temperature_max"] == 38.5
    assert record.availability(MIMIC_STYLE_MODALITIES, FEATURES) == (True, True, True, False)
    embedder = tiny_image(0)
    vectors = PatientEncoder(MIMIC_STYLE_MODALITIES, image=embedder).encode(record)
    np.testing.assert_allclose(vectors["cxr"], embedder.embed([path])[0], atol=1e-6)  # bytes == the file


def test_build_record_errors():
    upload = read_image_upload("cxr.png", png_bytes(), max_bytes=MB)
    with pytest.raises(InputErrors) as info:
        build_record(
            "",
            None,
            {"ct": upload, "cxr": png_bytes()},
            {"cxr": "text", "discharge_note": b"raw bytes"},
            MIMIC_STYLE_MODALITIES,
        )
    errors = {e.field: e for e in info.value.errors}
    assert "is empty" in errors["patient_id"].problem
    assert "not an image modality" in errors["images['ct']"].problem and "cxr" in errors["images['ct']"].accepted
    assert "expected an ImageUpload" in errors["cxr"].problem
    assert "not a text modality" in errors["texts['cxr']"].problem
    assert "discharge_note, radiology_report" in errors["texts['cxr']"].accepted
    assert "expected the note as text" in errors["discharge_note"].problem  # validated by read_text_upload first
    record = build_record("p", None, {}, {}, MIMIC_STYLE_MODALITIES)
    assert record.availability(MIMIC_STYLE_MODALITIES, FEATURES) == (False, False, False, False)
