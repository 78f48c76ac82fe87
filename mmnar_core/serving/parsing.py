"""A multipart request body -> one validated PatientRecord, with the checks and messages of the app
(`mmnar_core.inputs`), or a `RequestError` listing every problem with its HTTP status.

Fields (multipart/form-data; each at most once):

- `structured`: a JSON object {feature: value} or {feature: {"value": v, "unit": u}} (as the form);
- `structured_file`: a CSV, JSON or FHIR R4 Bundle file (the content decides, as the app's upload);
  with both, the file is read first and the keys of `structured` override it;
- one file per image modality (e.g. `cxr`: PNG, JPEG or DICOM);
- one text field or .txt file per text modality (e.g. `discharge_note`);
- `patient_id` (optional);
- `task` (POST /explain only; default: the model's first task).
- `modalities` (POST /explain only; default: all): comma-separated modalities to attribute, so a client
  can ask for a fast first answer and the rest in a second call; empty: none attributed (the risks, the
  what-if and each modality's share at once, as the app's first answer does); the prediction and what-if
  always cover every available modality.

Statuses: 400 the request itself is malformed (not multipart, broken multipart, a field the endpoint
does not know, a field given twice, `structured` not a JSON object); 413 over a size limit; 415 a file
of a kind the field does not accept (a PDF as the X-ray, a workbook as the CSV, a binary as a note);
422 the right kind of file or field whose content is invalid (damaged or truncated image, DICOM without
pixels, CSV columns, values out of range or in the wrong unit, a note that is not UTF-8 or empty,
malformed FHIR, an unknown task). The inputs module says which of 413 / 415 / 422 an error is when it
raises it (`InputError.kind`, STATUS_OF_KIND), so the bytes are not looked at again here. With several
problems, the first status in STATUS_ORDER wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mmnar_core.inputs import (
    InputError,
    InputErrors,
    StructuredInput,
    build_record,
    parse_structured_file,
    parse_structured_form,
    read_image_upload,
    read_text_upload,
)
from mmnar_core.inputs.structured import JSON_ACCEPTED, load_json
from mmnar_core.inputs.uploads import _size
from mmnar_core.results import ALL_TASKS
from mmnar_core.schema import FeatureSpec, ModalityKind, ModalitySpec, PatientRecord

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

STATUS_ORDER = (400, 413, 415, 422)
STATUS_OF_KIND = {"too_large": 413, "wrong_type": 415, "invalid": 422}  # InputError.kind -> HTTP status
DEFAULT_PATIENT_ID = "unnamed patient"  # as the app labels a patient without a label
KINDS = {"predict": "/predict", "what_if": "/what-if", "explain": "/explain"}


@dataclass
class Part:
    """One part of a multipart body: raw bytes, whether it was sent as a file."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def is_file(self) -> bool:
        return self.filename is not None


class RequestError(Exception):
    """Every problem of one request, each with its HTTP status; `status` is the one to answer with."""

    def __init__(self, problems: Sequence[tuple[int, InputError]]):
        self.problems = list(problems)
        if not self.problems:
            raise ValueError("RequestError needs at least one problem")
        super().__init__("; ".join(str(e) for _, e in self.problems))

    @classmethod
    def one(cls, status: int, field: str, problem: str, accepted: str, feature: str | None = None) -> RequestError:
        return cls([(status, InputError(field, problem, accepted, feature))])

    @property
    def status(self) -> int:
        statuses = {s for s, _ in self.problems}
        return next((s for s in STATUS_ORDER if s in statuses), max(statuses))

    def to_dict(self) -> dict:
        return {
            "errors": [{**error.to_dict(), "status": status} for status, error in self.problems],
            "status": self.status,
        }


@dataclass
class ParsedRequest:
    record: PatientRecord
    structured: StructuredInput | None  # None: a model without structured values
    task: str | None = None
    notes: list[str] = field(default_factory=list)  # conversions, renamed files ... (shown as input_notes)
    modalities: list[str] | None = None  # explain: the modalities to attribute (None = every available one)
    input_hash: str | None = None  # filled by the server (mmnar_core.explain.explanation.input_hash)
    cache_key: str | None = None  # explain: the Explanation.cache_key it will have


# ------------------------------------------------------------------------------------------------ multipart
MULTIPART_ACCEPTED = (
    "a multipart/form-data body (curl -F / a browser form) with the fields structured, "
    "structured_file, one file per image modality, one text or file per text modality, patient_id"
)


def parse_multipart(body: bytes, content_type: str | None, max_parts: int = 64) -> list[Part]:
    """The parts of a multipart/form-data body, as raw bytes (no charset guessing: notes are checked as
    UTF-8 by the inputs module). Raises RequestError (415 not multipart, 400 malformed)."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    media, options = parse_options_header(content_type or "")
    if media != b"multipart/form-data":
        shown = media.decode("latin-1") or "none"
        raise RequestError.one(
            415, "Content-Type", f"the request body is {shown}, not multipart/form-data", MULTIPART_ACCEPTED
        )
    boundary = options.get(b"boundary")
    if not boundary:
        raise RequestError.one(400, "Content-Type", "multipart/form-data without a boundary", MULTIPART_ACCEPTED)
    parts: list[Part] = []
    current: dict = {}
    header = {"name": b"", "value": b""}

    def on_part_begin() -> None:
        current.clear()
        current.update(headers={}, data=bytearray())

    def on_part_data(data: bytes, start: int, end: int) -> None:
        current["data"] += data[start:end]

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        current["headers"][header["name"].lower()] = header["value"]
        header["name"], header["value"] = b"", b""

    def on_part_end() -> None:
        disposition, params = parse_options_header(current["headers"].get(b"content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise RequestError.one(
                400, "multipart body", "a part without Content-Disposition: form-data; name=...", MULTIPART_ACCEPTED
            )
        if len(parts) >= max_parts:
            raise RequestError.one(400, "multipart body", f"more than {max_parts} parts", MULTIPART_ACCEPTED)
        filename = params.get(b"filename")
        media_type = current["headers"].get(b"content-type")
        parts.append(
            Part(
                _text(params[b"name"]),
                bytes(current["data"]),
                None if filename is None else _text(filename),
                None if media_type is None else _text(media_type),
            )
        )

    callbacks: MultipartCallbacks = {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except FormParserError as error:
        raise RequestError.one(
            400, "multipart body", f"not valid multipart/form-data ({error})", MULTIPART_ACCEPTED
        ) from None
    if body.strip() and not parts:
        raise RequestError.one(400, "multipart body", "no part found (wrong boundary?)", MULTIPART_ACCEPTED)
    return parts


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


# ------------------------------------------------------------------------------------------------ fields
@dataclass
class Schema:
    """What the served model accepts (from the predictor: features, modalities, tasks)."""

    features: list[FeatureSpec]
    modalities: list[ModalitySpec]
    tasks: list[str]

    @classmethod
    def of(cls, predictor) -> Schema:
        return cls(list(predictor.features), list(predictor.modalities), list(predictor.config.tasks))

    def names(self, kind: ModalityKind) -> list[str]:
        return [m.name for m in self.modalities if m.kind is kind]

    def fields(self, kind: str) -> dict[str, str]:
        """field name -> what it holds, for the endpoint `kind`."""
        out = {
            "structured": 'a JSON object {"feature": value} or {"feature": {"value": v, "unit": "u"}}',
            "structured_file": "a CSV, JSON or FHIR R4 Bundle file",
        }
        out.update({name: "an image file (PNG, JPEG or DICOM)" for name in self.names(ModalityKind.IMAGE)})
        out.update({name: "a note as text or a UTF-8 .txt file" for name in self.names(ModalityKind.TEXT)})
        out["patient_id"] = "an identifier (text; optional)"
        if kind == "explain":
            out["task"] = (
                f"one outcome: {', '.join(self.tasks)}, or {ALL_TASKS} for every outcome in one run "
                f"(default {self.tasks[0]})"
            )
            out["modalities"] = (
                f"the modalities to attribute, comma-separated, of: "
                f"{', '.join(m.name for m in self.modalities)} (default: all)"
            )
        return out


def parse_request(
    parts: Sequence[Part],
    schema: Schema,
    kind: str,
    max_image_bytes: int,
    max_structured_bytes: int,
    max_text_chars: int,
) -> ParsedRequest:
    """Validated inputs of one request (every problem at once), as the app validates them."""
    known = schema.fields(kind)
    problems: list[tuple[int, InputError]] = []
    given: dict[str, Part] = {}
    for part in parts:
        if part.name not in known:
            accepted = "; ".join(f"{k} ({v})" for k, v in known.items())
            if part.name.strip() and part.name.isprintable() and len(part.name) <= 60:
                problems.append((400, InputError(part.name, f"not a field of POST {KINDS[kind]}", accepted)))
            else:  # an empty, unprintable or very long name: the error still names where the problem is
                shown = repr(part.name) if len(part.name) <= 60 else repr(part.name[:57]) + "..."
                problems.append(
                    (
                        400,
                        InputError(
                            "multipart body", f"a part named {shown} is not a field of POST {KINDS[kind]}", accepted
                        ),
                    )
                )
        elif part.name in given:
            problems.append((400, InputError(part.name, "given more than once", "each field at most once")))
        elif part.is_file and not part.filename and not part.data:
            continue  # an empty file input of a browser form: not given
        else:
            given[part.name] = part
    if problems:
        raise RequestError(problems)

    notes: list[str] = []
    patient_id = DEFAULT_PATIENT_ID
    if "patient_id" in given:
        text = _field_text(given["patient_id"], "patient_id", "a non-empty identifier (any text)", problems)
        patient_id = text if text is not None and text.strip() else DEFAULT_PATIENT_ID
    task = None
    if kind == "explain":
        task = schema.tasks[0]
        if "task" in given:
            accepted = f"one of: {', '.join(schema.tasks)}, or {ALL_TASKS} (every outcome in one run)"
            task = (_field_text(given["task"], "task", accepted, problems) or "").strip()
            if task and task not in schema.tasks and task != ALL_TASKS:
                problems.append(
                    (
                        422,
                        InputError("task", f"{task!r} is not an outcome of this model", accepted),
                    )
                )
            task = task or schema.tasks[0]
    modalities = _modalities(given, schema, problems) if kind == "explain" else None

    structured = _structured(given, schema, max_structured_bytes, problems)

    images = {}
    for name in schema.names(ModalityKind.IMAGE):
        if name not in given:
            continue
        part = given[name]
        try:
            images[name] = read_image_upload(
                part.filename or name, part.data, max_image_bytes, preview=False, keep_pixels=True
            )
            notes.extend(images[name].notes)
        except InputError as error:
            problems.append(_with_status(error))

    texts = {}
    for name in schema.names(ModalityKind.TEXT):
        if name not in given:
            continue
        part = given[name]
        where = f"{name} file {part.filename}" if part.filename else name
        if not part.is_file and not part.data.strip():
            continue  # an empty text field: no note (as a blank text area in the app)
        try:
            texts[name] = read_text_upload(where, part.data, max_text_chars)
        except InputError as error:
            problems.append(_with_status(error))

    if problems:
        raise RequestError(problems)
    if structured is not None:
        notes = list(structured.notes) + notes
    try:
        record = build_record(patient_id, structured, images, texts, schema.modalities)
    except InputErrors as error:
        raise RequestError([_with_status(e) for e in error.errors]) from None
    return ParsedRequest(record, structured, task, notes, modalities=modalities)


def _with_status(error: InputError) -> tuple[int, InputError]:
    return STATUS_OF_KIND[error.kind], error


def _modalities(given: dict[str, Part], schema: Schema, problems: list) -> list[str] | None:
    """The `modalities` field: None when absent (all), else the named modalities in the model's order."""
    if "modalities" not in given:
        return None
    names = [m.name for m in schema.modalities]
    accepted = f"comma-separated modality names of this model ({', '.join(names)}), or empty for none"
    text = _field_text(given["modalities"], "modalities", accepted, problems)
    if text is None:
        return None
    wanted = [w.strip() for w in text.split(",") if w.strip()]
    if not wanted and text.strip():  # only commas: a mistake, not a request for no attributions
        problems.append((422, InputError("modalities", "no modality named", accepted)))
        return None
    unknown = [w for w in wanted if w not in names]
    if unknown:
        problem = f"{', '.join(map(repr, unknown))} is not a modality of this model"
        problems.append((422, InputError("modalities", problem, accepted)))
        return None
    return [n for n in names if n in wanted]


def _field_text(part: Part, where: str, accepted: str, problems: list) -> str | None:
    try:
        return part.data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append((400, InputError(where, "not valid UTF-8", accepted)))
        return None


def _structured(given: dict[str, Part], schema: Schema, max_bytes: int, problems: list) -> StructuredInput | None:
    """The structured values of the request: the file, then the JSON field's keys over it. Always a full
    StructuredInput (every feature a key, None = not measured), as the app's form gives, so input hashes
    agree with the app's."""
    if not any(m.kind is ModalityKind.TABULAR for m in schema.modalities) and not (
        "structured_file" in given or "structured" in given
    ):
        return None  # a model without structured values: nothing to fill
    mine: list[tuple[int, InputError]] = []
    from_file = None
    part = given.get("structured_file")
    if part is not None:
        filename = part.filename or "structured_file"
        if len(part.data) > max_bytes:
            mine.append(
                _with_status(
                    InputError(
                        f"structured_file {filename}",
                        f"the file is {_size(len(part.data))}, over the limit of {_size(max_bytes)}",
                        f"a CSV, JSON or FHIR file up to {_size(max_bytes)}",
                        kind="too_large",
                    )
                )
            )
        else:
            try:
                from_file = parse_structured_file(filename, part.data, schema.features)
            except (InputError, InputErrors) as error:
                mine.extend(_with_status(e) for e in error.errors)
    overrides: dict = {}
    part = given.get("structured")
    if part is not None and part.data.strip():
        if len(part.data) > max_bytes:
            mine.append(
                _with_status(
                    InputError(
                        "structured",
                        f"the field is {_size(len(part.data))}, over the limit of {_size(max_bytes)}",
                        f"a JSON object of at most {_size(max_bytes)}",
                        kind="too_large",
                    )
                )
            )
        else:
            try:
                obj = load_json(part.data, "structured", JSON_ACCEPTED)
            except (InputError, InputErrors) as error:
                mine.extend((400, e) for e in error.errors)
            else:
                if isinstance(obj, dict):
                    overrides = obj
                else:
                    mine.append(
                        (400, InputError("structured", f"a JSON {type(obj).__name__}, not an object", JSON_ACCEPTED))
                    )
    if not mine:
        try:
            form = parse_structured_form(overrides, schema.features)
        except InputErrors as error:
            mine.extend(_with_status(_renamed(e)) for e in error.errors)
    if mine:
        problems.extend(mine)
        return None
    values = dict(from_file.values) if from_file is not None else {}
    values.update({name: form.values[name] for name in overrides})
    merged = {f.name: values.get(f.name) for f in schema.features}
    notes = (list(from_file.notes) if from_file is not None else []) + list(form.notes)
    if from_file is None:
        source = "form"
    else:
        source = from_file.source + ("+form" if overrides else "")
    return StructuredInput(merged, notes, source)


def _renamed(error: InputError) -> InputError:
    """The form parser calls the whole object 'form'; here the field is `structured`."""
    if error.field != "form":
        return error
    return InputError("structured", error.problem, error.accepted, error.feature, error.kind)
