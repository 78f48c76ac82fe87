"""The one check that a saved assessment is the analysed patient: the hash of its inputs (structured values,
notes, image bytes; `mmnar_core.explain.explanation.input_hash`, the hash the explanation carries) computed
from what is about to be saved and from what the database gives back, compared with the analysed one."""

from __future__ import annotations

from collections.abc import Mapping

from mmnar_core.explain.explanation import input_hash
from mmnar_core.schema import PatientRecord


def inputs_hash(structured: Mapping, images: Mapping[str, bytes], texts: Mapping[str, str]) -> str:
    """The input hash of these inputs (the label is not an input: it never changes the hash)."""
    return input_hash(PatientRecord("-", dict(structured), dict(images), dict(texts)))


def payload_hash(payload: dict) -> str:
    """The input hash of a save's payload (`patient_form.assessment_payload`)."""
    inputs = payload["inputs"]
    images = {m: data for m, (_name, _type, data) in payload["files"].items()}
    return inputs_hash(inputs["structured"], images, inputs["texts"])


def stored_hash(assessment) -> str:
    """The input hash of an assessment as the database gives it back (files checked by their SHA-256)."""
    images = {m: stored.data for m, stored in assessment.files.items()}
    return inputs_hash(assessment.inputs["structured"], images, assessment.inputs.get("texts", {}))
