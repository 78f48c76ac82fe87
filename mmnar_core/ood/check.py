"""`DistributionCheck`: is a patient unlike the patients the model was trained on, per modality and overall,
and why, in words a clinician can read.

What is checked (docs/ood.md):
- structured: every value against the training range (min-max; a category or a feature no training
  patient had), and the multivariate distance of the standardised encoded features (Mahalanobis with
  Ledoit-Wolf shrinkage);
- images: the mean cosine distance of the encoder embedding to its k nearest training embeddings, and a
  distance on simple statistics of the decoded pixels (image_stats.py); either one flags;
- notes: the embedding's k-nearest-neighbour cosine distance.

Fitted on the training split only. Every threshold is the `level` quantile of scores of training patients
the detector did not see (cross-fitting for the Mahalanobis distances; training rows outside the stored
reference embeddings, or leave-one-out when there are few), so about 1 - level of patients like the
training ones are flagged per detector. Saved as two plain files (JSON + safetensors, no pickle) that a
bundle carries; `from_bundle` loads them from the bundle's verified bytes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np

from mmnar_core.ood import words
from mmnar_core.ood.detectors import CosineNeighbours, ScoreScale, ShrunkMahalanobis, out_of_fold_scores
from mmnar_core.ood.image_stats import NAMES as STAT_NAMES
from mmnar_core.ood.image_stats import image_statistics
from mmnar_core.ood.ranges import FeatureRange
from mmnar_core.ood.report import DetectorResult, DistributionReport, ModalityReport
from mmnar_core.ood.state import CheckSettings, ModalityFit
from mmnar_core.schema import ModalityKind, PatientRecord

FORMAT = "mmnar-distribution-check/1"
JSON_FILE = "distribution_check.json"
TENSOR_FILE = "distribution_check.safetensors"
FILES = (JSON_FILE, TENSOR_FILE)


class DistributionCheckError(ValueError):
    """A distribution check that cannot be fitted or loaded; the message names the file and the problem."""


class DistributionCheck:
    """fit(dataset, embeddings) on the training split; check(structured, vectors, images) per patient."""

    def __init__(self, settings: CheckSettings | None = None) -> None:
        self.settings = settings or CheckSettings()
        self.fits_: dict[str, ModalityFit] = {}
        self.ranges_: dict[str, FeatureRange] = {}
        self.distances_: dict[tuple[str, str], ShrunkMahalanobis] = {}  # (modality, "distance" | "image_statistics")
        self.neighbours_: dict[str, CosineNeighbours] = {}  # modality -> its training embeddings
        self.trained_on_: dict[str, Any] = {}

    # ------------------------------------------------------------------ fitting
    def fit(self, dataset, embeddings) -> DistributionCheck:
        """`dataset`: a loaded Dataset; `embeddings`: its cached embeddings (mmnar_core.encoders.cache.
        EmbeddingSet: vectors, present, encoders). Only training-split rows are read."""
        settings = self.settings
        train = dataset.split_indices("train")
        if len(train) == 0:
            raise DistributionCheckError(f"{dataset.root}: no training patients to fit the distribution check on")
        rng = np.random.default_rng(settings.seed)
        manifest = dataset.manifest
        self.trained_on_ = {"dataset": manifest.name, "content_hash": manifest.content_hash, "n_train": len(train)}
        available = dataset.availability()
        for column, modality in enumerate(manifest.modalities):
            rows = train[available[train, column]]
            info = dict(embeddings.encoders.get(modality.name) or {})
            fit = ModalityFit(
                modality.name, modality.kind.value, info.get("encoder_id"), int(info.get("dim", 0)), len(rows)
            )
            self.fits_[modality.name] = fit
            if modality.kind is ModalityKind.TABULAR:
                owned = [f for f in manifest.features if f.modality == modality.name]
                table = dataset.structured[[f.name for f in owned]].iloc[train]
                for feature in owned:
                    self.ranges_[feature.name] = FeatureRange.fit(feature, table[feature.name])
                fit.range_false_alarms = leave_one_out_range_flags(table)
            if len(rows) < settings.min_rows:
                fit.not_checked = f"only {len(rows)} training patients had it (at least {settings.min_rows} are needed)"
                continue
            vectors = embeddings.vectors.get(modality.name) if info else None
            if vectors is not None:
                vectors = np.asarray(vectors)[rows]
                if modality.kind is ModalityKind.TABULAR:
                    self._fit_distance(fit, vectors, _output_names(embeddings, modality.name, fit.dim))
                else:
                    self._fit_embedding(fit, vectors, rng)
            if modality.kind is ModalityKind.IMAGE:
                self._fit_image_statistics(fit, dataset, rows, rng)
            if not fit.scales:
                fit.not_checked = "no embeddings of it were given to fit on"
        return self

    def _fit_distance(self, fit: ModalityFit, vectors: np.ndarray, columns: list[str]) -> None:
        s = self.settings
        fit.scales["distance"] = ScoreScale.fit(out_of_fold_scores(vectors, s.folds, s.seed), s.level)
        self.distances_[(fit.name, "distance")] = ShrunkMahalanobis().fit(vectors)
        fit.columns = columns

    def _fit_embedding(self, fit: ModalityFit, vectors: np.ndarray, rng: np.random.Generator) -> None:
        s = self.settings
        order = rng.permutation(len(vectors))
        minimum_held_out = max(100, s.min_rows)
        if len(vectors) >= s.max_reference + minimum_held_out:
            reference, held = order[: s.max_reference], order[s.max_reference :][: s.max_calibration]
            detector = CosineNeighbours(s.k).fit(vectors[reference])
            scores, method = detector.score(vectors[held]), "held-out training rows"
        else:
            detector = CosineNeighbours(s.k).fit(vectors)
            scores, method = detector.score(vectors, leave_one_out=True), "leave-one-out"
        fit.scales["embedding"] = ScoreScale.fit(scores, s.level)
        stored = detector.reference_
        assert stored is not None
        fit.reference = {"k": s.k, "n_reference": len(stored), "calibration": method}
        self.neighbours_[fit.name] = detector

    def _fit_image_statistics(self, fit: ModalityFit, dataset, rows: np.ndarray, rng: np.random.Generator) -> None:
        from mmnar_core.encoders.image_io import load_image

        s = self.settings
        chosen = np.sort(rng.choice(rows, min(len(rows), s.max_images), replace=False))
        paths = _image_paths(dataset, fit.name)
        table = []
        for row in chosen:
            path = paths.get(str(dataset.patients["patient_id"].iloc[row]))
            if path is not None:
                try:
                    table.append(image_statistics(load_image(path)))
                except ValueError:  # an unreadable training image is left out, as training leaves it out
                    continue
        if len(table) < s.min_rows:
            return
        values = np.array(table)
        center = np.median(values, axis=0)
        q25, q75 = np.quantile(values, [0.25, 0.75], axis=0)
        scale = np.maximum(np.maximum((q75 - q25) / 1.349, values.std(axis=0) / 4), 1e-3)
        z = (values - center) / scale
        fit.stats = {
            "center": center.tolist(),
            "scale": scale.tolist(),
            "low": np.quantile(values, 0.01, axis=0).tolist(),
            "high": np.quantile(values, 0.99, axis=0).tolist(),
        }
        fit.scales["image_statistics"] = ScoreScale.fit(out_of_fold_scores(z, s.folds, s.seed), s.level)
        self.distances_[(fit.name, "image_statistics")] = ShrunkMahalanobis().fit(z)

    # ------------------------------------------------------------------ checking
    def check(
        self,
        structured: Mapping[str, Any] | None,
        vectors: Mapping[str, np.ndarray],
        images: Mapping[str, Any] | None = None,
    ) -> DistributionReport:
        """The report of one patient: `structured` the raw {feature: value} (None = not measured), `vectors`
        the encoder embeddings per available modality (Predictor.encode), `images` the image per image
        modality (a decoded (H, W) array in [0, 1], or a path / bytes, decoded here)."""
        structured, images = dict(structured or {}), dict(images or {})
        reports = []
        for name, fit in self.fits_.items():
            if fit.kind == ModalityKind.TABULAR.value:
                values = {f: v for f, v in structured.items() if f in self.ranges_ and _given(v)}
                owned = {f: v for f, v in values.items() if self._owner(f) == name}
                if not owned and name not in vectors:
                    continue
                reports.append(self._check_tabular(fit, owned, vectors.get(name)))
            elif name in vectors or (fit.kind == ModalityKind.IMAGE.value and images.get(name) is not None):
                reports.append(self._check_embedded(fit, vectors.get(name), images.get(name)))
        flagged = [r for r in reports if r.flagged]
        if flagged:
            summary = (
                f"Unlike the training data: {words.join([self._the(r.modality) for r in flagged])}. "
                "The model has not seen patients like this; treat the risk with caution."
            )
        elif reports:
            unchecked = [r for r in reports if not r.checked]
            summary = "Like the training data in every input checked." + (
                f" Not checked: {words.join([self._the(r.modality) for r in unchecked])}." if unchecked else ""
            )
        else:
            summary = "Nothing to check: the patient has no inputs."
        return DistributionReport(
            bool(flagged), summary, reports, self.settings.level, str(self.trained_on_.get("dataset", ""))
        )

    def check_record(self, record: PatientRecord, vectors: Mapping[str, np.ndarray]) -> DistributionReport:
        """`check` of a PatientRecord and its embeddings."""
        return self.check(record.structured, vectors, record.images)

    def _the(self, modality: str) -> str:
        return "the " + words.nouns(modality, self.fits_[modality].kind)[0]

    def _owner(self, feature: str) -> str | None:
        return next(
            (name for name, fit in self.fits_.items() if fit.kind == "tabular" and self._owns(name, feature)), None
        )

    def _owns(self, modality: str, feature: str) -> bool:
        fit = self.fits_[modality]
        if fit.columns:
            return any(c == feature or c.startswith((f"{feature}=", f"{feature}:")) for c in fit.columns)
        return sum(f.kind == "tabular" for f in self.fits_.values()) == 1  # the only tabular modality owns all

    def _check_tabular(self, fit: ModalityFit, values: Mapping[str, Any], vector) -> ModalityReport:
        findings = [f for f in (self.ranges_[name].finding(value) for name, value in values.items()) if f is not None]
        detectors = [DetectorResult("range", float(len(findings)), 0.0, None, bool(findings))]
        reasons = [f.message for f in findings]
        main = None
        if vector is not None and "distance" in fit.scales:
            detector = self.distances_[(fit.name, "distance")]
            row = _row(vector, fit)
            main = _result("distance", float(detector.score(row)[0]), fit.scales["distance"])
            detectors.append(main)
            if main.flagged:
                share = detector.contributions(row)[0]
                labels = {name: found.label for name, found in self.ranges_.items()}
                features = words.column_features(fit.columns, share, labels)
                reasons.append(words.distance_reason(words.nouns(fit.name, fit.kind)[0], main.percentile, features))
        flagged = any(d.flagged for d in detectors)
        checked = not fit.not_checked
        if not checked:
            reasons.append(f"The combination of values is not checked: {fit.not_checked}.")
        return ModalityReport(
            fit.name,
            fit.kind,
            checked,
            flagged,
            None if main is None else main.score,
            None if main is None else main.threshold,
            None if main is None else main.percentile,
            reasons,
            detectors,
            findings,
        )

    def _check_embedded(self, fit: ModalityFit, vector, image) -> ModalityReport:
        single, plural = words.nouns(fit.name, fit.kind)
        if fit.not_checked:
            reason = f"The {single} is not checked: {fit.not_checked}."
            return ModalityReport(fit.name, fit.kind, False, False, None, None, None, [reason])
        detectors, reasons = [], []
        if vector is not None and "embedding" in fit.scales:
            score = float(self.neighbours_[fit.name].score(_row(vector, fit))[0])
            result = _result("embedding", score, fit.scales["embedding"])
            detectors.append(result)
            if result.flagged:
                reasons.append(words.embedding_reason(single, plural, result.percentile))
        if image is not None and "image_statistics" in fit.scales:
            from mmnar_core.encoders.image_io import load_image

            pixels = image if isinstance(image, np.ndarray) else load_image(image)
            stats = image_statistics(pixels)
            center, scale = np.asarray(fit.stats["center"]), np.asarray(fit.stats["scale"])
            z = ((stats - center) / scale)[None, :]
            result = _result(
                "image_statistics",
                float(self.distances_[(fit.name, "image_statistics")].score(z)[0]),
                fit.scales["image_statistics"],
            )
            detectors.append(result)
            if result.flagged:
                details = words.statistic_details(stats, z[0], fit.stats)
                reasons.append(words.picture_reason(single, plural, result.percentile, details))
        main = detectors[0] if detectors else None
        return ModalityReport(
            fit.name,
            fit.kind,
            bool(detectors),
            any(d.flagged for d in detectors),
            None if main is None else main.score,
            None if main is None else main.threshold,
            None if main is None else main.percentile,
            reasons if detectors else [f"The {single} is not checked: no embedding of it was given."],
            detectors,
        )

    # ------------------------------------------------------------------ reference ranges
    def feature_range(self, feature: str) -> FeatureRange:
        if feature not in self.ranges_:
            raise KeyError(f"{feature!r} is not a structured feature of the training data ({', '.join(self.ranges_)})")
        return self.ranges_[feature]

    def reference_range(self, feature: str) -> tuple[float, float, str | None] | None:
        """(low, high, unit): the central 95 % of training values (2.5th-97.5th percentile) of a numeric
        feature; None for a categorical feature or one no training patient had recorded."""
        found = self.feature_range(feature)
        reference = found.reference
        return None if reference is None else (reference[0], reference[1], found.unit)

    # ------------------------------------------------------------------ files
    def to_files(self) -> dict[str, bytes]:
        """{distribution_check.json: ..., distribution_check.safetensors: ...}: the bundle files."""
        from safetensors.numpy import save

        tensors: dict[str, np.ndarray] = {}
        for (modality, name), distance in self.distances_.items():
            tensors.update(distance.tensors(f"{modality}.{name}"))
        for modality, neighbours in self.neighbours_.items():
            tensors.update(neighbours.tensors(f"{modality}.embedding"))
        document = {
            "format": FORMAT,
            "trained_on": self.trained_on_,
            "settings": asdict(self.settings),
            "modalities": [fit.to_dict() for fit in self.fits_.values()],
            "features": [r.to_dict() for r in self.ranges_.values()],
        }
        return {
            JSON_FILE: (json.dumps(document, indent=1) + "\n").encode("utf-8"),
            TENSOR_FILE: save({k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())}),
        }

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], where: str = "") -> DistributionCheck:
        """Load from the two files' bytes; anything malformed raises DistributionCheckError naming the file."""
        from safetensors.numpy import load

        prefix = f"{where}/" if where else ""
        for name in FILES:
            if name not in files:
                raise DistributionCheckError(
                    f"{prefix}{name}: missing (the distribution check needs {' and '.join(FILES)})"
                )
        try:
            document = json.loads(files[JSON_FILE].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DistributionCheckError(f"{prefix}{JSON_FILE}: not valid JSON ({error})") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            found = document.get("format") if isinstance(document, dict) else type(document).__name__
            raise DistributionCheckError(f"{prefix}{JSON_FILE}: format {found!r}, expected {FORMAT!r}")
        try:
            tensors = load(bytes(files[TENSOR_FILE]))
        except Exception as error:  # noqa: BLE001 - safetensors raises several types on damaged data
            raise DistributionCheckError(f"{prefix}{TENSOR_FILE}: not a valid safetensors file ({error})") from None
        check = cls()
        try:
            check.settings = CheckSettings.from_dict(document["settings"])
            check.trained_on_ = dict(document.get("trained_on") or {})
            check.ranges_ = {r.name: r for r in (FeatureRange.from_dict(d) for d in document["features"])}
            for data in document["modalities"]:
                fit = ModalityFit.from_dict(data)
                check.fits_[fit.name] = fit
                for detector in fit.scales:
                    key = f"{fit.name}.{detector}"
                    if detector == "embedding":
                        check.neighbours_[fit.name] = CosineNeighbours.from_tensors(
                            tensors, key, fit.dim, int(fit.reference.get("k", check.settings.k))
                        )
                    elif detector in ("distance", "image_statistics"):
                        dim = fit.dim if detector == "distance" else len(STAT_NAMES)
                        check.distances_[(fit.name, detector)] = ShrunkMahalanobis.from_tensors(tensors, key, dim)
                    else:
                        raise ValueError(f"{fit.name}: unknown detector {detector!r}")
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise DistributionCheckError(
                f"{prefix}{JSON_FILE}: not a valid distribution check ({_why(error)})"
            ) from None
        return check

    @classmethod
    def from_bundle(cls, bundle) -> DistributionCheck | None:
        """The bundle's distribution check from its verified bytes (bundle.contents), or None when the bundle
        has none (trained before it existed: add it with `mmnar distribution-check`). Refused when it was
        fitted on other encoders than the bundle's."""
        contents = bundle.contents
        if JSON_FILE not in contents and TENSOR_FILE not in contents:
            return None
        check = cls.from_files({name: bundle.read_bytes(name) for name in FILES if name in contents}, str(bundle.root))
        for name, fit in check.fits_.items():
            wanted = (bundle.encoders.get(name) or {}).get("encoder_id")
            if fit.encoder_id and fit.encoder_id != wanted:
                raise DistributionCheckError(
                    f"{bundle.root}/{JSON_FILE}: fitted on embeddings of {name} by {fit.encoder_id}, but the bundle "
                    f"uses {wanted}; refit it with `mmnar distribution-check`"
                )
        return check


def fit_distribution_check(dataset, embeddings, settings: CheckSettings | None = None) -> dict[str, bytes]:
    """The bundle files of a DistributionCheck fitted on `dataset`'s training split and its embeddings."""
    return DistributionCheck(settings).fit(dataset, embeddings).to_files()


# ---------------------------------------------------------------------- helpers
def leave_one_out_range_flags(table) -> float:
    """Share of training rows the range check would flag if the ranges came from the other rows: those
    holding a feature's unique minimum or maximum, or a category no other row has. About 2F / (n + 1)
    for F numeric features and n rows: small on thousands of patients, not on a hundred."""
    import pandas as pd

    if len(table) == 0:
        return 0.0
    flagged = np.zeros(len(table), dtype=bool)
    for name in table.columns:
        column = table[name]
        numbers = pd.to_numeric(column, errors="coerce")
        if numbers.notna().sum() == column.notna().sum() and numbers.notna().any():
            values = numbers.to_numpy(dtype=np.float64)
            for extreme in (np.nanmin(values), np.nanmax(values)):
                if np.sum(values == extreme) == 1:
                    flagged |= values == extreme
        else:
            text = column.astype("object").where(column.notna(), None)
            counts = text.value_counts()
            flagged |= text.map(counts).fillna(0).to_numpy() == 1
    return float(flagged.mean())


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _row(vector, fit: ModalityFit) -> np.ndarray:
    row = np.asarray(vector, dtype=np.float64).reshape(1, -1)
    if row.shape[1] != fit.dim:
        raise DistributionCheckError(
            f"the {fit.name} embedding has {row.shape[1]} values; the check was fitted on {fit.dim}"
        )
    return row


def _result(detector: str, score: float, scale: ScoreScale) -> DetectorResult:
    return DetectorResult(detector, score, scale.threshold, scale.percentile(score), score > scale.threshold)


def _output_names(embeddings, modality: str, dim: int) -> list[str]:
    """The tabular encoder's column names (from its fitted state), so reasons can name features."""
    try:
        state = json.loads(embeddings.tabular_state_path(modality).read_text(encoding="utf-8"))
        names = [str(n) for n in state["output_names"]]
    except (AttributeError, OSError, KeyError, ValueError, TypeError):
        return []
    return names if len(names) == dim else []


def _image_paths(dataset, modality: str) -> dict[str, Any]:
    table = dataset.images[dataset.images["modality"] == modality]
    return {str(pid): dataset.root / path for pid, path in zip(table["patient_id"], table["path"])}


def _why(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__
