"""Ordering signal vs content: split each modality's contribution into "it was obtained" and "what it shows".

A modality's Shapley value (mmnar_core.explain.modality) mixes two things: that the modality exists for
this patient (a clinician ordered the X-ray: the missingness signal an MMNAR model reads) and what it
contains. With the patient's available modalities A, and for S a subset of A,

- v(S): the risk with the modalities S present with the patient's own content (the others absent);
- v_ref(S): the risk with the modalities S present with REFERENCE content (one typical content per modality,
  or the average over a sample of training contents), so only the availability pattern differs,

the split of modality m is

- obtained_m = Shapley value of m in the game v_ref (what being present, with reference content, adds);
- shows_m = Shapley value of m in v minus obtained_m = Shapley value of m in the game v - v_ref (the
  Shapley value is linear): what the patient's content adds over reference content, averaged over the
  orders in which the modalities could be added;
- obtained_m + shows_m = the modality's Shapley value in v, unchanged.

Both parts are additive: the obtained parts sum to v_ref(A) - v(none), the shows parts to v(A) - v_ref(A),
so a stacked waterfall runs risk with no modality -> risk for this pattern with typical content -> the
patient's risk. For an absent modality m, `missing_m` = v(A) - v(A + m with reference content): how much
its absence moves the risk compared with having it with reference content. That is not part of the
additive waterfall (the patient's risk already contains the absence; nothing sums to it), and it is not
the value of obtaining it (what it would show is unknown: see `value_of_absent`).

v_ref depends on the availability mask only, so a `ReferenceGame` computes it once per mask and keeps it;
per patient one batched `score` call scores its 2^k subsets and the absent modalities' rows. Reference
contents are built once per predictor and say which reference each modality uses: `reference_contents`
(one typical content per modality: the reference X-ray, a neutral note, the median structured values) or
`reference_sample` (K training contents per modality, whose risks are averaged: "obtained, whatever it
shows"). On planted cohorts only the sample meets the 90 % goal (docs/explanations.md, "Ordering signal vs
content"): one typical content is rarely neutral, and its distance from the average content leaks into
the obtained part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmnar_core.explain.modality import ReferenceSet, ScoreFn, WhatIf, shapley_values, subset_availability
from mmnar_core.results import MissingPart, ModalityParts, OrderingSplit
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


# --------------------------------------------------------------------------- reference contents
@dataclass
class ReferenceContent:
    """One reference content embedding per modality (what "present with typical content" means), and which
    reference it is, in words."""

    vectors: dict[str, np.ndarray]  # modality -> (dim,) float32: one typical content, or (K, dim): a sample
    sources: dict[str, str]  # modality -> which reference (shown with every split)

    def tensors(self, modalities: Sequence[str]) -> list[torch.Tensor]:
        """(dim,) or (K, dim) float32 tensors in `modalities` order."""
        return [torch.from_numpy(np.asarray(self.vectors[m], np.float32)) for m in modalities]

    def to_dict(self) -> dict[str, Any]:
        return {
            "vectors": {m: np.asarray(v, np.float64).tolist() for m, v in self.vectors.items()},
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


SAMPLE_SOURCE = (
    "whatever it shows: the mean risk over {k} {what} embeddings of training patients, drawn with a fixed seed "
    "from the {n} reference-set patients who had it (each modality drawn independently)"
)


def reference_sample(
    modalities: Sequence[str], input_dims: Sequence[int], reference: ReferenceSet, k: int = 256, seed: int = 0
) -> ReferenceContent:
    """K training contents per modality, drawn with a fixed seed from the reference-set patients who had it
    (without replacement when there are at least K of them): with it, "obtained" means present with content
    drawn from training, the effect of presence averaged over what the modality shows (the expectation over
    content, not one typical content). K = 256 keeps the sampling error of that average near 0.02 for a
    modality whose content moves the risk by +-0.3 (docs/explanations.md). A modality nobody had gets K
    zero rows (said in `sources`)."""
    rng = np.random.default_rng(seed)
    vectors: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for index, (name, dim) in enumerate(zip(modalities, input_dims)):
        rows = torch.nonzero(reference.availability[:, index]).flatten().numpy()
        if len(rows) == 0:
            vectors[name], sources[name] = np.zeros((k, dim), np.float32), ZERO_SOURCE
            continue
        chosen = torch.as_tensor(np.sort(rng.choice(rows, k, replace=len(rows) < k)))
        vectors[name] = reference.inputs[index][chosen].float().cpu().numpy()
        sources[name] = SAMPLE_SOURCE.format(k=k, what=name, n=len(rows))
    return ReferenceContent(vectors, sources)


# --------------------------------------------------------------------------- the split
class ReferenceGame:
    """v_ref: the risk with the modalities of an availability mask present at reference content (and the
    others absent), averaged over the reference draws. It depends on the mask only, never on the patient,
    so it is computed once per mask and kept (at most 2^M masks: 16 for four modalities): build one per
    predictor and pass it to every `split_ordering`."""

    def __init__(self, score: ScoreFn, reference: Sequence[torch.Tensor]) -> None:
        contents = [torch.as_tensor(r, dtype=torch.float32) for r in reference]
        contents = [r.reshape(-1, r.shape[-1]) for r in contents]
        self.draws = max(len(r) for r in contents)
        if any(len(r) not in (1, self.draws) for r in contents):
            raise ValueError("every modality needs 1 reference content or the same number as the others")
        self.contents = [r.expand(self.draws, -1) for r in contents]  # per modality (K, dim)
        self.score = score
        self._risks: dict[tuple[bool, ...], np.ndarray] = {}

    def risks(self, masks: np.ndarray) -> np.ndarray:
        """(n, T) v_ref of each (M,) row of `masks`; the masks not seen before in one batched `score` call."""
        masks = np.asarray(masks, dtype=bool).reshape(-1, len(self.contents))
        keys = [tuple(bool(b) for b in row) for row in masks]
        todo = list(dict.fromkeys(k for k in keys if k not in self._risks))
        if todo:
            rows = np.repeat(np.array(todo, dtype=bool), self.draws, axis=0)  # mask j: rows j*K .. (j+1)*K - 1
            present = torch.from_numpy(rows)
            batch = [r.repeat(len(todo), 1) * present[:, m : m + 1] for m, r in enumerate(self.contents)]
            risks = np.asarray(self.score(batch, present), dtype=np.float64)
            for j, key in enumerate(todo):
                self._risks[key] = risks[j * self.draws : (j + 1) * self.draws].mean(axis=0)
        return np.stack([self._risks[k] for k in keys])


def split_ordering(
    score: ScoreFn,
    inputs: list[torch.Tensor],
    availability: np.ndarray,
    reference: Sequence[torch.Tensor],
    modalities: Sequence[str],
    tasks: Sequence[str],
    sources: Mapping[str, str] | None = None,
    game: ReferenceGame | None = None,
    subsets: WhatIf | None = None,
) -> OrderingSplit:
    """Split each available modality's Shapley value into obtained + shows, and give each absent modality's
    missing effect (module doc). `inputs`: the patient's (1, dim) (or (dim,)) embeddings per modality (zeros
    where absent, as the predictor passes them); `reference`: per modality one (dim,) typical content, or a
    (K, dim) sample whose risks are averaged (v_ref(S) and the missing effects are then means over the K
    draws); `sources`: which reference each is (copied into the record); `game`: the predictor's
    `ReferenceGame` over the same `reference` (v_ref cached across patients; a fresh one otherwise);
    `subsets`: this patient's `what_if` result, whose risks are v (then not scored again).
    One batched `score` call for the patient (its 2^k subsets unless `subsets` is given, and K rows per
    absent modality), plus one for the masks of v_ref not yet in `game`."""
    availability = np.asarray(availability, dtype=bool)
    if not len(inputs) == len(reference) == len(modalities) == len(availability):
        raise ValueError("need one input, one reference and one name per modality, and an (M,) availability")
    game = game if game is not None else ReferenceGame(score, reference)
    available, masks = subset_availability(availability)
    if subsets is not None and (subsets.available != available or not np.array_equal(subsets.subset_masks, masks)):
        raise ValueError("`subsets` is the what-if of another availability pattern")
    absent = [int(m) for m in np.flatnonzero(~availability)]
    draws = game.draws
    n_subsets = 0 if subsets is not None else len(masks)
    patient = [x.reshape(1, -1).float() for x in inputs]
    # rows: v (unless given), then per absent modality `draws` rows: the patient plus it, with reference content
    batch = [x.expand(n_subsets + len(absent) * draws, -1).clone() for x in patient]
    extra = np.repeat(availability[None], len(absent), axis=0)
    for i, m in enumerate(absent):
        batch[m][n_subsets + i * draws : n_subsets + (i + 1) * draws] = game.contents[m].to(patient[m].device)
        extra[i, m] = True
    all_masks = np.concatenate([masks[:n_subsets], np.repeat(extra, draws, axis=0)])
    risks = np.zeros((0, len(tasks)))
    if len(all_masks):
        risks = np.asarray(score(batch, torch.from_numpy(all_masks)), dtype=np.float64)
    v = np.asarray(subsets.risks, dtype=np.float64) if subsets is not None else risks[:n_subsets]
    with_typical = risks[n_subsets:].reshape(len(absent), draws, risks.shape[1]).mean(axis=1)
    v_ref = game.risks(masks)
    v_ref[0] = v[0]  # the empty set has no content: the same risk in both games (up to batch float noise)
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
