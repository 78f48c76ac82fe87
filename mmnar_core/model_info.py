"""`ModelInfo`: what a client needs to know about a served model (version, hash, tasks, modalities,
features with units and ranges, label definitions, model card, test metrics, calibration state), as one
typed record that the in-process service and the model server (GET /info, its `to_dict()`) return alike;
`from_dict` reads it back (the app's remote client)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from mmnar_core.bundle import DatasetInfo
from mmnar_core.schema import FeatureSpec, ModalitySpec, OutcomeSpec


@dataclass
class ModelInfo:
    """What every page shows and what the model card needs."""

    model_id: str
    content_hash: str
    created_by: str
    dataset_name: str
    synthetic: bool
    tasks: list[str]
    modalities: list[ModalitySpec]
    features: list[FeatureSpec]  # with `accepts_unknown` where the model's encoder takes unseen categories
    outcomes: list[OutcomeSpec]
    model_card: str
    metrics: dict[str, Any]
    calibration: dict[str, Any]
    pattern_counts_train: dict[str, int]
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return f"{self.model_id} ({self.created_by})"

    def feature_specs(self) -> list[FeatureSpec]:
        return list(self.features)

    def modality_specs(self) -> list[ModalitySpec]:
        return list(self.modalities)

    def outcome_specs(self) -> list[OutcomeSpec]:
        return list(self.outcomes)

    def modality_names(self) -> list[str]:
        return [m.name for m in self.modalities]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, keys in field order (GET /info)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("modalities", "features", "outcomes"):
                value = [spec.to_dict() for spec in value]
            elif isinstance(value, (dict, list)):
                value = _copy(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TypeError(f"ModelInfo has no field(s) {', '.join(unknown)}")
        values = dict(data)
        values["modalities"] = [ModalitySpec.from_dict(m) for m in data["modalities"]]
        values["features"] = [FeatureSpec.from_dict(f) for f in data["features"]]
        values["outcomes"] = [OutcomeSpec.from_dict(o) for o in data["outcomes"]]
        return cls(**values)


def _copy(value: Any) -> Any:
    """A deep copy of plain JSON data (what dataclasses.asdict gave the free-form fields)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def model_info(predictor: Any) -> ModelInfo:
    """The ModelInfo of a Predictor (from its bundle, as loaded and verified: nothing is read from disk again),
    or what a predictor without a bundle (the serving stand-in) says of itself (`describe_model()`)."""
    from mmnar_core.bundle import calibration_state

    describe = getattr(predictor, "describe_model", None)
    if callable(describe):  # a predictor without a bundle (the serving stand-in) describes itself
        info: ModelInfo = describe()
        return info

    bundle = predictor.bundle
    calibration = calibration_state(bundle.temperature, bundle.rectifiers)
    dataset = bundle.dataset_info
    return ModelInfo(
        model_id=bundle.model_id,
        content_hash=bundle.content_hash,
        created_by=bundle.created_by,
        dataset_name=dataset.name,
        synthetic=dataset.synthetic,
        tasks=list(predictor.config.tasks),
        modalities=dataset.modalities,
        features=_features(dataset, predictor),
        outcomes=dataset.outcomes,
        model_card=bundle.model_card,
        metrics=bundle.metrics,
        calibration=calibration,
        pattern_counts_train=dataset.pattern_counts_train,
        device=str(predictor.device),
    )


def _features(dataset: DatasetInfo, predictor: Any) -> list[FeatureSpec]:
    """The bundle's features, with `accepts_unknown` where the predictor's encoder has an <unknown> level."""
    open_names = {f.name for f in getattr(predictor, "features", []) if f.accepts_unknown}
    return [replace(f, accepts_unknown=True) if f.name in open_names else f for f in dataset.features]
