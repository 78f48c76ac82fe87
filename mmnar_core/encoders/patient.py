"""One patient's raw inputs -> one vector per available modality: the path the app and a model server
use at prediction time (the same encoders, preprocessing and fitted state as training)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from mmnar_core.encoders.image_backbone import ImageEmbedder
from mmnar_core.encoders.tabular import TabularEncoder
from mmnar_core.encoders.text_encoder import TextEmbedder
from mmnar_core.schema import ModalityKind, ModalitySpec, PatientRecord


class PatientEncoder:
    """Holds one encoder per modality kind; `encode` returns only the modalities the patient has."""

    def __init__(self, modalities: Sequence[ModalitySpec], image: ImageEmbedder | None = None,
                 text: TextEmbedder | None = None, tabular: Mapping[str, TabularEncoder] | None = None):
        self.modalities = list(modalities)
        self.image = image
        self.text = text
        self.tabular = dict(tabular or {})

    def encode(self, record: PatientRecord) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        notes, note_names, images, image_names = [], [], [], []
        for modality in self.modalities:
            if modality.kind is ModalityKind.TABULAR and modality.name in self.tabular:
                encoder = self.tabular[modality.name]
                owned = {f.name: record.structured.get(f.name) for f in encoder.features}
                if any(v is not None for v in owned.values()):
                    out[modality.name] = encoder.transform_record(owned)
            elif modality.kind is ModalityKind.IMAGE and self.image is not None:
                source = record.images.get(modality.name)
                if source is not None:
                    images.append(self.image.decode(source))
                    image_names.append(modality.name)
            elif modality.kind is ModalityKind.TEXT and self.text is not None:
                note = record.texts.get(modality.name)
                if note is not None and str(note).strip():
                    notes.append(self.text.clean(note, f"{modality.name} of {record.patient_id}"))
                    note_names.append(modality.name)
        if images:
            out.update(zip(image_names, self.image.embed_arrays(images)))
        if notes:  # all notes of the patient in one forward pass
            out.update(zip(note_names, self.text.embed_clean(notes)))
        return {m.name: out[m.name] for m in self.modalities if m.name in out}
