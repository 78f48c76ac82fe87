"""One upload widget for every structured format: the content decides whether it is a FHIR R4 Bundle, a JSON
feature object or a CSV. A module of its own so the FHIR parser and the CSV/JSON parsers do not import each
other (fhir uses structured's value parsing; this dispatcher uses both)."""

from __future__ import annotations

from collections.abc import Sequence

from mmnar_core.inputs.fhir import parse_fhir_bundle
from mmnar_core.inputs.structured import (
    JSON_ACCEPTED,
    StructuredInput,
    load_json,
    parse_structured_csv,
    structured_from_json_object,
)
from mmnar_core.schema import FeatureSpec


def parse_structured_file(
    filename: str, data: bytes, features: Sequence[FeatureSpec], reference_time=None
) -> StructuredInput:
    """A JSON object with resourceType 'Bundle' is FHIR, another JSON object is a feature object, anything
    else is CSV."""
    head = bytes(data[:4096]).lstrip(b"\xef\xbb\xbf \t\r\n") if isinstance(data, (bytes, bytearray)) else b""
    if head.startswith((b"{", b"[")):
        obj = load_json(data, filename, JSON_ACCEPTED)
        if isinstance(obj, dict) and "resourceType" in obj:
            return parse_fhir_bundle(obj, features, filename, reference_time)
        return structured_from_json_object(obj, features, filename)
    return parse_structured_csv(data, features, filename)
