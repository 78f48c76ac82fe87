"""Finding and reading the published csv / csv.gz tables of a source, with errors that name the file
and the column.

Small tables (admissions, patients, the UCI table, ...) are read with pandas through `read_small`;
large event tables are streamed with DuckDB (`mmnar_core.loaders.duck`). Both check the header first, so
a missing column is reported before any work is done, and both turn a corrupt or truncated gzip stream
into a `LoaderError` naming the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal, overload

import pandas as pd

SUFFIXES = (".csv.gz", ".csv")


class LoaderError(ValueError):
    """Input that a loader cannot use; the message names the file and, when known, the column."""

    def __init__(self, file: str | Path, column: str, problem: str):
        self.file = str(file)
        self.column = column
        self.problem = problem
        super().__init__(f"{self.file}: {column}: {problem}")


@overload
def find_table(folder: Path, name: str, required: Literal[True] = True) -> Path: ...
@overload
def find_table(folder: Path, name: str, required: bool) -> Path | None: ...
def find_table(folder: Path, name: str, required: bool = True) -> Path | None:
    """`folder/name.csv.gz` or `folder/name.csv`, matching the table name in any case.

    eICU tables are published in lower case (2.0) and in CamelCase (1.x); MIMIC ships both csv and
    csv.gz copies depending on how it was downloaded.
    """
    folder = Path(folder)
    if folder.is_dir():
        by_lower = {child.name.lower(): child for child in sorted(folder.iterdir()) if child.is_file()}
        for suffix in SUFFIXES:
            hit = by_lower.get(f"{name.lower()}{suffix}")
            if hit is not None:
                return hit
    if required:
        raise LoaderError(
            folder / f"{name}.csv.gz",
            "(file)",
            f"required table {name!r} is missing (looked for {name}.csv.gz or {name}.csv in {folder})",
        )
    return None


def _open_text(path: Path):
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def read_header(path: Path) -> list[str]:
    """Column names of a csv / csv.gz file (first line only, so it is cheap on a 30 GB table)."""
    try:
        with _open_text(path) as handle:
            first = handle.readline()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
        raise LoaderError(path, "(header)", f"cannot be read: corrupt or truncated file ({error})") from None
    if not first.strip():
        raise LoaderError(path, "(header)", "is empty; expected a csv header line")
    return next(csv.reader([first]))


def column_map(path: Path, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, str]:
    """Map wanted lower-case column names to the file's own spelling; a missing required column is an error."""
    header = read_header(path)
    by_lower = {name.strip().lower(): name for name in header}
    mapping = {}
    for column in required:
        if column not in by_lower:
            raise LoaderError(path, column, f"required column is missing (the file has: {', '.join(header)})")
        mapping[column] = by_lower[column]
    for column in optional:
        if column in by_lower:
            mapping[column] = by_lower[column]
    return mapping


def read_small(
    path: Path,
    required: Iterable[str],
    optional: Iterable[str] = (),
    numeric: Iterable[str] = (),
    times: Iterable[str] = (),
    not_null: Iterable[str] = (),
    na_values: Iterable[str] = (),
) -> pd.DataFrame:
    """Read the named columns of a small table with pandas, every column as text, then check and convert.

    `numeric` and `times` columns are converted; a value that does not convert is an error naming the
    file, the column and the row (a blank stays null). `not_null` columns must have a value on every row.
    Columns come back under their lower-case names; absent optional columns are added as all-null.
    """
    required, optional = list(required), list(optional)
    mapping = column_map(path, required, optional)
    try:
        frame = pd.read_csv(
            path,
            usecols=list(mapping.values()),
            dtype=str,
            keep_default_na=False,
            na_values=[""] + list(na_values),
            compression="infer",
        )
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise LoaderError(
            path,
            "(content)",
            f"cannot be read: corrupt or truncated file while reading columns {', '.join(mapping)} ({error})",
        ) from None
    frame = frame.rename(columns={v: k for k, v in mapping.items()})
    for column in optional:
        if column not in frame.columns:
            frame[column] = pd.Series([None] * len(frame), dtype=object)
    for column in not_null:
        empty = frame[column].isna()
        if empty.any():
            raise LoaderError(
                path, column, f"is empty on data row {int(empty.to_numpy().argmax()) + 1}; every row needs a value"
            )
    for column in numeric:
        frame[column] = _convert(path, column, frame[column], lambda s: pd.to_numeric(s, errors="coerce"))
    for column in times:
        frame[column] = _convert(
            path, column, frame[column], lambda s: pd.to_datetime(s, errors="coerce", format="ISO8601")
        )
    return frame[required + optional]


def _convert(path: Path, column: str, values: pd.Series, convert) -> pd.Series:
    converted = convert(values)
    bad = converted.isna() & values.notna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise LoaderError(path, column, f"value {values.iloc[row]!r} on data row {row + 1} cannot be converted")
    return converted


def check_values(path: Path, column: str, values: pd.Series, accepted: Mapping | Iterable) -> None:
    """Fail when a column holds a value outside `accepted` (nulls allowed)."""
    accepted = set(accepted)
    bad = values.notna() & ~values.isin(accepted)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise LoaderError(
            path,
            column,
            f"value {values.iloc[row]!r} on data row {row + 1} is not accepted (accepted: {', '.join(sorted(map(str, accepted)))})",
        )
