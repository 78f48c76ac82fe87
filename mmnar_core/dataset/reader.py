"""Reads and checks a dataset directory. Training and evaluation read datasets only through here.

Every check failure is a DatasetFormatError that names the file and the field, so a user with a broken
directory learns exactly what to fix.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mmnar_core.dataset.manifest import (
    CHECKSUMS_FILE,
    IMAGES_TABLE,
    MANIFEST_FILE,
    PATIENTS_TABLE,
    SPLITS,
    STRUCTURED_TABLE,
    TEXT_TABLE,
    DatasetFormatError,
    Manifest,
    avail_column,
    label_column,
    reference_column,
    true_prob_column,
)
from mmnar_core.patterns import encode_pattern
from mmnar_core.schema import FeatureKind, ModalityKind, PatientRecord

VERIFY_MODES = ("none", "tables", "all")


@dataclass
class Dataset:
    """A loaded, checked dataset: the manifest plus its four tables, all indexed by row order."""

    root: Path
    manifest: Manifest
    patients: pd.DataFrame
    structured: pd.DataFrame
    text: pd.DataFrame
    images: pd.DataFrame

    def __len__(self) -> int:
        return len(self.patients)

    def availability(self) -> np.ndarray:
        """(N, M) boolean availability in manifest modality order."""
        return self.patients[[avail_column(m) for m in self.manifest.modality_names]].to_numpy(dtype=bool)

    def patterns(self) -> np.ndarray:
        return self.patients["pattern"].to_numpy(dtype=np.int64)

    def labels(self, outcome: str) -> pd.Series:
        return self.patients[label_column(outcome)]

    def split_indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        return np.flatnonzero(self.patients["split"].to_numpy() == split)

    def image_path(self, patient_id: str, modality: str) -> Path | None:
        rows = self.images[(self.images["patient_id"] == patient_id) & (self.images["modality"] == modality)]
        return self.root / rows["path"].iloc[0] if len(rows) else None

    def record(self, patient_id: str) -> PatientRecord:
        """The canonical record of one patient (what the app and predictor consume)."""
        row = self.patients.index[self.patients["patient_id"] == patient_id]
        if len(row) == 0:
            raise KeyError(f"patient {patient_id!r} is not in dataset {self.manifest.name!r}")
        i = row[0]
        structured = {f.name: _plain(self.structured.at[i, f.name]) for f in self.manifest.features}
        texts = {
            m.name: self.text.at[i, m.name]
            for m in self.manifest.modalities_of_kind(ModalityKind.TEXT)
            if isinstance(self.text.at[i, m.name], str)
        }
        images: dict[str, str | Path | bytes] = {}
        for m in self.manifest.modalities_of_kind(ModalityKind.IMAGE):
            path = self.image_path(patient_id, m.name)
            if path is not None:
                images[m.name] = path
        labels = {o.name: _plain(self.patients.at[i, label_column(o.name)]) for o in self.manifest.outcomes}
        return PatientRecord(patient_id, structured, images, texts, labels)


def _plain(value):
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def load_dataset(root: str | Path, verify: str = "tables") -> Dataset:
    """Load and check a dataset directory.

    verify: "tables" checks the checksums of tables and small files (default, fast), "all" also of
    every image, "none" skips checksums (structure is always checked).
    """
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    root = Path(root)
    if not root.is_dir():
        raise DatasetFormatError(root, "(directory)", "does not exist or is not a directory")
    manifest = _read_manifest(root)
    _verify_checksums(root, manifest, verify)
    patients = _read_table(root, PATIENTS_TABLE)
    structured = _read_table(root, STRUCTURED_TABLE)
    text = _read_table(root, TEXT_TABLE)
    images = _read_table(root, IMAGES_TABLE)
    _check_patients(root, manifest, patients)
    ids = patients["patient_id"]
    structured = _aligned(root / STRUCTURED_TABLE, structured, ids)
    text = _aligned(root / TEXT_TABLE, text, ids)
    _check_structured(root, manifest, patients, structured)
    _check_text(root, manifest, patients, text)
    _check_images(root, manifest, patients, images)
    return Dataset(root, manifest, patients, structured, text, images)


def _read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise DatasetFormatError(path, "(file)", "is missing; every dataset directory needs a manifest.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise DatasetFormatError(path, "(encoding)", f"is not UTF-8 text ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise DatasetFormatError(
            path, f"line {error.lineno} column {error.colno}", f"invalid JSON: {error.msg}"
        ) from None
    return Manifest.from_dict(data, path)


def _verify_checksums(root: Path, manifest: Manifest, verify: str) -> None:
    path = root / CHECKSUMS_FILE
    if not path.is_file():
        raise DatasetFormatError(path, "(file)", "is missing")
    content = path.read_bytes()
    if hashlib.sha256(content).hexdigest() != manifest.content_hash:
        raise DatasetFormatError(
            root / MANIFEST_FILE,
            "content_hash",
            f"does not match the hash of {CHECKSUMS_FILE}; the dataset was changed",
        )
    if verify == "none":
        return
    for number, line in enumerate(content.decode("utf-8").splitlines(), start=1):
        digest, _, relative = line.partition("  ")
        if not relative or len(digest) != 64:
            raise DatasetFormatError(path, f"line {number}", "expected '<sha256>  <relative path>'")
        if verify == "tables" and not relative.endswith((".parquet", ".json", ".csv", ".jsonl")):
            continue
        file = root / relative
        if not file.is_file():
            raise DatasetFormatError(file, "(file)", f"is listed in {CHECKSUMS_FILE} but missing")
        if hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            raise DatasetFormatError(
                file, "(content)", f"does not match its checksum in {CHECKSUMS_FILE}; it was changed"
            )


def _read_table(root: Path, name: str) -> pd.DataFrame:
    path = root / name
    if not path.is_file():
        raise DatasetFormatError(path, "(file)", "is missing")
    try:
        return pq.read_table(path).to_pandas()
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise DatasetFormatError(path, "(content)", f"is not a readable Parquet file: {error}") from None


def _require_columns(path: Path, frame: pd.DataFrame, columns: list[str]) -> None:
    for column in columns:
        if column not in frame.columns:
            raise DatasetFormatError(path, column, "column is missing")


def _check_patients(root: Path, manifest: Manifest, patients: pd.DataFrame) -> None:
    path = root / PATIENTS_TABLE
    avail = [avail_column(m) for m in manifest.modality_names]
    labels = [label_column(o.name) for o in manifest.outcomes]
    _require_columns(path, patients, ["patient_id", "group_id", "split", "pattern", *avail, *labels])
    ids = patients["patient_id"]
    if ids.isna().any():
        raise DatasetFormatError(path, "patient_id", "has empty values")
    if ids.duplicated().any():
        raise DatasetFormatError(path, "patient_id", f"is not unique (e.g. {ids[ids.duplicated()].iloc[0]!r})")
    bad_split = ~patients["split"].isin(SPLITS)
    if bad_split.any():
        raise DatasetFormatError(
            path,
            "split",
            f"value {patients['split'][bad_split].iloc[0]!r} is not accepted (accepted: {', '.join(SPLITS)})",
        )
    groups_per_split = patients.groupby("group_id")["split"].nunique()
    if (groups_per_split > 1).any():
        raise DatasetFormatError(
            path,
            "group_id",
            f"group {groups_per_split[groups_per_split > 1].index[0]!r} spans several splits; "
            "splits must be disjoint by patient",
        )
    for column in avail:
        if patients[column].dtype != bool:
            raise DatasetFormatError(path, column, f"must be boolean, got {patients[column].dtype}")
    expected = encode_pattern(patients[avail].to_numpy(dtype=bool)) if len(patients) else np.array([], dtype=np.int64)
    if not np.array_equal(patients["pattern"].to_numpy(dtype=np.int64), expected):
        raise DatasetFormatError(path, "pattern", "does not equal encode_pattern(avail_*) on every row")
    for column in labels:
        values = patients[column].dropna()
        if not values.isin([0, 1]).all():
            raise DatasetFormatError(path, column, "labels must be 0, 1 or null")
    for outcome in manifest.outcomes if manifest.has_true_probabilities else []:
        column = true_prob_column(outcome.name)
        _require_columns(path, patients, [column])
        values = patients[column].to_numpy(dtype=float)
        if not ((values >= 0) & (values <= 1)).all():
            raise DatasetFormatError(path, column, "true probabilities must lie in [0, 1]")
    _require_columns(path, patients, [reference_column(s.name) for s in manifest.reference_scores])
    if len(patients) != manifest.n_patients:
        raise DatasetFormatError(
            root / MANIFEST_FILE, "n_patients", f"says {manifest.n_patients}, table has {len(patients)}"
        )


def _aligned(path: Path, frame: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    _require_columns(path, frame, ["patient_id"])
    if len(frame) != len(ids) or not frame["patient_id"].reset_index(drop=True).equals(ids.reset_index(drop=True)):
        raise DatasetFormatError(
            path, "patient_id", f"rows must list the same patients in the same order as {PATIENTS_TABLE}"
        )
    return frame.reset_index(drop=True)


def _check_structured(root: Path, manifest: Manifest, patients: pd.DataFrame, structured: pd.DataFrame) -> None:
    path = root / STRUCTURED_TABLE
    _require_columns(path, structured, [f.name for f in manifest.features])
    for feature in manifest.features:
        column = structured[feature.name]
        present = column.dropna()
        if feature.kind is FeatureKind.NUMERIC and not pd.api.types.is_numeric_dtype(column):
            raise DatasetFormatError(path, feature.name, f"numeric feature has non-numeric dtype {column.dtype}")
        if feature.kind is FeatureKind.BINARY and not present.isin([0, 1, True, False]).all():
            raise DatasetFormatError(path, feature.name, "binary feature must hold 0/1 or null")
        if feature.kind is FeatureKind.CATEGORICAL:
            categories = feature.categories
            assert categories is not None, "FeatureSpec checks that a categorical feature has categories"
            unknown = ~present.astype(str).isin(categories)
            if unknown.any():
                raise DatasetFormatError(
                    path,
                    feature.name,
                    f"value {present[unknown].iloc[0]!r} is not one of its categories {list(categories)}",
                )
    for modality in manifest.modalities_of_kind(ModalityKind.TABULAR):
        owned = [f.name for f in manifest.features_of(modality.name)]
        measured = structured[owned].notna().any(axis=1).to_numpy() if owned else np.zeros(len(patients), bool)
        flagged = patients[avail_column(modality.name)].to_numpy(dtype=bool)
        _check_agreement(
            path, modality.name, flagged, measured, patients, "has no measured feature", "has measured features"
        )


def _check_text(root: Path, manifest: Manifest, patients: pd.DataFrame, text: pd.DataFrame) -> None:
    path = root / TEXT_TABLE
    names = [m.name for m in manifest.modalities_of_kind(ModalityKind.TEXT)]
    _require_columns(path, text, names)
    for name in names:
        column = text[name]
        present = column.notna().to_numpy()
        if present.any() and not column[present].map(lambda v: isinstance(v, str) and bool(v.strip())).all():
            raise DatasetFormatError(path, name, "text must be a non-blank string or null")
        flagged = patients[avail_column(name)].to_numpy(dtype=bool)
        _check_agreement(path, name, flagged, present, patients, "has no text", "has text")


def _check_images(root: Path, manifest: Manifest, patients: pd.DataFrame, images: pd.DataFrame) -> None:
    path = root / IMAGES_TABLE
    _require_columns(path, images, ["patient_id", "modality", "path"])
    names = {m.name for m in manifest.modalities_of_kind(ModalityKind.IMAGE)}
    unknown = ~images["modality"].isin(names)
    if unknown.any():
        raise DatasetFormatError(
            path, "modality", f"{images['modality'][unknown].iloc[0]!r} is not an image modality of this dataset"
        )
    if images.duplicated(["patient_id", "modality"]).any():
        raise DatasetFormatError(path, "patient_id", "a patient has more than one image row for one modality")
    for relative in images["path"]:
        pure = PurePosixPath(str(relative))
        if pure.is_absolute() or ".." in pure.parts:
            raise DatasetFormatError(path, "path", f"{relative!r} must be relative to the dataset directory")
        if not (root / pure).is_file():
            raise DatasetFormatError(root / pure, "(file)", f"is referenced by {IMAGES_TABLE} but missing")
    ids = patients["patient_id"]
    for name in names:
        present = ids.isin(images.loc[images["modality"] == name, "patient_id"]).to_numpy()
        flagged = patients[avail_column(name)].to_numpy(dtype=bool)
        _check_agreement(path, name, flagged, present, patients, "has no image row", "has an image row")


def _check_agreement(path, modality, flagged, present, patients, missing_msg, extra_msg) -> None:
    if np.array_equal(flagged, present):
        return
    first = int(np.flatnonzero(flagged != present)[0])
    pid = patients["patient_id"].iloc[first]
    problem = missing_msg if flagged[first] else extra_msg
    state = "available" if flagged[first] else "absent"
    raise DatasetFormatError(path, modality, f"patient {pid!r} is {avail_column(modality)}={state} but {problem}")
