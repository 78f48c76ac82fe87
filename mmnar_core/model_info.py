"""`ModelInfo`: what a client needs to know about a served model (version, hash, tasks, modalities,
features with units and ranges, label definitions, model card, test metrics, calibration state), as plain
data that the in-process service and the model server (GET /info) return alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mmnar_core.schema import FeatureSpec, ModalitySpec, OutcomeSpec


@dataclass
class ModelInfo:
    """What every page shows and what the model card needs, as plain data."""

    model_id: str
    content_hash: str
    created_by: str
    dataset_name: str
    synthetic: bool
    tasks: list[str]
    modalities: list[dict]
    features: list[dict]
    outcomes: list[dict]
    model_card: str
    metrics: dict
    calibration: dict
    pattern_counts_train: dict
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    @property
    def version(self) -> str:
        return f"{self.model_id} ({self.created_by})"

    def feature_specs(self) -> list[FeatureSpec]:
        return [FeatureSpec.from_dict(f) for f in self.features]

    def modality_specs(self) -> list[ModalitySpec]:
        return [ModalitySpec.from_dict(m) for m in self.modalities]

    def outcome_specs(self) -> list[OutcomeSpec]:
        return [OutcomeSpec.from_dict(o) for o in self.outcomes]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelInfo:
        return cls(**data)


def model_info(predictor) -> ModelInfo:
    from mmnar_core.bundle import calibration_state

    describe = getattr(predictor, "describe_model", None)
    if callable(describe):  # a predictor without a bundle (the serving stand-in) describes itself
        return describe()

    bundle = predictor.bundle  # as loaded and verified: nothing is read from disk again
    calibration = calibration_state(bundle.temperature, bundle.rectifiers)
    dataset = bundle.dataset
    source = str(dataset.get("provenance", {}).get("source", ""))
    return ModelInfo(
        model_id=bundle.model_id,
        content_hash=bundle.content_hash,
        created_by=bundle.created_by,
        dataset_name=dataset.get("name", ""),
        synthetic="synthetic" in source.lower(),
        tasks=list(predictor.config.tasks),
        modalities=dataset["modalities"],
        features=_features(dataset, predictor),
        outcomes=dataset["outcomes"],
        model_card=bundle.model_card,
        metrics=bundle.metrics,
        calibration=calibration,
        pattern_counts_train=dataset.get("pattern_counts_train", {}),
        device=str(predictor.device),
    )


def _features(dataset: dict, predictor) -> list[dict]:
    """The bundle's feature dicts, with `accepts_unknown` where the predictor's encoder has an <unknown> level."""
    open_names = {f.name for f in getattr(predictor, "features", []) if f.accepts_unknown}
    return [{**f, "accepts_unknown": True} if f["name"] in open_names else f for f in dataset["features"]]
