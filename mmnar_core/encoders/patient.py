"""One patient's raw inputs -> one vector per available modality: the path the app and a model server
use at prediction time (the same encoders, preprocessing and fitted state as training)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mmnar_core.encoders.image_backbone import ImageEmbedder
from mmnar_core.encoders.tabular import TabularEncoder
from mmnar_core.encoders.text_encoder import TextEmbedder
from mmnar_core.schema import ModalityKind, ModalitySpec, PatientRecord


class PatientEncoder:
    """Holds one encoder per modality kind; `encode` returns only the modalities the patient has."""

    def __init__(
        self,
        modalities: Sequence[ModalitySpec],
        image: ImageEmbedder | None = None,
        text: TextEmbedder | None = None,
        tabular: Mapping[str, TabularEncoder] | None = None,
    ):
        self.modalities = list(modalities)
        self.image = image
        self.text = text
        self.tabular = dict(tabular or {})

    def encode(self, record: PatientRecord) -> dict[str, np.ndarray]:
        out, images, notes = self._prepare(record)
        if images:
            assert self.image is not None, "_prepare decodes images only with an image embedder"
            out.update(zip([n for n, _ in images], self.image.embed_arrays([a for _, a in images])))
        if notes:  # all notes of the patient in one forward pass
            assert self.text is not None, "_prepare cleans notes only with a text embedder"
            out.update(zip([n for n, _ in notes], self.text.embed_clean([t for _, t in notes])))
        return {m.name: out[m.name] for m in self.modalities if m.name in out}

    def encode_many(self, records: Sequence[PatientRecord]) -> list[dict[str, np.ndarray]]:
        """`encode` of several patients: every image of every patient in one CNN batch and every note in
        one transformer batch. Same preprocessing; batched float math may differ from `encode` in the
        last bits (the per-patient `encode` is the reference)."""
        prepared = [self._prepare(record) for record in records]
        images = [(i, name, array) for i, (_, imgs, _) in enumerate(prepared) for name, array in imgs]
        notes = [(i, name, text) for i, (_, _, txts) in enumerate(prepared) for name, text in txts]
        outs = [out for out, _, _ in prepared]
        if images:
            assert self.image is not None, "_prepare decodes images only with an image embedder"
            for (i, name, _), vector in zip(images, self.image.embed_arrays([a for _, _, a in images])):
                outs[i][name] = vector
        if notes:
            assert self.text is not None, "_prepare cleans notes only with a text embedder"
            for (i, name, _), vector in zip(notes, self.text.embed_clean([t for _, _, t in notes])):
                outs[i][name] = vector
        return [{m.name: out[m.name] for m in self.modalities if m.name in out} for out in outs]

    def _prepare(self, record: PatientRecord):
        """(tabular vectors, [(image modality, decoded pixels)], [(text modality, cleaned note)])."""
        out: dict[str, np.ndarray] = {}
        images: list[tuple[str, np.ndarray]] = []
        notes: list[tuple[str, str]] = []
        for modality in self.modalities:
            if modality.kind is ModalityKind.TABULAR and modality.name in self.tabular:
                encoder = self.tabular[modality.name]
                owned = {f.name: record.structured.get(f.name) for f in encoder.features}
                if any(v is not None for v in owned.values()):
                    out[modality.name] = encoder.transform_record(owned)
            elif modality.kind is ModalityKind.IMAGE and self.image is not None:
                source = record.images.get(modality.name)
                if source is not None:
                    images.append((modality.name, self.image.decode(source)))
            elif modality.kind is ModalityKind.TEXT and self.text is not None:
                note = record.texts.get(modality.name)
                if note is not None and str(note).strip():
                    notes.append((modality.name, self.text.clean(note, f"{modality.name} of {record.patient_id}")))
        return out, images, notes
