"""Writes a dataset directory atomically: everything goes to a staging folder, is checked by the same
reader that training uses, and only then replaces the destination. A failed or interrupted write never
leaves a half-written dataset where a good one was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path, PurePosixPath

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mmnar_core.dataset.manifest import (
    CHECKSUMS_FILE,
    IMAGES_TABLE,
    MANIFEST_FILE,
    PATIENTS_TABLE,
    SPLITS,
    STRUCTURED_TABLE,
    TEXT_TABLE,
    Manifest,
    avail_column,
)
from mmnar_core.patterns import encode_pattern


class DatasetExistsError(FileExistsError):
    """The destination already holds something and overwriting was not asked for."""


def _safe_relative(relative: str) -> str:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"dataset file path {relative!r} must be relative and stay inside the dataset")
    return path.as_posix()


class DatasetWriter:
    """Collects files for one dataset and publishes them with `finish`.

    Use as a context manager; on an exception the staging folder is removed and the destination is
    untouched.
    """

    def __init__(self, out_dir: str | Path, overwrite: bool = False):
        self.out_dir = Path(out_dir).resolve()
        if self.out_dir.exists() and any(self.out_dir.iterdir()) and not overwrite:
            raise DatasetExistsError(
                f"{self.out_dir} already exists and is not empty; choose a new --out or pass --overwrite"
            )
        if self.out_dir.exists() and not (self.out_dir / MANIFEST_FILE).exists() and any(self.out_dir.iterdir()):
            raise DatasetExistsError(
                f"{self.out_dir} is not a dataset directory (no {MANIFEST_FILE}); refusing to overwrite it"
            )
        self.staging = self.out_dir.with_name(f".{self.out_dir.name}.partial-{os.getpid()}")
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir(parents=True)
        self._hashes: dict[str, str] = {}

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)

    def write_bytes(self, relative: str, data: bytes) -> str:
        """Store one file (an image, a mask, ...) and remember its hash; returns the relative path."""
        relative = _safe_relative(relative)
        target = self.staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self._hashes[relative] = hashlib.sha256(data).hexdigest()
        return relative

    def write_table(self, relative: str, frame: pd.DataFrame) -> str:
        """Store a Parquet table deterministically (no index, fixed row groups, zstd)."""
        table = pa.Table.from_pandas(frame, preserve_index=False)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd", row_group_size=65536, write_statistics=True)
        return self.write_bytes(relative, sink.getvalue().to_pybytes())

    def finish(
        self,
        manifest: Manifest,
        patients: pd.DataFrame,
        structured: pd.DataFrame,
        text: pd.DataFrame,
        images: pd.DataFrame,
    ) -> Path:
        """Fill derived columns and counts, write tables, checksums and manifest, verify, publish."""
        from mmnar_core.dataset.reader import load_dataset

        patients = patients.copy()
        availability = patients[[avail_column(m) for m in manifest.modality_names]].to_numpy(dtype=bool)
        patients["pattern"] = encode_pattern(availability) if len(patients) else pd.Series(dtype="int64")
        manifest.n_patients = int(len(patients))
        manifest.split_counts = {s: int((patients["split"] == s).sum()) for s in SPLITS}
        self.write_table(PATIENTS_TABLE, patients)
        self.write_table(STRUCTURED_TABLE, structured)
        self.write_table(TEXT_TABLE, text)
        self.write_table(IMAGES_TABLE, images)

        lines = "".join(f"{digest}  {path}\n" for path, digest in sorted(self._hashes.items()))
        (self.staging / CHECKSUMS_FILE).write_text(lines, encoding="utf-8")
        manifest.content_hash = hashlib.sha256(lines.encode("utf-8")).hexdigest()
        (self.staging / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")

        load_dataset(self.staging, verify="tables")  # the reader's checks are the writer's contract
        return self._publish()

    def _publish(self) -> Path:
        backup = None
        if self.out_dir.exists():
            backup = self.out_dir.with_name(f".{self.out_dir.name}.previous-{os.getpid()}")
            self.out_dir.rename(backup)
        self.staging.rename(self.out_dir)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        return self.out_dir
