"""Fuzz targets: every parser and validator of user input, each with the property it must keep (docs/fuzzing.md).

A target takes arbitrary bytes and either accepts them (the result is then checked: every feature present and
valid, an image with pixels, a note equal to its bytes, a bundle that loads, a 200 from the server) or
refuses them with one of the DOCUMENTED errors only, whose messages name a field:

| target           | call                                                        | allowed refusal                 |
|------------------|-------------------------------------------------------------|---------------------------------|
| structured_form  | parse_structured_form(json.loads(data))                     | InputErrors                     |
| structured_csv   | parse_structured_csv(data) (+ JSON / CSV round trips)       | InputErrors                     |
| structured_file  | parse_structured_file(name, data) (CSV, JSON or FHIR)       | InputErrors                     |
| fhir_bundle      | parse_fhir_bundle(data, reference_time=fixed)               | InputErrors                     |
| image_upload     | read_image_upload(name, data) (PNG / JPEG / DICOM)          | InputError                      |
| text_upload      | read_text_upload(field, data) (+ text == bytes round trip)  | InputError                      |
| bundle           | verify_bundle + load_bundle of a mutated copy of a bundle   | BundleError                     |
| server           | multipart body -> POST /predict or /what-if (TestClient),   | HTTP 400/413/415/422 JSON whose |
|                  | or /explain's parsing                                       | errors name a field; never 500  |

Anything else (another exception type, a 500, an error without a field, a result that breaks the property)
raises `PropertyViolation` or escapes as is: the fuzzer records it as a crash. `Target.setup()` builds what
a target needs once per process (features, a temporary bundle copy, a loaded predictor) and imports the
code under test, so `python -m mmnar_core fuzz` can instrument those imports for coverage.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mmnar_core.resources import DEMO_BUNDLE

REFERENCE_TIME = datetime(2024, 3, 7, tzinfo=UTC)  # FHIR ages do not depend on today
MAX_IMAGE_BYTES = 2 * 2**20
MAX_PIXELS = 4_000_000
MAX_TEXT_CHARS = 20_000
BOUNDARY = "mmnarfuzzboundary"


class PropertyViolation(AssertionError):
    """The input was accepted or refused in a way the documentation does not allow."""


@dataclass
class Target:
    name: str
    description: str
    setup: Callable[[], Any]  # -> context, once per process (imports the code under test)
    run: Callable[[Any, bytes], str]  # -> 'accepted' | 'refused'; raises on a property violation
    seeds: Callable[[Any], list[bytes]]
    instrument: tuple[str, ...] = ("mmnar_core",)  # packages atheris instruments for coverage
    dictionary: tuple[bytes, ...] = ()  # libFuzzer dictionary: tokens its mutations insert
    timeout_s: int = 20  # one input taking longer is a crash (a hang)
    max_len: int = 65_536
    teardown: Callable[[Any], None] = field(default=lambda context: None)


# ------------------------------------------------------------------------------------------------ checks
def check_input_errors(error) -> None:
    """Every problem is an InputError naming a field, with a problem and what is accepted."""
    from mmnar_core.inputs import InputError, InputErrors

    if not isinstance(error, (InputError, InputErrors)):
        raise PropertyViolation(f"refused with {type(error).__name__}, not InputError / InputErrors: {error}")
    if not error.errors:
        raise PropertyViolation("InputErrors without an error")
    for item in error.errors:
        if not isinstance(item, InputError):
            raise PropertyViolation(f"InputErrors holds a {type(item).__name__}")
        if not item.field.strip() or not item.problem.strip() or not item.accepted.strip():
            raise PropertyViolation(f"an error without a field, a problem or what is accepted: {item.to_dict()!r}")
        if not str(item).startswith(item.field + ": "):
            raise PropertyViolation(f"the message does not start with its field: {str(item)[:200]!r}")


def check_structured(result, features) -> None:
    """A StructuredInput with every feature, each value None or valid for its feature (unit, range, category)."""
    from mmnar_core.inputs import StructuredInput
    from mmnar_core.schema import FeatureKind

    if not isinstance(result, StructuredInput):
        raise PropertyViolation(f"a parser returned a {type(result).__name__}")
    if set(result.values) != {f.name for f in features}:
        raise PropertyViolation(f"keys {sorted(result.values)} are not the model's features")
    for feature in features:
        value = result.values[feature.name]
        if value is None:
            continue
        if feature.kind is FeatureKind.CATEGORICAL:
            ok = value in feature.categories
        elif feature.kind is FeatureKind.BINARY:
            ok = value in (0.0, 1.0)
        else:
            ok = (
                isinstance(value, float)
                and math.isfinite(value)
                and (feature.valid_range is None or feature.valid_range[0] <= value <= feature.valid_range[1])
            )
        if not ok:
            raise PropertyViolation(f"accepted an invalid value for {feature.name}: {value!r}")
    if not all(isinstance(n, str) for n in result.notes):
        raise PropertyViolation("a note that is not text")


def _parse(call, context, *args, **kwargs) -> tuple[str, Any]:
    from mmnar_core.inputs import InputError, InputErrors

    try:
        return "accepted", call(*args, **kwargs)
    except (InputError, InputErrors) as error:
        check_input_errors(error)
        partial = getattr(error, "partial", None)
        if partial is not None:
            check_structured(partial, context["features"])
        return "refused", None


def round_trip(values: dict, features) -> None:
    """Accepted values, written back as a JSON object and as a long CSV, parse to the very same values."""
    from mmnar_core.inputs import parse_structured_csv, parse_structured_json

    as_json = json.dumps({k: v for k, v in values.items() if v is not None}).encode()
    again = parse_structured_json(as_json, features).values
    if again != values:
        raise PropertyViolation(f"JSON round trip changed the values: {values} -> {again}")
    rows = ["feature,value"] + [
        f"{k},{repr(v) if isinstance(v, float) else v}" for k, v in values.items() if v is not None
    ]
    if len(rows) > 1:
        again = parse_structured_csv(("\n".join(rows) + "\n").encode(), features).values
        if again != values:
            raise PropertyViolation(f"CSV round trip changed the values: {values} -> {again}")


# ------------------------------------------------------------------------------------------------ structured
def demo_features():
    from mmnar_core.schema import FeatureSpec

    dataset = json.loads((DEMO_BUNDLE / "dataset.json").read_text(encoding="utf-8"))
    return [FeatureSpec.from_dict(f) for f in dataset["features"]]


def _structured_setup():
    import mmnar_core.inputs  # noqa: F401  (imported here: instrumented)
    import mmnar_core.inputs.fhir  # noqa: F401

    return {"features": demo_features()}


PATIENT = {
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
    "temperature_max": "101.3 °F",
    "sbp_min": 96,
    "wbc": {"value": 13200, "unit": "/uL"},
    "hemoglobin": 11.8,
    "sodium": 134,
    "creatinine": "133 umol/L",
    "lactate": 2.9,
    "nt_probnp": 2400,
    "albumin": 3.1,
}


def _structured_seeds(context) -> list[bytes]:
    names = [f.name for f in context["features"]]
    wide = (
        ",".join(names)
        + "\n"
        + ",".join(
            str(PATIENT.get(n, "")).replace("°", "") if not isinstance(PATIENT.get(n), dict) else "13.2" for n in names
        )
        + "\n"
    )
    long = "feature,value,unit\nage,71,\nsex,F,\ntemperature_max,101.3,[degF]\ncreatinine,133,umol/L\nwbc,8500,/uL\n"
    return [
        json.dumps(PATIENT).encode(),
        json.dumps({"age": "NA", "sex": "M", "spo2_min": 0.93}).encode(),
        wide.encode(),
        long.encode(),
        long.replace(",", ";").encode(),
        b"\xef\xbb\xbf" + wide.encode(),
        b'{"age": {"value": 850, "unit": "months"}, "hemoglobin": "135", "heart_rate": 80}',
        b'feature,value\nage,"71"\nlactate,<0.5\nsodium,"1,40"\n',
        fhir_seed(),
    ]


def _structured_form(context, data: bytes) -> str:
    from mmnar_core.inputs import parse_structured_form

    try:
        values = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return "skipped"  # not the form's input: a form gives a mapping (the server's `structured` is JSON)
    outcome, result = _parse(parse_structured_form, context, values, context["features"])
    if outcome == "accepted":
        check_structured(result, context["features"])
        round_trip(result.values, context["features"])
    return outcome


def _structured_csv(context, data: bytes) -> str:
    from mmnar_core.inputs import parse_structured_csv

    outcome, result = _parse(parse_structured_csv, context, data, context["features"], "upload.csv")
    if outcome == "accepted":
        check_structured(result, context["features"])
        round_trip(result.values, context["features"])
    return outcome


def _structured_file(context, data: bytes) -> str:
    from mmnar_core.inputs import parse_structured_file

    outcome, result = _parse(parse_structured_file, context, "upload", data, context["features"], REFERENCE_TIME)
    if outcome == "accepted":
        check_structured(result, context["features"])
    return outcome


# ------------------------------------------------------------------------------------------------ FHIR
def fhir_seed() -> bytes:
    def obs(rid, code, value, unit, when="2024-03-02T08:00:00Z", **extra):
        return {
            "resourceType": "Observation",
            "id": rid,
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
            **extra,
        }

    resources = [
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-06-15"},
        {
            "resourceType": "Encounter",
            "id": "e0",
            "class": {"code": "IMP"},
            "period": {"start": "2023-10-02T10:00:00Z", "end": "2023-10-05T09:00:00Z"},
        },
        {
            "resourceType": "Encounter",
            "id": "e1",
            "class": {"code": "IMP"},
            "priority": {"coding": [{"code": "EM"}]},
            "period": {"start": "2024-03-01T08:00:00Z", "end": "2024-03-06T20:00:00Z"},
            "hospitalization": {"dischargeDisposition": {"coding": [{"code": "snf"}], "text": "skilled nursing"}},
        },
        obs("hr", "8867-4", 112, "/min"),
        obs("t", "8310-5", 101.3, "[degF]"),
        obs("cr", "2160-0", 133, "umol/L"),
        obs("na", "2951-2", 134, "mmol/L", effectivePeriod={"start": "2024-03-01", "end": "2024-03-02"}),
        {
            "resourceType": "Observation",
            "id": "bp",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "effectiveDateTime": "2024-03-01T09:00:00Z",
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {"value": 96, "unit": "mm[Hg]"},
                }
            ],
        },
        {
            "resourceType": "Observation",
            "id": "x",
            "status": "final",
            "code": {"coding": [{"code": "718-7"}]},
            "dataAbsentReason": {"text": "not done"},
        },
        {
            "resourceType": "MedicationRequest",
            "id": "m1",
            "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": "rxnorm", "code": "197361"}]},
        },
        {
            "resourceType": "MedicationRequest",
            "id": "m2",
            "status": "completed",
            "medicationCodeableConcept": {"text": "Furosemide"},
        },
        {"resourceType": "Condition", "id": "c1", "code": {"text": "Pneumonia"}},
    ]
    return json.dumps(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
        }
    ).encode()


def _fhir(context, data: bytes) -> str:
    from mmnar_core.inputs import parse_fhir_bundle

    outcome, result = _parse(parse_fhir_bundle, context, data, context["features"], "bundle.json", REFERENCE_TIME)
    if outcome == "accepted":
        check_structured(result, context["features"])
    return outcome


def _fhir_seeds(context) -> list[bytes]:
    bundle = json.loads(fhir_seed())
    small = {"resourceType": "Bundle", "entry": bundle["entry"][:1] + bundle["entry"][3:5]}
    return [
        fhir_seed(),
        json.dumps(small).encode(),
        b'{"resourceType": "Bundle", "entry": [{}]}',
        b'{"resourceType": "Observation"}',
    ]


FHIR_TOKENS = (
    b'"resourceType"',
    b'"Bundle"',
    b'"entry"',
    b'"resource"',
    b'"Patient"',
    b'"Observation"',
    b'"Encounter"',
    b'"MedicationRequest"',
    b'"Condition"',
    b'"valueQuantity"',
    b'"valueInteger"',
    b'"component"',
    b'"effectiveDateTime"',
    b'"effectivePeriod"',
    b'"issued"',
    b'"birthDate"',
    b'"gender"',
    b'"status"',
    b'"period"',
    b'"start"',
    b'"end"',
    b'"code"',
    b'"coding"',
    b'"system"',
    b'"http://loinc.org"',
    b'"unit"',
    b'"comparator"',
    b'"<"',
    b'"dataAbsentReason"',
    b'"subject"',
    b'"reference"',
    b'"Patient/p1"',
    b'"fullUrl"',
    b'"8867-4"',
    b'"8310-5"',
    b'"2160-0"',
    b'"85354-9"',
    b'"8480-6"',
    b'"entered-in-error"',
    b'"hospitalization"',
    b'"dischargeDisposition"',
    b'"priority"',
    b'"class"',
    b'"2024-02-30"',
    b'"2024-03-01T25:00:00Z"',
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"[]",
    b"{}",
    b'"[degF]"',
    b'"umol/L"',
    b'"%"',
)


# ------------------------------------------------------------------------------------------------ uploads
def _uploads_setup():
    import pydicom  # noqa: F401  (the decoders import these lazily: import them here, so they are instrumented)
    import pydicom.pixels  # noqa: F401

    import mmnar_core.encoders.text_clean  # noqa: F401
    import mmnar_core.inputs  # noqa: F401
    import mmnar_core.inputs.uploads  # noqa: F401

    return {}


def image_seeds() -> list[bytes]:
    """Small PNG (8-bit, 16-bit, RGB), JPEG and DICOM (16-bit, MONOCHROME1 with a window, 8-bit) files."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:24, 0:32]
    gray = ((x * 7 + y * 3) % 256).astype(np.uint8)
    out = []
    for mode, fmt in (("L", "PNG"), ("I;16", "PNG"), ("RGB", "PNG"), ("L", "JPEG")):
        buffer = io.BytesIO()
        image = (
            Image.fromarray(gray).convert("RGB")
            if mode == "RGB"
            else Image.fromarray((gray.astype(np.uint16) * 257) if mode == "I;16" else gray)
        )
        image.save(buffer, format=fmt)
        out.append(buffer.getvalue())
    out.append(dicom_seed(gray.astype(np.uint16) * 16))
    out.append(
        dicom_seed(
            gray.astype(np.uint16) * 16,
            PhotometricInterpretation="MONOCHROME1",
            WindowCenter="2000",
            WindowWidth="4000",
            RescaleSlope="1.5",
            RescaleIntercept="-10",
        )
    )
    out.append(dicom_seed(gray, bits=8))
    return out


def dicom_seed(pixels, bits: int = 16, **attributes) -> bytes:
    """A DICOM Part 10 Secondary Capture with fixed UIDs (deterministic bytes)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.1.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype("uint8" if bits == 8 else "uint16").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _image(context, data: bytes) -> str:
    from mmnar_core.inputs import ImageUpload, read_image_upload

    outcome, upload = _parse(read_image_upload, context, "upload.png", data, MAX_IMAGE_BYTES, MAX_PIXELS)
    if outcome == "accepted":
        if not isinstance(upload, ImageUpload) or upload.kind not in ("png", "jpeg", "dicom") or upload.data != data:
            raise PropertyViolation(f"accepted image is inconsistent: {upload!r}")
        preview = upload.preview
        if preview.ndim != 2 or preview.dtype.name != "uint8" or 0 in preview.shape or max(preview.shape) > 1024:
            raise PropertyViolation(f"bad preview {preview.shape} {preview.dtype}")
        if upload.width < 1 or upload.height < 1 or upload.width * upload.height > MAX_PIXELS:
            raise PropertyViolation(f"accepted {upload.width} x {upload.height} pixels")
    return outcome


IMAGE_TOKENS = (
    b"\x89PNG\r\n\x1a\n",
    b"IHDR",
    b"IDAT",
    b"IEND",
    b"PLTE",
    b"tRNS",
    b"\xff\xd8\xff",
    b"\xff\xd9",
    b"\xff\xc0",
    b"\xff\xc4",
    b"\xff\xda",
    b"\xff\xdb",
    b"Exif\x00\x00",
    b"DICM",
    b"\xe0\x7f\x10\x00",
    b"\x28\x00\x10\x00",
    b"\x28\x00\x11\x00",
    b"\x28\x00\x04\x00",
    b"MONOCHROME1",
    b"MONOCHROME2",
    b"RGB ",
    b"YBR_FULL",
    b"1.2.840.10008.1.2.1",
    b"1.2.840.10008.1.2.4.50",
    b"1.2.840.10008.1.2.5",
    b"OB",
    b"OW",
    b"US",
    b"DS",
    b"IS",
    b"UL",
    b"SQ",
    b"\xfe\xff\x00\xe0",
    b"\xff\xff\xff\xff",
)


def text_seeds() -> list[bytes]:
    note = (
        "DISCHARGE SUMMARY\nName: ___ Unit No: ___\nHistory of present illness: 71-year-old woman with "
        "dyspnoea, fever 38.5 °C and a new right lower lobe infiltrate.\nPlan: ceftriaxone, diuresis.\n"
    )
    return [
        note.encode(),
        b"\xef\xbb\xbf" + note.encode(),
        note.encode("utf-16"),
        note.encode("cp1252", "replace"),
        b"{\\rtf1 hello}",
        b"%PDF-1.4 ...",
        b"   \n\t",
        b"Name: ___\nDr. ___\n",
        note.replace("\n", "\r\n").encode(),
    ]


def _text(context, data: bytes) -> str:
    from mmnar_core.inputs import read_text_upload

    outcome, text = _parse(read_text_upload, context, "discharge_note", data, MAX_TEXT_CHARS)
    if outcome == "accepted":
        expected = data.decode("utf-8")
        expected = expected[1:] if expected.startswith("\ufeff") else expected
        if text != expected:
            raise PropertyViolation("an accepted note differs from its bytes")
        if len(text) > MAX_TEXT_CHARS or not text.strip():
            raise PropertyViolation(f"accepted a note of {len(text)} characters that is blank or too long")
    return outcome


# ------------------------------------------------------------------------------------------------ bundle
BUNDLE_KEEP = (
    "config.json",
    "weights.safetensors",
    "calibration.json",
    "dataset.json",
    "encoders.json",
    "metrics.json",
    "model_card.md",
)
BUNDLE_MODES = ("index", "file+rehash", "signature", "extra+rehash", "splice+rehash")
EXTRA_SUFFIXES = (".json", ".txt", ".safetensors", ".bin", "", ".md")


def small_bundle(target: Path) -> Path:
    """A copy of the demo bundle without its large optional files (reference embeddings, training log,
    encoder states), re-indexed so it verifies, then signed with a new key: the fuzzing base. The
    shipped demo bundle is only read."""
    from mmnar_core.bundle import INDEX_FILE, _content_hash, _sha256, generate_signing_key, sign_bundle

    target.mkdir(parents=True)
    for name in BUNDLE_KEEP:
        shutil.copyfile(DEMO_BUNDLE / name, target / name)
    files = {name: _sha256(target / name) for name in BUNDLE_KEEP}
    index = json.loads((DEMO_BUNDLE / INDEX_FILE).read_text(encoding="utf-8"))
    content_hash = _content_hash(files)
    index.update(files=files, content_hash=content_hash, model_id=f"mmnar-{content_hash[:12]}")
    (target / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    key, _ = generate_signing_key(target.parent / "fuzz.key")
    sign_bundle(target, key)
    return target


def _bundle_setup():
    import mmnar_core.bundle  # noqa: F401  (and torch, safetensors, the model: not instrumented)

    base = Path(tempfile.mkdtemp(prefix="mmnar-fuzz-bundle-"))
    pristine = small_bundle(base / "pristine")
    return {
        "base": base,
        "pristine": pristine,
        "work": base / "work",
        "files": ["bundle.json", "bundle.sig", *BUNDLE_KEEP],
    }


def _bundle_teardown(context) -> None:
    shutil.rmtree(context["base"], ignore_errors=True)


def mutate_bundle(context, data: bytes) -> Path:
    """A fresh copy of the pristine bundle (hard links; the mutated file is written anew), changed as `data`
    says: byte 0 = mode (BUNDLE_MODES), byte 1 = which file, then for a splice 2 bytes of offset; the rest
    is the new content. '+rehash' modes rebuild bundle.json's hashes (an attacker who edits the index too)
    and drop the now stale signature, so the loaders behind the hash check are reached."""
    from mmnar_core.bundle import INDEX_FILE, SIGNATURE_FILE, _content_hash, _sha256

    work, pristine = context["work"], context["pristine"]
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(pristine, work, copy_function=os.link)
    mode = BUNDLE_MODES[data[0] % len(BUNDLE_MODES)] if data else "index"
    name = context["files"][data[1] % len(context["files"])] if len(data) > 1 else "config.json"
    payload = data[2:]

    def write(relative: str, content: bytes) -> None:
        path = work / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()  # never write through a hard link into the pristine copy
        path.write_bytes(content)

    if mode == "index":
        write(INDEX_FILE, payload)
    elif mode == "signature":
        write(SIGNATURE_FILE, payload)
    else:
        if mode == "extra+rehash":
            suffix = EXTRA_SUFFIXES[(data[1] if len(data) > 1 else 0) % len(EXTRA_SUFFIXES)]
            name = f"extra/file{suffix}"
            write(name, payload)
        elif mode == "splice+rehash":
            original = (pristine / name).read_bytes()
            offset = int.from_bytes(payload[:2].ljust(2, b"\0"), "little") % max(1, len(original))
            content = payload[2:]
            write(name, original[:offset] + content + original[offset + len(content) :])
        else:
            write(name, payload)
        if name not in (INDEX_FILE, SIGNATURE_FILE):
            index = json.loads((pristine / INDEX_FILE).read_text(encoding="utf-8"))
            files = dict(index["files"])
            files[name] = _sha256(work / name)
            index.update(files=files, content_hash=_content_hash(files))
            write(INDEX_FILE, (json.dumps(index, indent=2) + "\n").encode())
            (work / SIGNATURE_FILE).unlink(missing_ok=True)
    return work


def _bundle(context, data: bytes) -> str:
    from mmnar_core.bundle import Bundle, BundleError, load_bundle

    work = mutate_bundle(context, data)
    try:
        bundle = load_bundle(work, trusted_keys=())  # verifies hashes, pickles and signatures first
    except BundleError as error:
        if not str(error).startswith(str(work)):
            raise PropertyViolation(f"a BundleError that does not name its file: {error}") from None
        return "refused"
    if not isinstance(bundle, Bundle) or not bundle.rectifiers:
        raise PropertyViolation("load_bundle returned an incomplete bundle")
    return "accepted"


def _bundle_seeds(context) -> list[bytes]:
    pristine = context["pristine"]
    files = context["files"]
    seeds = [
        bytes([0, 0]) + (pristine / "bundle.json").read_bytes(),
        bytes([2, 1]) + (pristine / "bundle.sig").read_bytes(),
    ]
    for i, name in enumerate(files):
        if name.endswith((".json", ".md")) and name != "bundle.json":
            seeds.append(bytes([1, i]) + (pristine / name).read_bytes()[:60_000])
    seeds.append(bytes([4, files.index("weights.safetensors")]) + b"\x00\x00" + b"\xff" * 8)
    seeds.append(bytes([3, 3]) + b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94.")
    seeds.append(bytes([3, 0]) + b"PK\x03\x04" + b"\x00" * 30)
    return seeds


BUNDLE_TOKENS = (
    b'"format_version"',
    b'"files"',
    b'"content_hash"',
    b'"model_id"',
    b'"signatures"',
    b'"key_id"',
    b'"public_key"',
    b'"signature"',
    b'"mmnar-bundle-signature"',
    b'"temperature"',
    b'"rectifiers"',
    b'"tasks"',
    b'"data_offsets"',
    b'"dtype"',
    b'"shape"',
    b'"F32"',
    b'"__metadata__"',
    b'"../x"',
    b'"/etc/passwd"',
    b"1",
    b"null",
    b"[]",
    b"{}",
    b"-1",
    b"1e400",
)


# ------------------------------------------------------------------------------------------------ server
def multipart(parts: list[tuple[str, bytes, str | None]], boundary: str = BOUNDARY) -> bytes:
    """(name, content, filename or None) -> a multipart/form-data body."""
    out = io.BytesIO()
    for name, content, filename in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        if filename is not None:
            out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"\r\n" + content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


SERVER_ENDPOINTS = ("/predict", "/what-if", "/predict", "/explain")  # /explain: parsing only (Captum is slow)
CONTENT_TYPES = (
    f"multipart/form-data; boundary={BOUNDARY}",
    f"multipart/form-data; boundary={BOUNDARY}",
    f"multipart/form-data; boundary={BOUNDARY}",
    "multipart/form-data",
    "application/json",
    f'multipart/form-data; boundary="{BOUNDARY}"',
    "text/plain",
    None,
)


def _server_setup():
    import logging

    import python_multipart.multipart  # noqa: F401  (imported lazily by parsing.py: here, to be instrumented)
    from fastapi.testclient import TestClient

    import mmnar_core.serving.parsing  # noqa: F401
    from mmnar_core.serving.config import ServeConfig
    from mmnar_core.serving.server import create_app
    from mmnar_lab.serving.testing import cached_predictor

    predictor = cached_predictor(DEMO_BUNDLE)
    config = ServeConfig(
        max_request_bytes=4 * 2**20,
        max_image_bytes=MAX_IMAGE_BYTES,
        max_structured_bytes=2**20,
        max_text_chars=MAX_TEXT_CHARS,
        explain_cache_size=0,
    )
    client = TestClient(create_app(predictor, config), raise_server_exceptions=False)
    client.__enter__()
    serving_log = logging.getLogger("mmnar_core.serving")
    level = serving_log.level
    serving_log.setLevel(logging.CRITICAL)  # expected 4xx are not news; 500s are checked by the property
    return {
        "client": client,
        "config": config,
        "schema": client.app.state.serving.schema,
        "features": list(predictor.features),
        "log_level": level,
    }


def _server_teardown(context) -> None:
    import logging

    context["client"].__exit__(None, None, None)
    logging.getLogger("mmnar_core.serving").setLevel(context["log_level"])


def _server(context, data: bytes) -> str:
    """Byte 0: endpoint (low 2 bits) and Content-Type (next 3 bits); the rest is the body as sent."""
    from mmnar_core.serving.parsing import RequestError
    from mmnar_core.serving.server import _prepare, _split

    selector = data[0] if data else 0
    path = SERVER_ENDPOINTS[selector & 3]
    content_type = CONTENT_TYPES[(selector >> 2) & 7]
    body = data[1:]
    if path == "/explain":  # the endpoint's own parsing (the `task` field, the work count), without running Captum
        if content_type is None or not content_type.lower().startswith("multipart/form-data"):
            return "refused"
        try:
            parts, _work = _split(body, content_type, context["schema"], "explain", context["config"])
            _prepare(parts, context["schema"], "explain", context["config"])
        except RequestError as error:
            check_status_body(error.to_dict(), error.status)
            return "refused"
        return "accepted"
    headers = {"content-type": content_type} if content_type else {}
    response = context["client"].post(path, content=body, headers=headers)
    try:
        answer = response.json()
    except ValueError:
        raise PropertyViolation(f"{path} answered {response.status_code} with a body that is not JSON") from None
    if response.status_code == 200:
        check_answer(path, answer, context["schema"].tasks)
        return "accepted"
    if response.status_code not in (400, 413, 415, 422):
        raise PropertyViolation(f"{path} answered {response.status_code}: {response.text[:500]}")
    check_status_body(answer, response.status_code)
    return "refused"


def check_answer(path: str, answer: dict, tasks) -> None:
    """A 200: one risk per task, each a probability inside its interval (predict), or the subsets (what-if)."""
    if path == "/predict":
        risks = answer.get("risks")
        if not isinstance(risks, list) or [r.get("task") for r in risks] != list(tasks):
            raise PropertyViolation(f"/predict answered 200 without one risk per task: {str(answer)[:300]}")
        for risk in risks:
            if (
                not all(isinstance(risk.get(k), float) and 0.0 <= risk[k] <= 1.0 for k in ("risk", "low", "high"))
                or not risk["low"] <= risk["risk"] <= risk["high"]
            ):
                raise PropertyViolation(f"/predict answered a risk outside [0, 1] or its interval: {risk}")
    elif not isinstance(answer.get("subsets"), list) or not answer["subsets"]:
        raise PropertyViolation(f"{path} answered 200 without subsets: {str(answer)[:300]}")
    if not isinstance(answer.get("input_hash"), str) or not isinstance(answer.get("input_notes"), list):
        raise PropertyViolation(f"{path} answered 200 without input_hash / input_notes")


def check_status_body(answer: dict, status: int) -> None:
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if answer.get("status") != status or not errors:
        raise PropertyViolation(f"a {status} answer without its status or errors: {str(answer)[:300]}")
    for error in errors:
        if not str(error.get("field", "")).strip() or not error.get("problem") or not error.get("message"):
            raise PropertyViolation(f"an error object without a field or a problem: {error}")
        if error.get("status") not in (400, 413, 415, 422):
            raise PropertyViolation(f"an error object with status {error.get('status')}: {error}")


def _server_seeds(context) -> list[bytes]:
    select = 0  # /predict, multipart with the boundary
    images = image_seeds()
    note = text_seeds()[0]
    structured = json.dumps({"age": 71, "sex": "female", "temperature_max": "101.3 °F"}).encode()
    long_csv = b"feature,value,unit\nage,71,\ncreatinine,133,umol/L\n"
    bodies = [
        multipart([("structured", structured, None), ("patient_id", b"bed 12", None)]),
        multipart([("structured_file", long_csv, "vitals.csv"), ("cxr", images[0], "cxr.png")]),
        multipart(
            [
                ("structured_file", fhir_seed(), "bundle.json"),
                ("structured", b'{"age": 50}', None),
                ("cxr", images[4], "cxr.dcm"),
            ]
        ),
        multipart([("discharge_note", note, "note.txt"), ("radiology_report", b"Right lower lobe opacity.", None)]),
        multipart([("cxr", images[3], "x.png"), ("xray", b"x", "x.png"), ("structured", b"[1]", None)]),
        multipart([("structured", b'{"age": 500}', None), ("task", b"icu_90d", None)]),
    ]
    seeds = [bytes([select]) + body for body in bodies]
    seeds.append(bytes([1]) + bodies[0])  # /what-if
    seeds.append(bytes([3]) + multipart([("structured", structured, None), ("task", b"icu_90d", None)]))  # /explain
    seeds.append(bytes([3 << 2]) + bodies[0])  # no boundary
    return seeds


SERVER_TOKENS = (
    b"--" + BOUNDARY.encode(),
    b"\r\n",
    b"Content-Disposition: form-data; name=",
    b'; filename="',
    b'"structured"',
    b'"structured_file"',
    b'"cxr"',
    b'"discharge_note"',
    b'"radiology_report"',
    b'"patient_id"',
    b'"task"',
    b"Content-Type: ",
    b"icu_90d",
    b"death_180d",
    b'{"age": 71}',
    b"--\r\n",
)


# ------------------------------------------------------------------------------------------------ registry
TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "structured_form",
            "a form's JSON object -> parse_structured_form (+ JSON and CSV round trips)",
            _structured_setup,
            _structured_form,
            _structured_seeds,
            dictionary=FHIR_TOKENS[-8:]
            + (b'"age"', b'"sex"', b'"value"', b'"unit"', b'"\xc2\xb0F"', b'"NA"', b'"yes"', b'"1e3"', b'"38,5"'),
            timeout_s=10,
        ),
        Target(
            "structured_csv",
            "CSV bytes (wide or long) -> parse_structured_csv (+ round trips)",
            _structured_setup,
            _structured_csv,
            _structured_seeds,
            dictionary=(
                b"feature",
                b"value",
                b"unit",
                b",",
                b";",
                b"\t",
                b'"',
                b"\r\n",
                b"age",
                b"sex",
                b"temperature_max",
                b"[degF]",
                b"umol/L",
                b"NA",
                b"\xef\xbb\xbf",
            ),
            timeout_s=10,
        ),
        Target(
            "structured_file",
            "any structured upload -> parse_structured_file (content decides CSV / JSON / FHIR)",
            _structured_setup,
            _structured_file,
            _structured_seeds,
            dictionary=FHIR_TOKENS,
            timeout_s=10,
        ),
        Target(
            "fhir_bundle",
            "FHIR R4 Bundle bytes -> parse_fhir_bundle",
            _structured_setup,
            _fhir,
            _fhir_seeds,
            dictionary=FHIR_TOKENS,
            timeout_s=10,
        ),
        Target(
            "image_upload",
            "image bytes -> read_image_upload (PNG, JPEG, DICOM)",
            _uploads_setup,
            _image,
            lambda context: image_seeds(),
            instrument=("mmnar_core", "pydicom"),
            dictionary=IMAGE_TOKENS,
        ),
        Target(
            "text_upload",
            "note bytes -> read_text_upload (+ text == bytes)",
            _uploads_setup,
            _text,
            lambda context: text_seeds(),
            timeout_s=10,
        ),
        Target(
            "bundle",
            "a mutated copy of a small bundle -> verify_bundle + load_bundle",
            _bundle_setup,
            _bundle,
            _bundle_seeds,
            dictionary=BUNDLE_TOKENS,
            teardown=_bundle_teardown,
        ),
        Target(
            "server",
            "a request body -> POST /predict, /what-if (a real model) or /explain's parsing",
            _server_setup,
            _server,
            _server_seeds,
            instrument=("mmnar_core", "python_multipart"),
            dictionary=SERVER_TOKENS,
            timeout_s=60,
            max_len=262_144,
            teardown=_server_teardown,
        ),
    )
}
