"""Ordering signal vs content: split each modality's contribution into "it was obtained" and "what it shows".

A modality's Shapley value (mmnar_core.explain.modality) mixes two things: that the modality exists for
this patient (a clinician ordered the X-ray: the missingness signal an MMNAR model reads) and what it
contains. With the patient's available modalities A, and for S a subset of A,

- v(S): the risk with the modalities S present with the patient's own content (the others absent);
- v_ref(S): the risk with the modalities S present with REFERENCE content (a typical training X-ray, a
  neutral note, the training-median structured values), so only the availability pattern differs,

the split of modality m is

- obtained_m = Shapley value of m in the game v_ref (what being present, with typical content, adds);
- shows_m = Shapley value of m in v minus obtained_m = Shapley value of m in the game v - v_ref (the
  Shapley value is linear): what the patient's content adds over typical content, averaged over the
  orders in which the modalities could be added;
- obtained_m + shows_m = the modality's Shapley value in v, unchanged.

Both parts are additive: the obtained parts sum to v_ref(A) - v(none), the shows parts to v(A) - v_ref(A),
so a stacked waterfall runs risk with no modality -> risk for this pattern with typical content -> the
patient's risk. For an absent modality m, `missing_m` = v(A) - v(A + m with reference content): how much
its absence moves the risk compared with having it and it looking typical. That is not part of the
additive waterfall (the patient's risk already contains the absence; nothing sums to it), and it is not
the value of obtaining it (what it would show is unknown: see `value_of_absent`).

Every subset of both games and every absent modality is scored in ONE batched `score` call
(2^(k+1) + number of absent modalities rows). Reference contents are built once per predictor
(`reference_contents`) and say which reference each modality uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmnar_core.explain.modality import ReferenceSet, ScoreFn, WhatIf, shapley_values, subset_availability
from mmnar_core.schema import FeatureKind, ModalityKind, ModalitySpec

if TYPE_CHECKING:
    from mmnar_core.encoders.image_backbone import ImageEmbedder
    from mmnar_core.encoders.tabular import TabularEncoder

STRUCTURED_SOURCE = (
    "the training-median patient: numeric features at their training median, categorical and binary features "
    "at their most common training value (from the reference set), no missing indicator set"
)
IMAGE_SOURCE = "the embedding of the reference X-ray (pixel-wise median of training X-rays, explain_reference)"
MEDOID_SOURCE = (
    "a neutral {what}: the embedding of the reference-set training patient whose {what} embedding is the medoid "
    "(smallest summed Euclidean distance to the others, {n} patients who had it)"
)
ZERO_SOURCE = "the zero embedding (no reference content could be built: no training patient had this modality)"
MISSING_NOTE = (
    "missing: the risk now minus the risk had it been obtained with reference content; not part of the additive "
    "waterfall (the risk already contains the absence) and not the value of obtaining it"
)


# --------------------------------------------------------------------------- reference contents
@dataclass
class ReferenceContent:
    """One reference content embedding per modality (what "present with typical content" means), and which
    reference it is, in words."""

    vectors: dict[str, np.ndarray]  # modality -> (dim,) float32
    sources: dict[str, str]  # modality -> which reference (shown with every split)

    def tensors(self, modalities: Sequence[str]) -> list[torch.Tensor]:
        """(dim,) float32 tensors in `modalities` order."""
        return [torch.from_numpy(np.asarray(self.vectors[m], np.float32).reshape(-1)) for m in modalities]

    def to_dict(self) -> dict[str, Any]:
        return {
            "vectors": {m: [float(x) for x in np.asarray(v).reshape(-1)] for m, v in self.vectors.items()},
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceContent:
        return cls(
            {m: np.asarray(v, np.float32) for m, v in data["vectors"].items()},
            dict(data["sources"]),
        )


def medoid_row(embeddings: np.ndarray) -> int:
    """Index of the row with the smallest summed Euclidean distance to all rows (an actual patient's
    embedding, not an average no encoder could produce)."""
    x = torch.as_tensor(np.asarray(embeddings, np.float64))
    if len(x) == 0:
        raise ValueError("the medoid of zero rows is undefined")
    return int(torch.cdist(x, x).sum(dim=1).argmin())


def structured_reference(encoder: TabularEncoder, training_rows: np.ndarray | None = None) -> np.ndarray:
    """The encoded training-median patient: numeric features at the fitted median (`encoder.center`),
    each categorical at its most common category and each binary feature at its most common value among
    `training_rows` (encoded training vectors, e.g. the reference set's; ties and no rows: the first
    category, 0), every value given so no missing indicator is set."""
    rows = None if training_rows is None or len(training_rows) == 0 else np.asarray(training_rows, np.float64)
    names = encoder.output_names
    record: dict[str, Any] = {}
    for f in encoder.features:
        if f.kind is FeatureKind.NUMERIC:
            record[f.name] = encoder.center[f.name]
        elif f.kind is FeatureKind.CATEGORICAL:
            categories = list(f.categories or [])
            counts = [0.0 if rows is None else rows[:, names.index(f"{f.name}={c}")].sum() for c in categories]
            record[f.name] = categories[int(np.argmax(counts))]
        else:
            value = 0.0
            if rows is not None:
                column = rows[:, names.index(f.name)]
                if encoder.config.missing_indicators:
                    column = column[rows[:, names.index(f"{f.name}:missing")] < 0.5]
                value = float(len(column) > 0 and column.mean() > 0.5)
            record[f.name] = value
    return encoder.transform_record(record).astype(np.float32)


def reference_contents(
    modalities: Sequence[ModalitySpec],
    input_dims: Sequence[int],
    reference: ReferenceSet | None,
    tabular: Mapping[str, TabularEncoder] | None = None,
    image: ImageEmbedder | None = None,
    reference_images: Mapping[str, torch.Tensor] | None = None,
) -> ReferenceContent:
    """One reference content per modality, from the parts of a predictor (built once, at load):
    structured -> `structured_reference` (modes from the reference set's rows that had it); image -> the
    image encoder's embedding of the bundle's reference X-ray ((1, 1, S, S) model input); text, and any
    modality whose own rule lacks its parts -> the medoid of the reference set's embeddings of that
    modality; nothing at all -> zeros (said in `sources`)."""
    tabular, reference_images = tabular or {}, reference_images or {}
    vectors: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for index, (spec, dim) in enumerate(zip(modalities, input_dims)):
        had = None
        if reference is not None:
            rows = torch.nonzero(reference.availability[:, index]).flatten()
            had = reference.inputs[index][rows].float().cpu().numpy()
        if spec.kind is ModalityKind.TABULAR and spec.name in tabular:
            vector, source = structured_reference(tabular[spec.name], had), STRUCTURED_SOURCE
        elif spec.kind is ModalityKind.IMAGE and image is not None and spec.name in reference_images:
            with torch.no_grad():
                pixels = reference_images[spec.name].to(image.device, torch.float32)
                vector, source = image.encoder(pixels).float().cpu().numpy()[0], IMAGE_SOURCE
        elif had is not None and len(had):
            what = "note" if spec.kind is ModalityKind.TEXT else spec.name
            vector, source = had[medoid_row(had)], MEDOID_SOURCE.format(what=what, n=len(had))
        else:
            vector, source = np.zeros(dim, np.float32), ZERO_SOURCE
        if vector.shape != (dim,):
            raise ValueError(f"reference content of {spec.name!r} has shape {vector.shape}, the model expects ({dim},)")
        vectors[spec.name], sources[spec.name] = np.asarray(vector, np.float32), source
    return ReferenceContent(vectors, sources)


# --------------------------------------------------------------------------- the split
@dataclass
class ModalityParts:
    """An available modality's Shapley value split in two (per task, risk units; total = obtained + shows)."""

    modality: str
    obtained: dict[str, float]  # ordering part: Shapley value in the game with reference content
    shows: dict[str, float]  # content part: the patient's content vs the reference
    total: dict[str, float]  # the modality's Shapley value

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "obtained": dict(self.obtained),
            "shows": dict(self.shows),
            "total": dict(self.total),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModalityParts:
        return cls(data["modality"], dict(data["obtained"]), dict(data["shows"]), dict(data["total"]))


@dataclass
class MissingPart:
    """An absent modality: the risk now minus the risk had it been obtained with reference content."""

    modality: str
    effect: dict[str, float]  # v(available) - v(available + this one with reference content)
    risk_if_typical: dict[str, float]  # v(available + this one with reference content)

    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "effect": dict(self.effect), "risk_if_typical": dict(self.risk_if_typical)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MissingPart:
        return cls(data["modality"], dict(data["effect"]), dict(data["risk_if_typical"]))


@dataclass
class OrderingSplit:
    """The stacked waterfall: `none_risk` + sum(obtained) = `pattern_risk`; + sum(shows) = `risk`.
    `missing` stands beside it (see the module doc). `references`: modality -> which reference content."""

    tasks: list[str]
    available: list[str]
    none_risk: dict[str, float]  # no modality at all (the model's missing path for everything)
    pattern_risk: dict[str, float]  # this availability pattern with reference content everywhere
    risk: dict[str, float]  # the patient's risk (every available modality with its own content)
    parts: list[ModalityParts]
    missing: list[MissingPart] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)
    note: str = MISSING_NOTE

    def part(self, modality: str) -> ModalityParts:
        return next(p for p in self.parts if p.modality == modality)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": list(self.tasks),
            "available": list(self.available),
            "none_risk": dict(self.none_risk),
            "pattern_risk": dict(self.pattern_risk),
            "risk": dict(self.risk),
            "parts": [p.to_dict() for p in self.parts],
            "missing": [m.to_dict() for m in self.missing],
            "references": dict(self.references),
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderingSplit:
        return cls(
            list(data["tasks"]),
            list(data["available"]),
            dict(data["none_risk"]),
            dict(data["pattern_risk"]),
            dict(data["risk"]),
            [ModalityParts.from_dict(p) for p in data["parts"]],
            [MissingPart.from_dict(m) for m in data.get("missing", [])],
            dict(data.get("references", {})),
            data.get("note", MISSING_NOTE),
        )


def split_ordering(
    score: ScoreFn,
    inputs: list[torch.Tensor],
    availability: np.ndarray,
    reference: Sequence[torch.Tensor],
    modalities: Sequence[str],
    tasks: Sequence[str],
    sources: Mapping[str, str] | None = None,
) -> OrderingSplit:
    """Split each available modality's Shapley value into obtained + shows, and give each absent modality's
    missing effect (module doc), from one batched `score` call. `inputs`: the patient's (1, dim) (or (dim,))
    embeddings per modality (zeros where absent, as the predictor passes them); `reference`: one (dim,)
    reference content per modality; `sources`: which reference each is (copied into the record)."""
    availability = np.asarray(availability, dtype=bool)
    if not len(inputs) == len(reference) == len(modalities) == len(availability):
        raise ValueError("need one input, one reference and one name per modality, and an (M,) availability")
    available, masks = subset_availability(availability)
    absent = [int(m) for m in np.flatnonzero(~availability)]
    n_subsets = len(masks)
    patient = [x.reshape(1, -1).float() for x in inputs]
    typical = [r.reshape(1, -1).to(x.device, torch.float32) for r, x in zip(reference, patient)]
    rows = 2 * n_subsets + len(absent)
    batch = [x.expand(rows, -1).clone() for x in patient]
    for m in available:  # rows n_subsets..2 n_subsets-1: the game v_ref
        batch[m][n_subsets : 2 * n_subsets] = typical[m]
    extra = np.repeat(availability[None], len(absent), axis=0)
    for i, m in enumerate(absent):  # one row per absent modality: the patient plus it, with reference content
        batch[m][2 * n_subsets + i] = typical[m]
        extra[i, m] = True
    all_masks = np.concatenate([masks, masks, extra])
    risks = np.asarray(score(batch, torch.from_numpy(all_masks)), dtype=np.float64)
    v, v_ref, with_typical = risks[:n_subsets], risks[n_subsets : 2 * n_subsets], risks[2 * n_subsets :]
    phi = shapley_values(WhatIf(available, masks, v))
    obtained = shapley_values(WhatIf(available, masks, v_ref))
    shows = phi - obtained

    def per_task(values: np.ndarray) -> dict[str, float]:
        return {t: float(x) for t, x in zip(tasks, values)}

    parts = [
        ModalityParts(modalities[m], per_task(obtained[j]), per_task(shows[j]), per_task(phi[j]))
        for j, m in enumerate(available)
    ]
    missing = [
        MissingPart(modalities[m], per_task(v[-1] - with_typical[i]), per_task(with_typical[i]))
        for i, m in enumerate(absent)
    ]
    sources = sources or {}
    return OrderingSplit(
        list(tasks),
        [modalities[m] for m in available],
        per_task(v[0]),
        per_task(v_ref[-1]),
        per_task(v[-1]),
        parts,
        missing,
        {modalities[m]: sources[modalities[m]] for m in [*available, *absent] if modalities[m] in sources},
    )
