"""Structured features of the index admission, streamed from the large hosp / icu tables with DuckDB.

Only events of the index admission timed at or before the prediction time (index dischtime) are used.
Missing is explicit: a lab never measured has null last/min/max and count 0 (a true count); a table that
is absent altogether gives null for every feature it would have filled (not zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmnar_core.loaders.codes import (
    DIAGNOSIS_GROUPS,
    MEDICATION_CLASSES,
    PROCEDURE_GROUPS,
    diagnosis_group,
    medication_class_sql,
    procedure_group,
)
from mmnar_core.loaders.duck import Engine
from mmnar_core.loaders.output import warn
from mmnar_core.schema import FeatureKind, FeatureSpec


@dataclass(frozen=True)
class Measure:
    name: str
    itemids: tuple[int, ...]
    unit: str | None
    valid_range: tuple[float, float]
    description: str


# Common labs (hosp/labevents, itemids from hosp/d_labitems), kept in the unit MIMIC-IV reports them in.
LABS = (
    Measure("hemoglobin", (51222,), "g/dL", (1, 25), "Hemoglobin"),
    Measure("hematocrit", (51221,), "%", (5, 75), "Hematocrit"),
    Measure("wbc", (51301,), "K/uL", (0, 500), "White blood cells"),
    Measure("platelets", (51265,), "K/uL", (0, 3000), "Platelet count"),
    Measure("sodium", (50983,), "mEq/L", (90, 200), "Sodium"),
    Measure("potassium", (50971,), "mEq/L", (1, 12), "Potassium"),
    Measure("chloride", (50902,), "mEq/L", (50, 160), "Chloride"),
    Measure("bicarbonate", (50882,), "mEq/L", (2, 60), "Bicarbonate"),
    Measure("anion_gap", (50868,), "mEq/L", (0, 60), "Anion gap"),
    Measure("bun", (51006,), "mg/dL", (0, 300), "Urea nitrogen"),
    Measure("creatinine", (50912,), "mg/dL", (0, 40), "Creatinine"),
    Measure("glucose", (50931,), "mg/dL", (0, 3000), "Glucose"),
    Measure("calcium", (50893,), "mg/dL", (2, 20), "Calcium, total"),
    Measure("magnesium", (50960,), "mg/dL", (0, 10), "Magnesium"),
    Measure("phosphate", (50970,), "mg/dL", (0, 20), "Phosphate"),
    Measure("albumin", (50862,), "g/dL", (0.5, 7), "Albumin"),
    Measure("bilirubin", (50885,), "mg/dL", (0, 80), "Bilirubin, total"),
    Measure("alt", (50861,), "IU/L", (0, 20000), "Alanine aminotransferase"),
    Measure("ast", (50878,), "IU/L", (0, 30000), "Aspartate aminotransferase"),
    Measure("lactate", (50813,), "mmol/L", (0, 30), "Lactate"),
    Measure("inr", (51237,), None, (0.5, 20), "INR(PT) (unitless)"),
    Measure("rdw", (51277,), "%", (5, 40), "Red cell distribution width"),
    Measure("troponin_t", (51003,), "ng/mL", (0, 50), "Troponin T"),
    Measure("ntprobnp", (50963,), "pg/mL", (0, 100000), "NT-proBNP"),
)

# ICU vitals (icu/chartevents, itemids from icu/d_items); temperature in Fahrenheit is converted to C.
VITALS = (
    Measure("heart_rate", (220045,), "bpm", (0, 300), "Heart rate"),
    Measure("sbp", (220179, 220050), "mmHg", (0, 300), "Systolic blood pressure (non-invasive or arterial)"),
    Measure("dbp", (220180, 220051), "mmHg", (0, 250), "Diastolic blood pressure (non-invasive or arterial)"),
    Measure("mbp", (220181, 220052), "mmHg", (0, 300), "Mean blood pressure (non-invasive or arterial)"),
    Measure("resp_rate", (220210, 224690), "insp/min", (0, 80), "Respiratory rate"),
    Measure("temperature", (223762, 223761), "degC", (25, 45), "Temperature (Fahrenheit readings converted)"),
    Measure("spo2", (220277,), "%", (0, 100), "SpO2 (pulse oximetry)"),
)
FAHRENHEIT_ITEMS = (223761,)

CATEGORIES = {
    "gender": ("F", "M"),
    "admission_type": (
        "AMBULATORY OBSERVATION",
        "DIRECT EMER.",
        "DIRECT OBSERVATION",
        "ELECTIVE",
        "EU OBSERVATION",
        "EW EMER.",
        "OBSERVATION ADMIT",
        "SURGICAL SAME DAY ADMISSION",
        "URGENT",
        "OTHER",
    ),
    "admission_location": (
        "AMBULATORY SURGERY TRANSFER",
        "CLINIC REFERRAL",
        "EMERGENCY ROOM",
        "INFORMATION NOT AVAILABLE",
        "INTERNAL TRANSFER TO OR FROM PSYCH",
        "PACU",
        "PHYSICIAN REFERRAL",
        "PROCEDURE SITE",
        "TRANSFER FROM HOSPITAL",
        "TRANSFER FROM SKILLED NURSING FACILITY",
        "WALK-IN/SELF REFERRAL",
        "OTHER",
    ),
    "discharge_location": (
        "ACUTE HOSPITAL",
        "AGAINST ADVICE",
        "ASSISTED LIVING",
        "CHRONIC/LONG TERM ACUTE CARE",
        "HEALTHCARE FACILITY",
        "HOME",
        "HOME HEALTH CARE",
        "HOSPICE",
        "OTHER FACILITY",
        "PSYCH FACILITY",
        "REHAB",
        "SKILLED NURSING FACILITY",
        "OTHER",
    ),
    "insurance": ("Medicaid", "Medicare", "Private", "No charge", "Other"),
    "language": ("english", "other"),
    "marital_status": ("DIVORCED", "MARRIED", "SINGLE", "WIDOWED", "OTHER"),
    "race": ("white", "black", "hispanic", "asian", "other"),
}
UNKNOWN_VALUES = {"?", "UNKNOWN", "UNABLE TO OBTAIN", "PATIENT DECLINED TO ANSWER", "UNKNOWN/NOT SPECIFIED"}


def feature_specs() -> list[FeatureSpec]:
    """Every structured feature of the MIMIC-IV dataset, all owned by the `structured` modality."""
    m = "structured"
    specs = [
        FeatureSpec("age", FeatureKind.NUMERIC, m, "years", "Age at index admission", (18, 120)),
        FeatureSpec("los_days", FeatureKind.NUMERIC, m, "days", "Length of the index stay", (0, 1000)),
        FeatureSpec(
            "ed_hours",
            FeatureKind.NUMERIC,
            m,
            "hours",
            "Time in the emergency department before admission (null: no ED visit)",
            (0, 1000),
        ),
    ]
    for name, categories in CATEGORIES.items():
        specs.append(
            FeatureSpec(
                name,
                FeatureKind.CATEGORICAL,
                m,
                None,
                f"{name.replace('_', ' ')} of the index admission (null: not recorded)",
                None,
                categories,
            )
        )
    specs += [
        FeatureSpec("icu_stay", FeatureKind.BINARY, m, None, "An ICU stay during the index admission"),
        FeatureSpec(
            "icu_los_days",
            FeatureKind.NUMERIC,
            m,
            "days",
            "Days in ICU during the index admission (0: none)",
            (0, 1000),
        ),
        FeatureSpec(
            "n_diagnoses", FeatureKind.NUMERIC, m, "count", "ICD diagnosis codes of the index admission", (0, 1000)
        ),
        FeatureSpec(
            "n_procedures", FeatureKind.NUMERIC, m, "count", "ICD procedure codes dated up to discharge", (0, 1000)
        ),
        FeatureSpec(
            "n_prescriptions", FeatureKind.NUMERIC, m, "count", "Prescriptions started up to discharge", (0, 100000)
        ),
        FeatureSpec(
            "n_distinct_drugs", FeatureKind.NUMERIC, m, "count", "Distinct drugs prescribed up to discharge", (0, 10000)
        ),
    ]
    specs += [
        FeatureSpec(f"dx_{g}", FeatureKind.BINARY, m, None, f"A diagnosis in the ICD chapter group '{g}'")
        for g in DIAGNOSIS_GROUPS
    ]
    specs += [
        FeatureSpec(f"proc_{g}", FeatureKind.BINARY, m, None, f"An ICD procedure in the broad group '{g}'")
        for g in PROCEDURE_GROUPS
    ]
    specs += [
        FeatureSpec(f"med_{c}", FeatureKind.BINARY, m, None, f"A prescription of class '{c}' (by drug name)")
        for c in MEDICATION_CLASSES
    ]
    for prefix, measures in (("lab", LABS), ("vital", VITALS)):
        for measure in measures:
            for stat in ("last", "min", "max"):
                specs.append(
                    FeatureSpec(
                        f"{prefix}_{measure.name}_{stat}",
                        FeatureKind.NUMERIC,
                        m,
                        measure.unit,
                        f"{measure.description}: {stat} value up to discharge",
                        measure.valid_range,
                    )
                )
            specs.append(
                FeatureSpec(
                    f"{prefix}_{measure.name}_count",
                    FeatureKind.NUMERIC,
                    m,
                    "count",
                    f"{measure.description}: number of measurements up to discharge",
                    (0, 1e6),
                )
            )
    return specs


def categorize(values: pd.Series, categories: tuple[str, ...], column: str) -> pd.Series:
    """Map to the fixed categories; unknown markers become null, unseen values 'OTHER'/'other' (warned)."""
    values = values.where(~values.isin(UNKNOWN_VALUES))
    other = "OTHER" if "OTHER" in categories else "other" if "other" in categories else None
    unseen = values.notna() & ~values.isin(categories)
    if unseen.any():
        if other is None:
            values = values.where(~unseen)
        else:
            warn(
                f"admissions.{column}: {int(unseen.sum())} value(s) not in the published list (e.g. {values[unseen].iloc[0]!r}) mapped to {other!r}"
            )
            values = values.where(~unseen, other)
    return values


def race_group(race: pd.Series) -> pd.Series:
    text = race.fillna("").str.upper()
    out = pd.Series([None] * len(race), index=race.index, dtype=object)
    out[text.str.startswith("WHITE") | text.str.startswith("PORTUGUESE")] = "white"
    out[text.str.startswith("BLACK")] = "black"
    out[text.str.startswith("HISPANIC") | text.str.startswith("SOUTH AMERICAN")] = "hispanic"
    out[text.str.startswith("ASIAN")] = "asian"
    known = text.ne("") & ~text.isin(UNKNOWN_VALUES)
    out[known & out.isna()] = "other"
    return out


def admission_features(cohort: pd.DataFrame) -> pd.DataFrame:
    """Demographics and admission fields (known at discharge), from the cohort frame."""
    out = pd.DataFrame(index=cohort.index)
    out["age"] = cohort["age"].astype(float)
    out["los_days"] = (cohort["dischtime"] - cohort["admittime"]) / pd.Timedelta(days=1)
    ed = (cohort["edouttime"] - cohort["edregtime"]) / pd.Timedelta(hours=1)
    out["ed_hours"] = ed.where(ed >= 0)
    out["gender"] = cohort["gender"].where(cohort["gender"].isin(CATEGORIES["gender"]))
    for column in ("admission_type", "admission_location", "discharge_location", "insurance", "marital_status"):
        out[column] = categorize(cohort[column], CATEGORIES[column], column)
    language = cohort["language"].where(~cohort["language"].isin(UNKNOWN_VALUES))
    out["language"] = language.map(
        lambda v: None if not isinstance(v, str) else "english" if v.upper() == "ENGLISH" else "other"
    )
    out["race"] = race_group(cohort["race"])
    return out


def icu_features(cohort: pd.DataFrame, icustays: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """ICU stays during the index admission; time after the prediction time is cut off."""
    stays = icustays.merge(cohort[["hadm_id", "prediction_time"]], on="hadm_id")
    stays = stays[stays["intime"] <= stays["prediction_time"]]
    end = stays[["outtime", "prediction_time"]].min(axis=1)
    stays = stays.assign(days=((end - stays["intime"]) / pd.Timedelta(days=1)).clip(lower=0))
    days = stays.groupby("hadm_id")["days"].sum()
    out = pd.DataFrame(index=cohort.index)
    out["icu_stay"] = cohort["hadm_id"].isin(stays["hadm_id"]).astype(int).to_numpy()
    out["icu_los_days"] = cohort["hadm_id"].map(days).fillna(0.0).to_numpy()
    return out, stays.groupby("hadm_id")["intime"].max()


def _measure_table(measures) -> pd.DataFrame:
    rows = [{"itemid": i, "measure": m.name, "unit": m.unit} for m in measures for i in m.itemids]
    return pd.DataFrame(rows).astype({"itemid": "int64"})


def _pivot_measures(cohort: pd.DataFrame, stats: pd.DataFrame, prefix: str, measures) -> pd.DataFrame:
    columns = {}
    for measure in measures:
        part = stats[stats["measure"] == measure.name].set_index("hadm_id")
        for stat in ("last", "min", "max"):
            columns[f"{prefix}_{measure.name}_{stat}"] = cohort["hadm_id"].map(part[stat]).astype(float).to_numpy()
        columns[f"{prefix}_{measure.name}_count"] = cohort["hadm_id"].map(part["n"]).fillna(0).astype(float).to_numpy()
    return pd.DataFrame(columns, index=cohort.index)


def lab_features(engine: Engine, path: Path, cohort: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """last / min / max / count per common lab, in its published unit, up to the prediction time."""
    engine.register("lab_items", _measure_table(LABS))
    source = engine.scan(
        path,
        {"hadm_id": "BIGINT", "itemid": "BIGINT", "charttime": "TIMESTAMP", "valuenum": "DOUBLE"},
        {"valueuom": "VARCHAR"},
    )
    stats = engine.query(
        f"""
        WITH ev AS (
            SELECT e.hadm_id, i.measure, e.charttime, e.valuenum,
                   (e.valueuom IS NULL OR i.unit IS NULL OR trim(e.valueuom) = i.unit) AS unit_ok
            FROM {source} e
            JOIN lab_items i ON e.itemid = i.itemid
            JOIN cohort c ON e.hadm_id = c.hadm_id
            WHERE e.charttime <= c.prediction_time AND e.valuenum IS NOT NULL
        )
        SELECT hadm_id, measure,
               arg_max(valuenum, charttime) FILTER (WHERE unit_ok) AS last,
               min(valuenum) FILTER (WHERE unit_ok) AS min, max(valuenum) FILTER (WHERE unit_ok) AS max,
               count(*) FILTER (WHERE unit_ok) AS n, count(*) FILTER (WHERE NOT unit_ok) AS other_unit,
               max(charttime) FILTER (WHERE unit_ok) AS latest
        FROM ev GROUP BY hadm_id, measure
        """,
        path,
    )
    dropped = int(stats["other_unit"].sum()) if len(stats) else 0
    if dropped:
        warn(f"{path}: {dropped} lab value(s) in a unit other than the documented one were left out")
    return _pivot_measures(cohort, stats, "lab", LABS), stats.groupby("hadm_id")["latest"].max()


def vital_features(engine: Engine, path: Path, cohort: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """last / min / max / count per ICU vital sign up to the prediction time (icu/chartevents)."""
    engine.register("vital_items", _measure_table(VITALS))
    source = engine.scan(
        path, {"hadm_id": "BIGINT", "itemid": "BIGINT", "charttime": "TIMESTAMP", "valuenum": "DOUBLE"}
    )
    fahrenheit = ", ".join(str(i) for i in FAHRENHEIT_ITEMS)
    stats = engine.query(
        f"""
        WITH ev AS (
            SELECT e.hadm_id, i.measure, e.charttime,
                   CASE WHEN e.itemid IN ({fahrenheit}) THEN (e.valuenum - 32) * 5 / 9 ELSE e.valuenum END AS v
            FROM {source} e
            JOIN vital_items i ON e.itemid = i.itemid
            JOIN cohort c ON e.hadm_id = c.hadm_id
            WHERE e.charttime <= c.prediction_time AND e.valuenum IS NOT NULL
        )
        SELECT hadm_id, measure, arg_max(v, charttime) AS last, min(v) AS min, max(v) AS max, count(*) AS n,
               max(charttime) AS latest
        FROM ev GROUP BY hadm_id, measure
        """,
        path,
    )
    return _pivot_measures(cohort, stats, "vital", VITALS), stats.groupby("hadm_id")["latest"].max()


def absent_measures(cohort: pd.DataFrame, prefix: str, measures) -> pd.DataFrame:
    """A table that is not there: every feature it fills is null (unknown), counts included."""
    columns = [f"{prefix}_{m.name}_{s}" for m in measures for s in ("last", "min", "max", "count")]
    return pd.DataFrame(np.nan, index=cohort.index, columns=columns)


def _code_groups(
    codes: pd.DataFrame, cohort: pd.DataFrame, grouper, groups, count_name: str, prefix: str
) -> pd.DataFrame:
    """Per index admission: the number of coded rows and a 0/1 per group (each distinct code grouped once)."""
    unique = codes[["icd_code", "icd_version"]].drop_duplicates()
    unique["group"] = [
        grouper(c, v) if isinstance(c, str) else None for c, v in zip(unique["icd_code"], unique["icd_version"])
    ]
    codes = codes.merge(unique, on=["icd_code", "icd_version"], how="left")
    values = {count_name: cohort["hadm_id"].map(codes.groupby("hadm_id").size()).fillna(0).astype(float).to_numpy()}
    for group in groups:
        values[f"{prefix}_{group}"] = (
            cohort["hadm_id"].isin(set(codes.loc[codes["group"] == group, "hadm_id"])).astype(int).to_numpy()
        )
    return pd.DataFrame(values, index=cohort.index)


def diagnosis_features(engine: Engine, path: Path | None, cohort: pd.DataFrame) -> pd.DataFrame:
    """Count and ICD chapter groups of the index admission's diagnosis codes (coded for that stay)."""
    columns = ["n_diagnoses"] + [f"dx_{g}" for g in DIAGNOSIS_GROUPS]
    if path is None:
        return pd.DataFrame(np.nan, index=cohort.index, columns=columns)
    source = engine.scan(path, {"hadm_id": "BIGINT", "icd_code": "VARCHAR", "icd_version": "INTEGER"})
    codes = engine.query(
        f"SELECT d.hadm_id, trim(d.icd_code) AS icd_code, d.icd_version FROM {source} d SEMI JOIN cohort c ON d.hadm_id = c.hadm_id",
        path,
    )
    return _code_groups(codes, cohort, diagnosis_group, DIAGNOSIS_GROUPS, "n_diagnoses", "dx")


def procedure_features(engine: Engine, path: Path | None, cohort: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Count and broad groups of the ICD procedures of the index admission dated up to the discharge date."""
    columns = ["n_procedures"] + [f"proc_{g}" for g in PROCEDURE_GROUPS]
    if path is None:
        return pd.DataFrame(np.nan, index=cohort.index, columns=columns), pd.Series(dtype="datetime64[ns]")
    source = engine.scan(
        path, {"hadm_id": "BIGINT", "chartdate": "DATE", "icd_code": "VARCHAR", "icd_version": "INTEGER"}
    )
    codes = engine.query(
        f"""SELECT p.hadm_id, p.chartdate, trim(p.icd_code) AS icd_code, p.icd_version FROM {source} p
            JOIN cohort c ON p.hadm_id = c.hadm_id WHERE p.chartdate <= CAST(c.prediction_time AS DATE)""",
        path,
    )
    features = _code_groups(codes, cohort, procedure_group, PROCEDURE_GROUPS, "n_procedures", "proc")
    return features, codes.groupby("hadm_id")["chartdate"].max()


def medication_features(engine: Engine, path: Path | None, cohort: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Prescription counts and classes (by drug name), for prescriptions started up to the prediction time."""
    columns = ["n_prescriptions", "n_distinct_drugs"] + [f"med_{c}" for c in MEDICATION_CLASSES]
    if path is None:
        return pd.DataFrame(np.nan, index=cohort.index, columns=columns), pd.Series(dtype="datetime64[ns]")
    source = engine.scan(path, {"hadm_id": "BIGINT", "starttime": "TIMESTAMP", "drug": "VARCHAR"})
    classes = ", ".join(f"bool_or({expr}) AS med_{name}" for name, expr in medication_class_sql("p.drug").items())
    stats = engine.query(
        f"""SELECT p.hadm_id, count(*) AS n_prescriptions, count(DISTINCT lower(p.drug)) AS n_distinct_drugs, {classes},
                   max(p.starttime) AS latest
            FROM {source} p JOIN cohort c ON p.hadm_id = c.hadm_id
            WHERE p.starttime <= c.prediction_time GROUP BY p.hadm_id""",
        path,
    ).set_index("hadm_id")
    out = pd.DataFrame(index=cohort.index)
    for column in columns:
        out[column] = cohort["hadm_id"].map(stats[column]).fillna(0).astype(float).to_numpy()
    return out, stats["latest"]
