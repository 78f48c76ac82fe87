"""What every loader shares at the end: patient-level splits, progress per stage, and writing through
DatasetWriter (the only way a loader writes a dataset)."""

from __future__ import annotations

import hashlib
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mmnar_core.dataset import DatasetWriter, Manifest, avail_column, label_column, reference_column
from mmnar_core.schema import FeatureKind, ModalityKind

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)


class LoaderWarning(UserWarning):
    """Something absent or dropped that the user should know about but that does not stop the build."""


def warn(message: str) -> None:
    warnings.warn(message, LoaderWarning, stacklevel=2)


def assign_splits(group_ids: Sequence[str], seed: int = 0, fractions: Sequence[float] = SPLIT_FRACTIONS) -> np.ndarray:
    """train / val / test per group (person) from a hash of (seed, group id).

    A hash rather than a shuffle: a person's split does not change when the cohort grows or is
    reordered, and all rows of one person land in the same split by construction.
    """
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    cut_train, cut_val = fractions[0], fractions[0] + fractions[1]
    out = np.empty(len(group_ids), dtype=object)
    for i, group in enumerate(group_ids):
        digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        out[i] = "train" if u < cut_train else "val" if u < cut_val else "test"
    return out


class Stages:
    """A progress bar whose steps are the build stages (`with Stages([...]) as s: s.next()`)."""

    def __init__(self, source: str, names: Sequence[str], enabled: bool = True):
        self.names = list(names)
        self.bar = tqdm(total=len(self.names), desc=source, unit="stage", disable=not enabled, file=sys.stderr)
        self.index = 0

    def next(self) -> None:
        if self.index > 0:
            self.bar.update(1)
        if self.index < len(self.names):
            self.bar.set_postfix_str(self.names[self.index])
        self.index += 1

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()


def tabular_availability(manifest: Manifest, structured: pd.DataFrame) -> dict[str, np.ndarray]:
    """A tabular modality is available exactly when one of its features is measured (format rule)."""
    out = {}
    for modality in manifest.modalities_of_kind(ModalityKind.TABULAR):
        owned = [f.name for f in manifest.features_of(modality.name)]
        out[modality.name] = (
            structured[owned].notna().any(axis=1).to_numpy() if owned else np.zeros(len(structured), bool)
        )
    return out


def conform_structured(manifest: Manifest, structured: pd.DataFrame) -> pd.DataFrame:
    """Column order and dtypes the format expects: float64 numeric, string categorical, Int8 binary."""
    columns = {"patient_id": structured["patient_id"].astype(str).to_numpy()}
    for feature in manifest.features:
        column = structured[feature.name] if feature.name in structured else pd.Series([None] * len(structured))
        column = column.reset_index(drop=True)
        if feature.kind is FeatureKind.NUMERIC:
            columns[feature.name] = pd.to_numeric(column, errors="raise").astype("float64")
        elif feature.kind is FeatureKind.BINARY:
            columns[feature.name] = pd.array(
                column.map(lambda v: None if v is None or v != v else int(bool(v))), dtype="Int8"
            )
        else:
            columns[feature.name] = column.map(lambda v: None if v is None or v != v else str(v)).astype(object)
    out = pd.DataFrame(columns)
    return out


def write_dataset(
    out: Path,
    manifest: Manifest,
    ids: pd.DataFrame,
    structured: pd.DataFrame,
    labels: dict[str, pd.Series],
    texts: dict[str, pd.Series] | None = None,
    images: dict[str, pd.Series] | None = None,
    image_bytes=None,
    references: dict[str, pd.Series] | None = None,
    extra_columns: dict[str, pd.Series] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    splits: np.ndarray | None = None,
) -> Path:
    """Assemble the four tables from aligned per-patient columns and write them with DatasetWriter.

    `ids` has `patient_id` and `group_id`; every other argument is aligned with it row by row.
    `extra_columns` are source identifiers kept in patients.parquet (e.g. subject_id, prediction_time).
    `images` maps an image modality to a Series of source references (None = absent) and
    `image_bytes(modality, reference, patient_id) -> (relative_path, bytes, metadata dict)` produces the
    file to store, so reading and resizing an image happens only while the writer is open.
    `splits` (train/val/test per row) replaces the per-person hash split (e.g. a split by hospital).
    """
    texts, images, references = texts or {}, images or {}, references or {}
    n = len(ids)
    patient_id = ids["patient_id"].astype(str).reset_index(drop=True)
    structured = conform_structured(manifest, structured.assign(patient_id=patient_id.to_numpy()))
    text = pd.DataFrame({"patient_id": patient_id})
    for modality in manifest.modalities_of_kind(ModalityKind.TEXT):
        series = texts.get(modality.name, pd.Series([None] * n)).reset_index(drop=True)
        text[modality.name] = series.map(lambda v: v if isinstance(v, str) and v.strip() else None).astype(object)

    patients = pd.DataFrame({"patient_id": patient_id, "group_id": ids["group_id"].astype(str).reset_index(drop=True)})
    patients["split"] = (
        assign_splits(patients["group_id"].tolist(), seed=seed) if splits is None else np.asarray(splits, dtype=object)
    )
    tabular = tabular_availability(manifest, structured)
    with DatasetWriter(out, overwrite=overwrite) as writer:
        image_rows = []
        present = {}
        for modality in manifest.modalities_of_kind(ModalityKind.IMAGE):
            refs = images.get(modality.name, pd.Series([None] * n)).reset_index(drop=True)
            flags = np.zeros(n, dtype=bool)
            for i in np.flatnonzero(refs.notna().to_numpy()):
                relative, data, meta = image_bytes(modality.name, refs.iloc[i], patient_id.iloc[i])
                path = writer.write_bytes(relative, data)
                image_rows.append({"patient_id": patient_id.iloc[i], "modality": modality.name, "path": path, **meta})
                flags[i] = True
            present[modality.name] = flags
        for modality in manifest.modalities:
            if modality.kind is ModalityKind.TABULAR:
                patients[avail_column(modality.name)] = tabular[modality.name]
            elif modality.kind is ModalityKind.TEXT:
                patients[avail_column(modality.name)] = text[modality.name].notna().to_numpy()
            else:
                patients[avail_column(modality.name)] = present[modality.name]
        for outcome in manifest.outcomes:
            patients[label_column(outcome.name)] = pd.array(labels[outcome.name].reset_index(drop=True), dtype="Int8")
        for name, values in references.items():
            patients[reference_column(name)] = values.reset_index(drop=True).astype("float64")
        for name, values in (extra_columns or {}).items():
            patients[name] = values.reset_index(drop=True).to_numpy()
        image_table = pd.DataFrame(image_rows, columns=None if image_rows else ["patient_id", "modality", "path"])
        if image_rows:
            image_table = image_table.astype({"patient_id": str, "modality": str, "path": str})
        return writer.finish(manifest, patients, structured, text, image_table)
