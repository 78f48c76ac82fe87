"""Checked inputs -> one PatientRecord, the object Predictor.predict / what_if / explain take."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from mmnar_core.inputs.errors import ErrorCollector
from mmnar_core.inputs.structured import StructuredInput
from mmnar_core.inputs.uploads import ImageUpload
from mmnar_core.schema import ModalityKind, ModalitySpec, PatientRecord


def build_record(
    patient_id: str,
    structured: StructuredInput | None,
    images: Mapping[str, ImageUpload],
    texts: Mapping[str, str],
    modalities: Sequence[ModalitySpec],
) -> PatientRecord:
    """One PatientRecord. Images are passed as their bytes (the encoder, the embedding cache and the
    explanation hash all read bytes; no temporary files). Blank texts count as not given; other texts
    must already be checked by read_text_upload (the caller knows its length limit; not checked twice).
    Raises InputErrors naming each modality that does not fit the model."""
    errors = ErrorCollector()
    if not isinstance(patient_id, str) or not patient_id.strip():
        errors.add("patient_id", f"{patient_id!r} is empty", "a non-empty identifier (any text)")
    kinds = {m.name: m.kind for m in modalities}
    accepted = {kind: ", ".join(n for n, k in kinds.items() if k is kind) or "none" for kind in ModalityKind}
    record_images: dict[str, str | Path | bytes] = {}
    for name, upload in (images or {}).items():
        if kinds.get(name) is not ModalityKind.IMAGE:
            errors.add(
                f"images[{name!r}]",
                "not an image modality of this model",
                f"image modalities: {accepted[ModalityKind.IMAGE]}",
            )
        elif upload is None:
            continue
        elif not isinstance(upload, ImageUpload):
            errors.add(
                name,
                f"expected an ImageUpload from read_image_upload, got {type(upload).__name__}",
                "read_image_upload(filename, data, max_bytes)",
            )
        else:
            record_images[name] = upload.data
    record_texts = {}
    for name, text in (texts or {}).items():
        if kinds.get(name) is not ModalityKind.TEXT:
            errors.add(
                f"texts[{name!r}]",
                "not a text modality of this model",
                f"text modalities: {accepted[ModalityKind.TEXT]}",
            )
            continue
        if text is None or (isinstance(text, str) and not text.strip()):
            continue
        if not isinstance(text, str):  # callers validated it with read_text_upload, under their own limit
            errors.add(
                name,
                f"expected the note as text, got {type(text).__name__}",
                "the str returned by read_text_upload(field, data, max_chars)",
            )
            continue
        record_texts[name] = text
    values = {}
    if structured is not None:
        if not isinstance(structured, StructuredInput):
            errors.add(
                "structured",
                f"expected a StructuredInput, got {type(structured).__name__}",
                "the result of parse_structured_form / _csv / _json or parse_fhir_bundle",
            )
        elif accepted[ModalityKind.TABULAR] == "none":
            errors.add("structured", "this model has no structured modality", "no structured values")
        else:
            values = dict(structured.values)
    errors.raise_if_any()
    return PatientRecord(patient_id.strip(), structured=values, images=record_images, texts=record_texts)
