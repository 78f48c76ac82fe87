"""Scale-up benchmark of the MIMIC-IV build (`python -m mmnar_core bench loaders_scaleup`).

Full MIMIC-IV cannot be shipped, so the benchmark makes a stand-in in the published layout: the demo's
hosp tables replicated K times with shifted subject / admission ids (labevents reaches `target_rows`),
plus a synthetic icu/chartevents in the published schema (hourly vital signs over every replicated ICU
stay). It then runs the real `build mimic-iv` command in a subprocess and reports rows per second over
every streamed row and the peak resident memory of that process (DuckDB included).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

DEMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "mimic-iv-demo"
ID_SHIFT = 100_000_000  # subject and hadm ids of replica k are shifted by k * ID_SHIFT (ids are 8 digits)
REPLICATED = {
    "hosp/admissions": ["subject_id", "hadm_id"],
    "hosp/patients": ["subject_id"],
    "hosp/labevents": ["labevent_id", "subject_id", "hadm_id", "specimen_id"],
    "hosp/diagnoses_icd": ["subject_id", "hadm_id"],
    "hosp/procedures_icd": ["subject_id", "hadm_id"],
    "hosp/prescriptions": ["subject_id", "hadm_id"],
    "icu/icustays": ["subject_id", "hadm_id", "stay_id"],
}
COPIED = ("hosp/d_labitems",)
VITAL_ITEMS = (
    (220045, 80.0, 15.0, "bpm"),
    (220179, 120.0, 20.0, "mmHg"),
    (220180, 65.0, 12.0, "mmHg"),
    (220181, 85.0, 14.0, "mmHg"),
    (220210, 18.0, 4.0, "insp/min"),
    (223762, 37.0, 0.6, "°C"),
    (220277, 96.0, 2.5, "%"),
)


def _columns(con, path: Path) -> list[str]:
    return [
        row[0]
        for row in con.execute(
            f"DESCRIBE SELECT * FROM read_csv('{path}', header = true, all_varchar = true)"
        ).fetchall()
    ]


def make_scaled_root(demo: Path, out: Path, replicas: int, threads: int = 2) -> dict[str, int]:
    """Write a MIMIC-IV-layout root with `replicas` copies of the demo; returns rows per streamed table."""
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET preserve_insertion_order = false")
    rows = {}
    for table, shifted in REPLICATED.items():
        source, target = demo / f"{table}.csv.gz", out / f"{table}.csv.gz"
        target.parent.mkdir(parents=True, exist_ok=True)
        select = []
        for column in _columns(con, source):
            if column in shifted:
                select.append(f'CAST(CAST("{column}" AS BIGINT) + r.k * {ID_SHIFT} AS VARCHAR) AS "{column}"')
            else:
                select.append(f'"{column}"')
        query = (
            f"SELECT {', '.join(select)} FROM read_csv('{source}', header = true, all_varchar = true) "
            f"CROSS JOIN range({replicas}) r(k)"
        )
        con.execute(f"COPY ({query}) TO '{target}' (HEADER, COMPRESSION gzip)")
        rows[table] = (
            con.execute(f"SELECT count(*) FROM read_csv('{source}', header = true, all_varchar = true)").fetchone()[0]
            * replicas
        )
    for table in COPIED:
        (out / f"{table}.csv.gz").write_bytes((demo / f"{table}.csv.gz").read_bytes())
    items = " UNION ALL ".join(
        f"SELECT {i} AS itemid, {m} AS mean, {s} AS sd, '{u}' AS uom" for i, m, s, u in VITAL_ITEMS
    )
    con.execute("SELECT setseed(0.42)")
    chart = f"""
        SELECT CAST(s.subject_id + r.k * {ID_SHIFT} AS BIGINT) AS subject_id, CAST(s.hadm_id + r.k * {ID_SHIFT} AS BIGINT) AS hadm_id,
               CAST(s.stay_id + r.k * {ID_SHIFT} AS BIGINT) AS stay_id, 1 AS caregiver_id, t.charttime,
               t.charttime + INTERVAL 5 MINUTE AS storetime, i.itemid,
               round(i.mean + i.sd * (random() * 2 - 1) * 1.7, 1) AS valuenum, i.uom AS valueuom, 0 AS warning
        FROM read_csv('{demo / "icu/icustays.csv.gz"}', header = true, types = {{'intime': 'TIMESTAMP', 'outtime': 'TIMESTAMP'}}) s
        CROSS JOIN range({replicas}) r(k)
        CROSS JOIN ({items}) i
        CROSS JOIN LATERAL (SELECT unnest(generate_series(s.intime, s.outtime, INTERVAL 1 HOUR)) AS charttime) t
    """
    query = (
        f"SELECT subject_id, hadm_id, stay_id, caregiver_id, charttime, storetime, itemid, "
        f"CAST(valuenum AS VARCHAR) AS value, valuenum, valueuom, warning FROM ({chart})"
    )
    target = out / "icu/chartevents.csv.gz"
    con.execute(f"COPY ({query}) TO '{target}' (HEADER, COMPRESSION gzip, TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S')")
    rows["icu/chartevents"] = con.execute(
        f"SELECT count(*) FROM read_csv('{target}', header = true, all_varchar = true)"
    ).fetchone()[0]
    con.close()
    return rows


def bench_loaders_scaleup(
    target_rows: int = 20_000_000,
    memory_limit: str = "4GB",
    threads: int = 2,
    workdir: str | None = None,
    demo: str | None = None,
    keep: bool = False,
) -> dict:
    """Build mimic-iv on a replicated demo whose labevents has >= target_rows rows; figures for the whole build."""
    demo_root = Path(demo) if demo else DEMO
    if not (demo_root / "hosp" / "labevents.csv.gz").is_file():
        raise FileNotFoundError(f"the MIMIC-IV demo is needed beside the clone (looked in {demo_root})")
    con = duckdb.connect()
    demo_labs = con.execute(
        f"SELECT count(*) FROM read_csv('{demo_root / 'hosp/labevents.csv.gz'}', header = true, all_varchar = true)"
    ).fetchone()[0]
    con.close()
    replicas = max(1, math.ceil(target_rows / demo_labs))
    base = Path(tempfile.mkdtemp(prefix="mmnar-scaleup-", dir=workdir))
    try:
        started = time.perf_counter()
        rows = make_scaled_root(demo_root, base / "mimic", replicas, threads)
        generate_s = time.perf_counter() - started
        input_bytes = sum(f.stat().st_size for f in (base / "mimic").rglob("*.csv.gz"))
        command = [
            sys.executable,
            "-m",
            "mmnar_core",
            "build",
            "mimic-iv",
            "--root",
            str(base / "mimic"),
            "--out",
            str(base / "ds"),
            "--no-progress",
            "--memory-limit",
            memory_limit,
            "--threads",
            str(threads),
        ]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        build_s = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"scale-up build failed:\n{done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
        streamed = sum(rows.values())
        return {
            "replicas_of_demo": replicas,
            "labevents_rows": rows["hosp/labevents"],
            "chartevents_rows": rows["icu/chartevents"],
            "input_rows_total": streamed,
            "input_gzip_mib": round(input_bytes / 2**20, 1),
            "cohort_rows": summary["rows"],
            "generate_s": round(generate_s, 1),
            "build_s": round(build_s, 1),
            "rows_per_s": round(streamed / build_s),  # every input table's rows
            "event_rows_per_s": round((rows["hosp/labevents"] + rows["icu/chartevents"]) / build_s),
            "peak_rss_mib": summary["peak_rss_mib"],  # measured by the build process itself (ru_maxrss)
            "duckdb_memory_limit": memory_limit,
            "threads": threads,
        }
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
