"""The predictor interface the app and the server use: `Predictor.load(bundle)`, `predict`, `what_if`.

A thin facade: it rebuilds the exact input path the model was trained on (encoders whose ids match the
bundle's, the tabular state fit on the training split), encodes a patient's raw inputs once, and leaves the
rest to the layers below: the bundle's calibrated model turns logits into risks
(mmnar_core.calibration.calibrated), mmnar_core.explain attributes them. Everything returned is a typed
record (mmnar_core.results, mmnar_core.explain.explanation) with `to_dict()` / `from_dict()`, so it can be
stored, compared and sent over HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmnar_core.bundle import Bundle, EncoderKind, load_bundle
from mmnar_core.calibration.calibrated import CalibratedModel
from mmnar_core.cancel import CancelToken, cancel_scope, check_cancelled
from mmnar_core.explain.attributions import (
    AttributionSettings,
    AttributionTarget,
    attribute_record,
    tabular_references_from,
    task_indices,
)
from mmnar_core.explain.explanation import (
    FORMAT,
    NOTES,
    Explanation,
    ExplanationCache,
    cache_key,
    input_hash,
)
from mmnar_core.explain.modality import MIN_REFERENCE, ReferenceSet, shapley_values, value_of_absent, what_if
from mmnar_core.explain.ordering import ReferenceGame, reference_contents, reference_sample, split_ordering
from mmnar_core.explain.summary import FeatureRange, SummaryFacts, summary_facts
from mmnar_core.numeric import members_mean_and_spread
from mmnar_core.ood import DistributionCheck, DistributionReport
from mmnar_core.patterns import encode_pattern, pattern_label
from mmnar_core.resources import SHIPPED_IMAGE_WEIGHTS  # re-exported: the default image weights
from mmnar_core.results import (  # re-exported: the result types were defined here first
    ALL_TASKS,
    AbsentModality,
    ObtainedEstimate,
    Prediction,
    SubsetRisks,
    TaskRisk,
    WhatIfResult,
)
from mmnar_core.schema import FeatureSpec, PatientRecord

if TYPE_CHECKING:
    from mmnar_core.encoders.image_backbone import ImageEmbedder
    from mmnar_core.encoders.patient import PatientEncoder
    from mmnar_core.encoders.text_encoder import TextEmbedder

__all__ = [
    "INTERVAL_MEANING",
    "SHIPPED_IMAGE_WEIGHTS",
    "AbsentModality",
    "ObtainedEstimate",
    "Prediction",
    "Predictor",
    "PredictorError",
    "SubsetRisks",
    "TaskRisk",
    "WhatIfResult",
    "reference_set",
]


class PredictorError(ValueError):
    """The bundle cannot be served as asked (e.g. its encoders are not available here)."""


INTERVAL_MEANING = (
    "95 % interval of the estimated risk for patients with this record: it combines how much the "
    "model's independently trained members disagree with the uncertainty of the site correction. "
    "It does not cover what the record does not show (a clinician's unrecorded judgement, an "
    "unmeasured test): measured on synthetic cohorts it contains the true risk less often than "
    "95 % (docs/calibration.md)."
)


class Predictor:
    def __init__(
        self, bundle: Bundle, encoder: PatientEncoder, device: torch.device, reference: ReferenceSet | None = None
    ) -> None:
        self.bundle = bundle
        self.encoder = encoder
        self.device = device
        self.reference = reference
        self.config = bundle.config
        dataset = bundle.dataset_info
        self.modalities = dataset.modalities
        self.features = _mark_open_categories(dataset.features, encoder)
        self.outcomes = dataset.outcomes
        if bundle.calibrated is None:
            raise PredictorError(f"{bundle.root}: the bundle was not loaded with its calibrated model")
        self.calibrated: CalibratedModel = bundle.calibrated.eval()  # logits -> displayed risks, the one map
        self.reference_images = bundle.reference_images  # image IG baselines, per modality
        embedder = getattr(encoder, "image", None)  # None: no image encoder (or no encoder: the lab's stand-in)
        for name, image in self.reference_images.items():
            size = embedder.preprocess.size if embedder is not None else None
            if tuple(image.shape) != (1, 1, size, size):
                raise PredictorError(
                    f"{bundle.root}: explain_reference.safetensors holds a {tuple(image.shape)} "
                    f"reference for {name}, but the image encoder takes (1, 1, {size}, {size}); "
                    "rebuild it with `python -m mmnar_core reference-image`"
                )
        self._encoded = ExplanationCache(8)  # input hash -> encoder embeddings (see `encode`)
        self.distribution_check = DistributionCheck.from_bundle(bundle)  # None for a bundle without one
        self.feature_ranges = self._feature_ranges()
        specs = {m.name: m for m in self.modalities}
        self.tabular_references = (  # structured IG baselines: training patients (expected gradients)
            {}
            if reference is None
            else tabular_references_from(
                reference.inputs, reference.availability, [specs[n] for n in self.config.modalities]
            )
        )
        self._ordering_game = self._ordering_reference(encoder)

    def _ordering_reference(self, encoder: Any) -> ReferenceGame | None:
        """What "it was obtained" is measured with (mmnar_core.explain.ordering): 256 training contents per
        modality from the reference set, or without one a typical content per modality; None (no split) for
        a model without a reference set whose modalities the bundle does not describe (the lab's in-memory
        models)."""
        names = list(self.config.modalities)
        self.ordering_sources: dict[str, str] = {}
        specs = {m.name: m for m in self.modalities}
        if self.reference is not None:
            contents = reference_sample(names, self.config.input_dims, self.reference)
        elif not set(names) <= set(specs):
            return None
        else:
            contents = reference_contents(
                [specs[n] for n in names],
                self.config.input_dims,
                None,
                getattr(encoder, "tabular", {}),
                getattr(encoder, "image", None),
                self.reference_images,
            )
        self.ordering_sources = contents.sources
        return ReferenceGame(self.score, contents.tensors(names))

    @classmethod
    def load(
        cls,
        bundle_dir: str | Path,
        device: str | None = None,
        image_weights: str | Path | None = None,
        text_model: str | None = None,
    ) -> Predictor:
        """Load a bundle and the encoders it was trained with (checked by encoder id)."""
        from mmnar_core.encoders.runtime import pick_device

        torch_device = pick_device(device)
        bundle = load_bundle(bundle_dir, torch_device)
        encoder = _build_patient_encoder(bundle, torch_device, image_weights, text_model)
        return cls(bundle, encoder, torch_device, reference_set(bundle))

    def prepare(self, check: Callable[[str], None] | None = None) -> None:
        """Fit now what the what-if would otherwise fit on its first patient of each availability pattern:
        the ordering split's reference risks of every pattern (one batch) and the conditional model of every
        modality absent from a training pattern (a ridge fit each, about 2.5 s in all on 2 cores). `check`
        is called between fits (the warm-up's stop signal)."""
        check = check or (lambda step: None)
        modalities = len(self.config.modalities)
        masks = np.array([[(p >> i) & 1 for i in range(modalities)] for p in range(1 << modalities)], dtype=bool)
        if self._ordering_game is not None:
            self._ordering_game.risks(masks)
        if self.reference is None:
            return
        for pattern in sorted(int(p) for p in self.bundle.dataset.get("pattern_counts_train", {})):
            observed = [i for i in range(modalities) if (pattern >> i) & 1]
            for m in range(modalities):
                if m in observed or self.reference.n_having([m]) < MIN_REFERENCE:
                    continue
                check("prepare")
                self.reference.conditional(m, self.reference.regressors_for(m, observed))

    @property
    def model_id(self) -> str:
        return self.bundle.model_id

    # ---------------------------------------------------------------- scoring
    def _tensors(self, vectors: dict[str, np.ndarray]) -> tuple[list[torch.Tensor], np.ndarray]:
        inputs, availability = [], []
        for name, dim in zip(self.config.modalities, self.config.input_dims):
            vector = vectors.get(name)
            availability.append(vector is not None)
            array = np.zeros(dim, np.float32) if vector is None else np.asarray(vector, np.float32).reshape(-1)
            if array.shape[0] != dim:
                raise PredictorError(f"embedding of {name!r} has {array.shape[0]} values, the model expects {dim}")
            inputs.append(torch.from_numpy(array).reshape(1, -1).to(self.device))
        return inputs, np.array(availability, dtype=bool)

    @torch.no_grad()
    def _logits_and_spread(
        self, inputs: list[torch.Tensor], availability: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, T) mean logits (what forward returns) and (B, T) standard deviation of the members' logits."""
        members = self.bundle.model.member_logits([x.to(self.device) for x in inputs], availability.to(self.device))
        return members_mean_and_spread(members.float().cpu().numpy())

    @torch.no_grad()
    def score(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> np.ndarray:
        """(B, T) displayed risks of a batch (each row corrected for its own pattern)."""
        risks = self.calibrated([x.to(self.device) for x in inputs], availability.to(self.device))
        return risks.cpu().numpy()

    # ---------------------------------------------------------------- interface
    def encode(self, record: PatientRecord, digest: str | None = None) -> dict[str, np.ndarray]:
        """Encoder embeddings of the record. With its `digest` (input_hash) they are kept for a few patients,
        so the second pass of a two-pass explanation (the notes after the rest) does not run the CNN and
        the note transformer again."""
        if digest is None:
            return self.encoder.encode(record)
        vectors = self._encoded.get(digest)
        if vectors is None:
            vectors = self.encoder.encode(record)
            self._encoded.put(digest, vectors)
        return vectors

    def encode_many(self, records: Sequence[PatientRecord]) -> list[dict[str, np.ndarray]]:
        """`encode` of several patients with every image in one CNN batch and every note in one transformer
        batch (faster; batched float math may differ from `encode` in the last bits, see docs/serving.md)."""
        return self.encoder.encode_many(records)

    def predict(self, record: PatientRecord, vectors: dict[str, np.ndarray] | None = None) -> Prediction:
        vectors = self.encode(record) if vectors is None else vectors
        return self.predict_many([record], [vectors])[0]

    def predict_many(
        self, records: Sequence[PatientRecord], vectors: Sequence[dict[str, np.ndarray]] | None = None
    ) -> list[Prediction]:
        """`predict` of several patients with one forward pass of the fused model (a batch of B rows) and one
        pass of the calibrated map; the batched forward itself may differ from B single forwards in the last
        float bits (see docs/serving.md)."""
        records = list(records)
        vectors = self.encode_many(records) if vectors is None else list(vectors)
        if len(vectors) != len(records):
            raise ValueError(f"{len(records)} records but {len(vectors)} vector sets")
        if not records:
            return []
        rows = [self._tensors(v) for v in vectors]
        inputs = [torch.cat([row[0][k] for row in rows]) for k in range(len(self.config.modalities))]
        masks = np.stack([row[1] for row in rows])
        logits, spread = self._logits_and_spread(inputs, torch.from_numpy(masks))
        patterns = np.asarray(encode_pattern(masks), dtype=np.int64)
        stages = self.calibrated.stages(logits, patterns)
        member_sd = spread / self.calibrated.temperature.cpu().numpy()  # (B, T), calibrated logit units
        low, high = self.calibrated.interval(stages, patterns, member_sd)
        residuals = np.stack(
            [
                self.bundle.rectifiers[t].residual_mean_[patterns]
                if self.bundle.rectifiers[t].residual_mean_ is not None
                else np.zeros(len(patterns))
                for t in self.config.tasks
            ],
            axis=1,
        )
        names = self.config.modalities
        predictions = []
        for b, record in enumerate(records):
            risks = [
                TaskRisk(
                    task,
                    float(stages.risk[b, i]),
                    float(low[b, i]),
                    float(high[b, i]),
                    float(stages.raw[b, i]),
                    float(stages.calibrated[b, i]),
                    float(stages.corrected_logit[b, i] - stages.calibrated_logit[b, i]),
                    float(residuals[b, i]),
                    float(member_sd[b, i]),
                )
                for i, task in enumerate(self.config.tasks)
            ]
            pattern_id = int(patterns[b])
            predictions.append(
                Prediction(
                    record.patient_id,
                    pattern_id,
                    pattern_label(pattern_id, names),
                    [n for n, a in zip(names, masks[b]) if a],
                    [n for n, a in zip(names, masks[b]) if not a],
                    risks,
                    self.model_id,
                    self.check_distribution(record, vectors[b]),
                )
            )
        return predictions

    def what_if(self, record: PatientRecord, vectors: dict[str, np.ndarray] | None = None) -> WhatIfResult:
        """Risk under every subset of the available modalities (one batch), exact modality Shapley values,
        and for each absent modality the estimated risk if it were obtained."""
        vectors = self.encode(record) if vectors is None else vectors
        inputs, availability = self._tensors(vectors)
        result = what_if(self.score, inputs, availability)
        names, tasks = self.config.modalities, self.config.tasks
        subsets = [
            SubsetRisks(
                [n for n, a in zip(names, mask) if a],
                int(encode_pattern(mask)),
                {t: float(r) for t, r in zip(tasks, risks)},
            )
            for mask, risks in zip(result.subset_masks, result.risks)
        ]
        phi = shapley_values(result)
        shapley = {names[m]: {t: float(v) for t, v in zip(tasks, phi[j])} for j, m in enumerate(result.available)}
        absent = []
        if self.reference is not None:
            for m in np.flatnonzero(~availability):
                value = value_of_absent(self.score, inputs, availability, self.reference, int(m))
                if value is None:
                    note = f"too few training patients (under {MIN_REFERENCE}) had this modality to estimate it"
                    absent.append(AbsentModality(names[m], note))
                    continue
                estimate = ObtainedEstimate(
                    {t: float(v) for t, v in zip(tasks, value.current)},
                    {t: float(v) for t, v in zip(tasks, value.mean)},
                    {t: float(v) for t, v in zip(tasks, value.p10)},
                    {t: float(v) for t, v in zip(tasks, value.p90)},
                    value.n_neighbours,
                    value.n_candidates,
                    dict(zip(tasks, value.verdicts)),
                    value.n_draws,
                )
                absent.append(AbsentModality(names[m], value.note, estimate))
        ordering = (
            None
            if self._ordering_game is None
            else split_ordering(
                self.score,
                inputs,
                availability,
                self._ordering_game.contents,
                list(names),
                list(tasks),
                self.ordering_sources,
                game=self._ordering_game,
                subsets=result,
            )
        )
        return WhatIfResult(
            record.patient_id, list(tasks), [names[m] for m in result.available], subsets, shapley, absent, ordering
        )

    def explain(
        self,
        record: PatientRecord,
        tasks: list[str] | None = None,
        settings: AttributionSettings | None = None,
        include_what_if: bool = True,
        modalities: list[str] | None = None,
        progress: Callable[[str], None] | None = None,
        digest: str | None = None,
        cancel: CancelToken | None = None,
    ) -> Explanation:
        """Prediction, what-if and Captum attributions within each available modality, as one serialisable
        `Explanation` (mmnar_core.explain.explanation; cache it by `.cache_key`). `tasks` limits the
        attributions to some outcomes (the cost of the note attributions grows with their number);
        `settings` is an AttributionSettings (step counts, output probability or logit); `progress(step)` is
        called before each step; `digest` is the record's input_hash when the caller already has it; `cancel`
        (mmnar_core.cancel.CancelToken) stops the work with Cancelled between steps and model passes."""
        if cancel is None:  # a scope set by the caller (the model server's worker) stays in force
            return self._explain(record, tasks, settings, include_what_if, modalities, progress, digest)
        with cancel_scope(cancel):
            return self._explain(record, tasks, settings, include_what_if, modalities, progress, digest)

    def check_distribution(
        self, record: PatientRecord, vectors: dict[str, np.ndarray] | None = None
    ) -> DistributionReport | None:
        """Is the patient unlike the training data, per modality and overall, and why (mmnar_core.ood)? None
        for a bundle fitted without the check."""
        if self.distribution_check is None:
            return None
        return self.distribution_check.check_record(record, self.encode(record) if vectors is None else vectors)

    def summary_facts(self, prediction: Prediction) -> SummaryFacts:
        """The bundle's figures the summary card needs for this patient's availability pattern."""
        return summary_facts(
            self.bundle.metrics, self.outcomes, self.features, prediction.pattern_name, self.feature_ranges
        )

    def _feature_ranges(self) -> dict[str, FeatureRange]:
        """Training reference range (2.5th-97.5th percentile) of each numeric structured feature, shown beside a
        patient's value; {} for a bundle without the distribution check (where the ranges are kept)."""
        if self.distribution_check is None:
            return {}
        ranges = {}
        for feature in self.features:
            found = self.distribution_check.reference_range(feature.name) if feature.categories is None else None
            if found is not None:
                low, high, unit = found
                ranges[feature.name] = FeatureRange(low, high, unit, "2.5th-97.5th percentile of training patients")
        return ranges

    def attribution_target(self, vectors: dict[str, np.ndarray]) -> AttributionTarget:
        """What the attributions of this patient explain: the calibrated model at its embeddings."""
        inputs, availability = self._tensors(vectors)
        return AttributionTarget(
            self.calibrated,
            self.encoder,
            self.modalities,
            inputs,
            availability,
            self.reference_images,
            self.tabular_references,
        )

    def _explain(
        self,
        record: PatientRecord,
        tasks: Sequence[str] | None,
        settings: AttributionSettings | None,
        include_what_if: bool,
        modalities: Sequence[str] | None,
        progress: Callable[[str], None] | None,
        digest: str | None,
    ) -> Explanation:
        """The steps of `explain`: "encode", "predict", "what_if", then each modality (`progress(step)` before
        each, every step boundary also a cancellation point)."""
        settings = settings or AttributionSettings()
        user_progress = progress or (lambda step: None)

        def step(name: str) -> None:
            check_cancelled()
            user_progress(name)

        timings: dict[str, float] = {}
        started = time.perf_counter()
        digest = digest or input_hash(record)  # the server has it already (image bytes are not hashed twice)
        step("encode")
        vectors = self.encode(record, digest)  # encoders run once (also across two passes); the rest reuse them
        timings["encode"] = time.perf_counter() - started
        clock = time.perf_counter()
        step("predict")
        prediction = self.predict(record, vectors)
        timings["predict"] = time.perf_counter() - clock
        what = None
        if include_what_if:
            clock = time.perf_counter()
            step("what_if")
            what = self.what_if(record, vectors)
            timings["what_if"] = time.perf_counter() - clock
        target = self.attribution_target(vectors)
        attributions = attribute_record(target, record, tasks, settings, modalities, step)
        _, task_names = task_indices(self.config.tasks, tasks)  # the tasks attributed, in the model's order
        timings.update({f"attribute_{k}": v for k, v in attributions.timings.items()})
        timings["total"] = time.perf_counter() - started
        return Explanation(
            FORMAT,
            digest,
            cache_key(
                digest, self.model_id, task_names if tasks else [ALL_TASKS], settings, include_what_if, modalities
            ),
            self.model_id,
            str(record.patient_id),
            task_names,
            settings.to_dict(),
            prediction,
            what,
            attributions.tabular,
            attributions.images,
            attributions.texts,
            {k: round(float(v), 4) for k, v in timings.items()},
            list(NOTES) + attributions.notes,
            facts=self.summary_facts(prediction),
        )


def _encoder_config(bundle: Bundle, encoder_id: str) -> dict[str, Any]:
    path = bundle.root / "encoders" / encoder_id / "encoder.json"
    if not path.is_file():
        raise PredictorError(
            f"bundle {bundle.root} lacks {path.relative_to(bundle.root)}; retrain it with this version"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _mark_open_categories(features: list[FeatureSpec], encoder: Any) -> list[FeatureSpec]:
    """Categorical features whose tabular encoder has an <unknown> level accept any value (input parsers
    then note an unseen value instead of refusing it); older encoders keep refusing."""
    open_names = {
        f.name
        for tabular in getattr(encoder, "tabular", {}).values()
        if tabular.unknown_level
        for f in tabular.features
    }
    return [replace(f, accepts_unknown=True) if f.name in open_names and f.categories else f for f in features]


def _build_patient_encoder(
    bundle: Bundle, device: torch.device, image_weights: str | Path | None, text_model: str | None
) -> PatientEncoder:
    from mmnar_core.encoders.config import ImageEncoderConfig, TextEncoderConfig
    from mmnar_core.encoders.patient import PatientEncoder
    from mmnar_core.encoders.tabular import TabularEncoder

    modalities = bundle.dataset_info.modalities
    image: ImageEmbedder | None = None
    text: TextEmbedder | None = None
    tabular = {}
    for modality, info in bundle.encoder_info.items():
        kind, wanted = info.kind, info.encoder_id
        if kind is EncoderKind.TABULAR:
            tabular[modality] = TabularEncoder.load(bundle.root / "encoders" / wanted / "tabular_state.json")
        elif kind is EncoderKind.IMAGE and image is None:
            from mmnar_core.encoders.errors import EncoderStateError
            from mmnar_core.encoders.image_backbone import ImageEmbedder, load_image_encoder

            path = Path(image_weights) if image_weights else SHIPPED_IMAGE_WEIGHTS
            try:
                network = load_image_encoder(path)  # project weights carry their own config
            except EncoderStateError:
                network = load_image_encoder(
                    path, ImageEncoderConfig.from_dict(_encoder_config(bundle, wanted)["config"])
                )
            image = ImageEmbedder(network, device)
            if image.id != wanted:
                raise PredictorError(
                    f"image weights {path} give encoder {image.id}, but the bundle was trained on {wanted}; "
                    "pass the image weights the bundle was trained with"
                )
        elif kind is EncoderKind.TEXT and text is None:
            from mmnar_core.encoders.text_encoder import TextEmbedder

            config = dict(_encoder_config(bundle, wanted).get("config") or {})
            if text_model:
                config["model_path"] = text_model
            text = TextEmbedder(TextEncoderConfig(**config), device)
            if text.id != wanted:
                raise PredictorError(
                    f"text model gives encoder {text.id}, but the bundle was trained on {wanted}; "
                    "pass the text model the bundle was trained with (--text-model)"
                )
    return PatientEncoder(modalities, image=image, text=text, tabular=tabular)


def reference_set(bundle: Bundle) -> ReferenceSet | None:
    """The training patients behind "if it were obtained" (None for a bundle without them). They stay on the
    CPU, whatever the model's device: they are indexed together with the patient's (CPU) availability, and
    score moves each batch to the model's device (on a GPU, keeping them there mixed devices and
    stopped every explanation)."""
    tensors = bundle.reference_set
    if not tensors:
        return None
    inputs = [tensors[f"input_{i}"].float().cpu() for i in range(len(bundle.config.modalities))]
    return ReferenceSet(inputs, tensors["availability"].bool().cpu())
