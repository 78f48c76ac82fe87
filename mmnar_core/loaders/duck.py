"""Streaming scans of large csv / csv.gz tables with DuckDB.

Full MIMIC-IV has ~150 M labevents and ~430 M chartevents rows; eICU ~150 M vitalperiodic rows. These
are never loaded into pandas: DuckDB streams the gzip file, filters it against the (small) cohort
table and aggregates, under a fixed memory limit, spilling to a temporary folder if it must. Only the
per-patient aggregate comes back to Python.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from mmnar_core.loaders.tables import LoaderError, column_map

DEFAULT_MEMORY_LIMIT = "4GB"


@dataclass
class Engine:
    """One DuckDB connection with the memory limit and thread count of this build."""

    memory_limit: str = DEFAULT_MEMORY_LIMIT
    threads: int = 2
    temp_dir: str | None = None

    def __post_init__(self) -> None:
        self.con = duckdb.connect(":memory:")
        self._columns: dict[str, list[str]] = {}
        self._spill: tempfile.TemporaryDirectory[str] | None = None
        if self.temp_dir:
            spill = self.temp_dir
        else:
            self._spill = tempfile.TemporaryDirectory(prefix="mmnar-duckdb-")
            spill = self._spill.name
        self.con.execute(f"SET memory_limit = '{self.memory_limit}'")
        self.con.execute(f"SET threads = {int(self.threads)}")
        self.con.execute(f"SET temp_directory = '{_quote_path(spill)}'")
        self.con.execute("SET preserve_insertion_order = false")
        self.con.execute("SET enable_progress_bar = false")

    def scan(self, path: Path, columns: Mapping[str, str], optional: Mapping[str, str] | None = None) -> str:
        """`scan()` below, remembering which columns are read so an error can name them."""
        self._columns[str(path)] = [*columns, *(optional or {})]
        return scan(path, columns, optional)

    def register(self, name: str, frame: pd.DataFrame) -> None:
        self.con.register(name, frame)

    def query(self, sql: str, file: Path) -> pd.DataFrame:
        """Run a query that scans `file`; any DuckDB failure becomes a LoaderError naming the file (and
        the column when DuckDB reports one)."""
        try:
            return self.con.execute(sql).df()
        except duckdb.Error as error:
            raise _loader_error(file, error, self._columns.get(str(file), [])) from None

    def close(self) -> None:
        self.con.close()
        if self._spill is not None:
            self._spill.cleanup()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _quote_path(path: str | Path) -> str:
    return str(path).replace("'", "''")


def scan(path: Path, columns: Mapping[str, str], optional: Mapping[str, str] | None = None) -> str:
    """SQL for a subquery reading `columns` ({lower-case name: DuckDB type}) from a csv / csv.gz file.

    The header is checked first (missing column -> LoaderError naming it). Types are applied by the
    csv reader itself, so a value that does not convert fails with the file, the line and the column.
    Optional columns that are absent come back as typed NULLs. Column names match in any case.
    """
    optional = dict(optional or {})
    mapping = column_map(path, columns, optional)
    types = {mapping[name]: kind for name, kind in {**columns, **optional}.items() if name in mapping}
    type_sql = ", ".join(f"'{_quote_path(real)}': '{kind}'" for real, kind in types.items())
    select = []
    for name, kind in {**columns, **optional}.items():
        if name in mapping:
            select.append(f'"{mapping[name]}" AS {name}')
        else:
            select.append(f"CAST(NULL AS {kind}) AS {name}")
    reader = (
        f"read_csv('{_quote_path(path)}', header = true, all_varchar = true, delim = ',', quote = '\"', "
        f"escape = '\"', types = {{{type_sql}}}, strict_mode = true, max_line_size = 67108864)"
    )
    return f"(SELECT {', '.join(select)} FROM {reader})"


def _loader_error(file: Path, error: Exception, columns: list[str]) -> LoaderError:
    message = str(error)
    column = re.search(r'Error when converting column "([^"]+)"', message)
    line = re.search(r"CSV Error on Line: (\d+)", message)
    first = message.strip().splitlines()[0] if message.strip() else type(error).__name__
    if column:
        where = f" on line {line.group(1)}" if line else ""
        detail = re.search(r"Could not convert[^\n]*", message)
        return LoaderError(file, column.group(1).lower(), f"bad value{where}: {detail.group(0) if detail else first}")
    reading = f" while reading columns {', '.join(columns)}" if columns else ""
    if re.search(r"gzip|GZIP|zlib|deflate|Unexpected end", message):
        return LoaderError(file, "(content)", f"corrupt or truncated compressed file{reading}: {first}")
    return LoaderError(file, "(content)", f"cannot be read{reading}: {first}")
