"""Validated parsing of everything a user can bring for one patient (form, CSV, JSON, FHIR R4 Bundle,
chest X-ray upload, notes) into a PatientRecord, or a specific error saying what was wrong, where, and
what is accepted. See docs/inputs.md."""

from mmnar_core.inputs.errors import InputError, InputErrors
from mmnar_core.inputs.fhir import parse_fhir_bundle, parse_fhir_datetime
from mmnar_core.inputs.record import build_record
from mmnar_core.inputs.structured import (
    StructuredInput,
    parse_structured_csv,
    parse_structured_form,
    parse_structured_json,
    parse_value,
)
from mmnar_core.inputs.structured_file import parse_structured_file
from mmnar_core.inputs.units import unit_hint
from mmnar_core.inputs.uploads import ImageUpload, read_image_upload, read_text_upload

__all__ = [
    "ImageUpload",
    "InputError",
    "InputErrors",
    "StructuredInput",
    "build_record",
    "parse_fhir_bundle",
    "parse_fhir_datetime",
    "parse_structured_csv",
    "parse_structured_file",
    "parse_structured_form",
    "parse_structured_json",
    "parse_value",
    "read_image_upload",
    "read_text_upload",
    "unit_hint",
]
