"""A hand-made three-patient dataset in the canonical format, for format tests."""

from pathlib import Path

import pandas as pd

from mmnar_core.dataset import DatasetWriter, Manifest
from mmnar_core.schema import FeatureSpec, ModalityKind, ModalitySpec, OutcomeSpec

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010800000000"
    "3a7e9b550000000a49444154789c6360000000020001e221bc330000000049454e44ae426082"
)


def tiny_manifest() -> Manifest:
    return Manifest(
        name="tiny",
        modalities=[
            ModalitySpec("structured", ModalityKind.TABULAR),
            ModalitySpec("cxr", ModalityKind.IMAGE),
            ModalitySpec("note", ModalityKind.TEXT),
        ],
        features=[
            FeatureSpec("age", "numeric", "structured", unit="years", valid_range=(18, 110)),
            FeatureSpec("sex", "categorical", "structured", categories=("female", "male")),
        ],
        outcomes=[OutcomeSpec("death", "In-hospital death", "died before discharge")],
        provenance={"source": "hand-made test fixture"},
    )


def write_tiny(out: Path, overwrite: bool = False) -> Path:
    patients = pd.DataFrame(
        {
            "patient_id": ["p1", "p2", "p3"],
            "group_id": ["p1", "p2", "p3"],
            "split": ["train", "val", "test"],
            "avail_structured": [True, True, True],
            "avail_cxr": [True, False, True],
            "avail_note": [False, True, True],
            "label_death": pd.array([0, 1, None], dtype="Int8"),
        }
    )
    structured = pd.DataFrame(
        {"patient_id": ["p1", "p2", "p3"], "age": [40.0, 71.5, None], "sex": ["male", "female", "female"]}
    )
    text = pd.DataFrame({"patient_id": ["p1", "p2", "p3"], "note": [None, "Discharged home.", "No effusion."]})
    with DatasetWriter(out, overwrite=overwrite) as writer:
        rows = []
        for pid in ("p1", "p3"):
            rows.append(
                {"patient_id": pid, "modality": "cxr", "path": writer.write_bytes(f"images/{pid}.png", PNG_1x1)}
            )
        return writer.finish(tiny_manifest(), patients, structured, text, pd.DataFrame(rows))
