"""Chest X-rays from MIMIC-CXR-JPG: `mimic-cxr-2.0.0-metadata.csv[.gz]` plus the
`files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg` tree, or a table of precomputed embeddings keyed by dicom_id.

Per patient: the latest frontal image (ViewPosition PA or AP; PA first on a tie) of a study taken in
[admittime - 6 h, dischtime] of the index admission, the same window as the radiology reports.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmnar_core.loaders.mimic_iv.notes import RADIOLOGY_BEFORE
from mmnar_core.loaders.output import warn
from mmnar_core.loaders.tables import LoaderError, find_table, read_header, read_small

METADATA_TABLE = "mimic-cxr-2.0.0-metadata"
FRONTAL_VIEWS = ("PA", "AP")


def study_times(dates: pd.Series, times: pd.Series, path: Path) -> pd.Series:
    """StudyDate (YYYYMMDD) + StudyTime (HHMMSS[.fff], leading zeros sometimes dropped) -> timestamp."""
    clock = times.fillna("0").astype(str).str.split(".").str[0].str.zfill(6)
    stamp = pd.to_datetime(dates.astype(str).str.split(".").str[0] + clock, format="%Y%m%d%H%M%S", errors="coerce")
    bad = stamp.isna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise LoaderError(
            path,
            "StudyDate",
            f"value {dates.iloc[row]!r} / StudyTime {times.iloc[row]!r} on data row {row + 1} is not a valid date and time",
        )
    return stamp


def read_metadata(cxr_root: Path) -> pd.DataFrame:
    path = find_table(cxr_root, METADATA_TABLE)
    meta = read_small(
        path,
        required=["dicom_id", "subject_id", "study_id", "viewposition", "studydate", "studytime"],
        numeric=["subject_id", "study_id"],
        not_null=["dicom_id", "subject_id", "study_id", "studydate"],
    )
    meta["study_time"] = study_times(meta["studydate"], meta["studytime"], path)
    return meta


def select_images(meta: pd.DataFrame, cohort: pd.DataFrame) -> pd.DataFrame:
    """One row per cohort subject with a frontal image in the window (subject_id, dicom_id, study_id, view, study_time)."""
    frontal = meta[meta["viewposition"].isin(FRONTAL_VIEWS)]
    joined = frontal.merge(cohort[["subject_id", "admittime", "dischtime"]], on="subject_id")
    inside = (joined["study_time"] >= joined["admittime"] - RADIOLOGY_BEFORE) & (
        joined["study_time"] <= joined["dischtime"]
    )
    joined = joined[inside].assign(pa_first=(joined["viewposition"] != "PA").astype(int))
    joined = joined.sort_values(
        ["subject_id", "study_time", "pa_first", "dicom_id"], ascending=[True, False, True, True]
    )
    chosen = joined.drop_duplicates("subject_id")
    return chosen[["subject_id", "dicom_id", "study_id", "viewposition", "study_time"]].rename(
        columns={"viewposition": "view"}
    )


def jpg_path(cxr_root: Path, subject_id: int, study_id: int, dicom_id: str) -> Path:
    subject = str(int(subject_id))
    return Path(cxr_root) / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{int(study_id)}" / f"{dicom_id}.jpg"


def read_embeddings(path: Path) -> pd.DataFrame:
    """dicom_id + numeric columns (one per dimension), from Parquet or csv; indexed by dicom_id."""
    path = Path(path)
    if not path.is_file():
        raise LoaderError(path, "(file)", "embedding table not found")
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = read_small(
            path, required=["dicom_id"], optional=[c.lower() for c in read_header(path) if c.lower() != "dicom_id"]
        )
    table.columns = [str(c).lower() for c in table.columns]
    if "dicom_id" not in table.columns:
        raise LoaderError(path, "dicom_id", "required column is missing")
    dims = [c for c in table.columns if c != "dicom_id"]
    if not dims:
        raise LoaderError(path, "(columns)", "no embedding columns besides dicom_id")
    values = table[dims].apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any():
        column = values.columns[values.isna().any()][0]
        raise LoaderError(path, column, "embedding values must be numbers on every row")
    return pd.DataFrame(values.to_numpy(np.float32), index=table["dicom_id"].astype(str), columns=dims)


class CxrSource:
    """Resolves the chosen image of each patient to bytes for DatasetWriter (JPEG or .npy embedding)."""

    def __init__(self, cxr_root: Path, max_side: int = 512, embeddings: pd.DataFrame | None = None):
        self.cxr_root = Path(cxr_root)
        self.max_side = max_side
        self.embeddings = embeddings

    def reference(self, chosen: pd.DataFrame, cohort: pd.DataFrame) -> pd.Series:
        """Per cohort row: the chosen image's record (dict) or None when it cannot be found."""
        by_subject = chosen.set_index("subject_id")
        refs: list[dict[str, Any] | None] = []
        missing = 0
        for subject in cohort["subject_id"]:
            if subject not in by_subject.index:
                refs.append(None)
                continue
            row = by_subject.loc[subject]
            ref = {
                "subject_id": int(subject),
                "dicom_id": str(row["dicom_id"]),
                "study_id": int(row["study_id"]),
                "view": row["view"],
                "study_time": row["study_time"],
            }
            if self.embeddings is not None:
                found = ref["dicom_id"] in self.embeddings.index
            else:
                found = jpg_path(self.cxr_root, ref["subject_id"], ref["study_id"], ref["dicom_id"]).is_file()
            if not found:
                missing += 1
                refs.append(None)
            else:
                refs.append(ref)
        if missing:
            what = "embedding rows" if self.embeddings is not None else "JPEG files"
            warn(f"MIMIC-CXR: {missing} selected image(s) have no {what}; those patients have no cxr")
        return pd.Series(refs, dtype=object)

    def image_bytes(self, modality: str, ref: dict, patient_id: str) -> tuple[str, bytes, dict]:
        meta = {"image_id": ref["dicom_id"], "view": ref["view"]}
        if self.embeddings is not None:
            buffer = io.BytesIO()
            np.save(buffer, self.embeddings.loc[ref["dicom_id"]].to_numpy(np.float32))
            return f"images/{modality}/{patient_id}.npy", buffer.getvalue(), {**meta, "format": "embedding"}
        source = jpg_path(self.cxr_root, ref["subject_id"], ref["study_id"], ref["dicom_id"])
        data = source.read_bytes()
        if self.max_side:
            data = _resized_jpeg(source, data, self.max_side)
        return f"images/{modality}/{patient_id}.jpg", data, {**meta, "format": "jpeg"}


def _resized_jpeg(source: Path, data: bytes, max_side: int) -> bytes:
    """Full MIMIC-CXR JPEGs are ~2500 px; the encoders use <= 512 px, so store them at that size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("L")
            if max(image.size) <= max_side:
                return data
            image.thumbnail((max_side, max_side))
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=90)
            return out.getvalue()
    except (UnidentifiedImageError, OSError) as error:
        raise LoaderError(source, "(image)", f"is not a readable JPEG ({error})") from None
