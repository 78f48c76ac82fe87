"""`build eicu`: eICU-CRD (2.0 lower-case or 1.x CamelCase table names) -> canonical dataset.

One row per ICU unit stay (patient_id = patientunitstayid, group_id = uniquepid so a person never spans
splits). Prediction time = 24 h after unit admission: every feature comes from rows whose offset
(minutes from unit admission) is <= 1440 (and >= 0 for time series such as vitals).

Each tabular modality is one thing a clinician ordered or charted (APACHE day-1 variables, aperiodic
vitals, intake/output, diagnoses, medications, treatments, past history, respiratory charting, and
labs / periodic vitals / nurse charting when those tables exist). A stay with no row in a modality's
table within the window has every feature of that modality null, so the modality is absent: the
availability pattern is what was charted. APACHE IV(a) predicted hospital mortality is kept as the
reference score `ref_apache_iva_hospital_mortality`, never as a feature.

Splits are by person (default) or, with split_by="hospital", by hospital (loaders/site_split.py): test
stays then come from hospitals the model never saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mmnar_core.dataset import Manifest, ReferenceScore
from mmnar_core.loaders.codes import medication_class_sql
from mmnar_core.loaders.duck import DEFAULT_MEMORY_LIMIT, Engine
from mmnar_core.loaders.output import SPLIT_FRACTIONS, Stages, warn, write_dataset
from mmnar_core.loaders.site_split import SPLIT_BY, split_by_hospital
from mmnar_core.loaders.tables import LoaderError, find_table, read_small
from mmnar_core.schema import FeatureKind, FeatureSpec, ModalityKind, ModalitySpec, OutcomeSpec

WINDOW_MINUTES = 1440

OUTCOMES = (
    OutcomeSpec(
        "hospital_mortality",
        "Death before hospital discharge",
        "patient.hospitaldischargestatus == 'Expired' (1) / 'Alive' (0); null when not recorded",
        anchor="unit admission + 24 h",
        defined_for="stays with a recorded hospital discharge status",
    ),
    OutcomeSpec(
        "icu_readmission",
        "ICU readmission in the same hospital stay",
        "a later unit stay (higher unitvisitnumber) of the same patienthealthsystemstayid has unitstaytype == "
        "'readmit'; null when the stay ended in death in the unit",
        anchor="unit admission + 24 h",
        defined_for="stays discharged alive from the unit",
    ),
)

DX_CATEGORIES = (
    "cardiovascular",
    "pulmonary",
    "renal",
    "neurologic",
    "gastrointestinal",
    "endocrine",
    "infectious diseases",
    "hematology",
    "oncology",
    "toxicology",
    "trauma",
    "surgery",
    "general",
    "musculoskeletal",
    "transplant",
)
TREATMENT_CATEGORIES = (
    "cardiovascular",
    "pulmonary",
    "renal",
    "neurologic",
    "gastrointestinal",
    "endocrine",
    "infectious diseases",
    "hematology",
    "oncology",
    "toxicology",
    "surgery",
    "general",
)
HISTORY_FLAGS = {
    "heart_failure": "congestive heart failure|chf",
    "copd": "copd",
    "diabetes": "insulin dependent diabetes|non-insulin dependent diabetes|diabetes",
    "renal_failure": "renal failure|renal insufficiency|dialysis",
    "cancer": "cancer|malignancy|tumor|leukemia|lymphoma",
    "hypertension": "hypertension",
    "stroke": "stroke",
    "liver_disease": "cirrhosis|hepat",
    "no_problems": "no health problems",
}
APS_NUMERIC = (
    "eyes",
    "motor",
    "verbal",
    "urine",
    "wbc",
    "temperature",
    "respiratoryrate",
    "sodium",
    "heartrate",
    "meanbp",
    "ph",
    "hematocrit",
    "creatinine",
    "albumin",
    "pao2",
    "pco2",
    "bun",
    "glucose",
    "bilirubin",
    "fio2",
)
APS_BINARY = ("intubated", "vent", "dialysis", "meds")
LABS = {
    "creatinine": "creatinine",
    "bun": "BUN",
    "sodium": "sodium",
    "potassium": "potassium",
    "glucose": "glucose",
    "hgb": "Hgb",
    "wbc": "WBC x 1000",
    "platelets": "platelets x 1000",
    "lactate": "lactate",
    "bicarbonate": "bicarbonate",
}
PERIODIC = ("heartrate", "respiration", "sao2", "temperature", "systemicmean")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


@dataclass
class Group:
    """One tabular modality: its table, offset column, SQL aggregates and feature specs."""

    modality: ModalitySpec
    table: str
    offset: str
    aggregates: dict[str, str]  # feature name -> SQL aggregate over the scanned rows (alias t)
    columns: dict[str, str]  # column name -> DuckDB type read from the table
    specs: list[FeatureSpec] = field(default_factory=list)
    time_series: bool = False  # offsets must also be >= 0 (unit time series)
    where: str = "TRUE"
    optional_columns: dict[str, str] = field(default_factory=dict)


def _num(name, modality, unit=None, desc="", rng=None):
    return FeatureSpec(name, FeatureKind.NUMERIC, modality, unit, desc, rng)


def _bin(name, modality, desc=""):
    return FeatureSpec(name, FeatureKind.BINARY, modality, None, desc)


def _flag_group(
    modality: str,
    prefix: str,
    description: str,
    table: str,
    offset: str,
    column: str,
    count_description: str,
    count_max: float,
    flags: dict[str, tuple[str, str]],
) -> Group:
    """A group of one entry count plus one 0/1 feature per flag: {name: (SQL predicate, description)}."""
    aggs = {f"{prefix}_count": "count(*)"}
    specs = [_num(f"{prefix}_count", modality, "count", count_description, (0, count_max))]
    for name, (predicate, text) in flags.items():
        aggs[f"{prefix}_{name}"] = f"bool_or({predicate})::INTEGER"
        specs.append(_bin(f"{prefix}_{name}", modality, text))
    return Group(
        ModalitySpec(modality, ModalityKind.TABULAR, description), table, offset, aggs, {column: "VARCHAR"}, specs
    )


def _stats(modality: str, prefix: str, value_sql: str, unit: str | None, desc: str) -> tuple[dict, list]:
    aggs = {
        f"{prefix}_last": f"arg_max({value_sql}, offset_min)",
        f"{prefix}_min": f"min({value_sql})",
        f"{prefix}_max": f"max({value_sql})",
    }
    specs = [_num(name, modality, unit, f"{desc}: {name.rsplit('_', 1)[1]} in the first 24 h") for name in aggs]
    return aggs, specs


def event_groups() -> list[Group]:
    """The streamed event-table modalities (definitions only; whether each table exists is checked at build)."""
    groups = []

    m = "vitals_aperiodic"
    aggs, specs = (
        {"nibp_count": "count(*)"},
        [_num("nibp_count", m, "count", "Non-invasive BP readings in the first 24 h", (0, 1e5))],
    )
    for column, label in (
        ("noninvasivesystolic", "nibp_sys"),
        ("noninvasivediastolic", "nibp_dia"),
        ("noninvasivemean", "nibp_mean"),
    ):
        a, s = _stats(m, label, column, "mmHg", f"Non-invasive BP ({column})")
        aggs.update(a)
        specs += s
    groups.append(
        Group(
            ModalitySpec(m, ModalityKind.TABULAR, "Aperiodic (non-invasive) vital signs charted"),
            "vitalaperiodic",
            "observationoffset",
            aggs,
            {"noninvasivesystolic": "DOUBLE", "noninvasivediastolic": "DOUBLE", "noninvasivemean": "DOUBLE"},
            specs,
            time_series=True,
        )
    )

    m = "intake_output"
    groups.append(
        Group(
            ModalitySpec(m, ModalityKind.TABULAR, "Intake/output charting"),
            "intakeoutput",
            "intakeoutputoffset",
            {
                "io_entries": "count(*)",
                "io_intake_ml": "coalesce(sum(cellvaluenumeric) FILTER (WHERE cellpath ILIKE '%|Intake (ml)|%'), 0)",
                "io_output_ml": "coalesce(sum(cellvaluenumeric) FILTER (WHERE cellpath ILIKE '%|Output (ml)|%'), 0)",
                "io_urine_ml": "coalesce(sum(cellvaluenumeric) FILTER (WHERE celllabel ILIKE '%urine%'), 0)",
            },
            {"cellpath": "VARCHAR", "celllabel": "VARCHAR", "cellvaluenumeric": "DOUBLE"},
            [
                _num("io_entries", m, "count", "Intake/output entries in the first 24 h", (0, 1e5)),
                _num("io_intake_ml", m, "mL", "Total charted intake in the first 24 h", (0, 1e5)),
                _num("io_output_ml", m, "mL", "Total charted output in the first 24 h", (0, 1e5)),
                _num("io_urine_ml", m, "mL", "Charted urine output in the first 24 h", (0, 1e5)),
            ],
            time_series=True,
        )
    )

    groups.append(
        _flag_group(
            "diagnoses",
            "dx",
            "Problem-list diagnoses entered",
            "diagnosis",
            "diagnosisoffset",
            "diagnosisstring",
            "Diagnoses entered by 24 h",
            1e4,
            {
                _slug(c): (f"split_part(diagnosisstring, '|', 1) = '{c}'", f"A diagnosis in category '{c}'")
                for c in DX_CATEGORIES
            },
        )
    )

    m = "admission_dx"
    groups.append(
        Group(
            ModalitySpec(m, ModalityKind.TABULAR, "APACHE admission diagnosis entered"),
            "admissiondx",
            "admitdxenteredoffset",
            {
                "admitdx_operative": "bool_or(admitdxpath ILIKE '%|Operative|%')::INTEGER",
                "admitdx_elective": "bool_or(admitdxpath ILIKE '%|Elective|Yes%')::INTEGER",
                "admitdx_count": "count(*)",
            },
            {"admitdxpath": "VARCHAR"},
            [
                _bin("admitdx_operative", m, "Operative admission diagnosis"),
                _bin("admitdx_elective", m, "Elective admission"),
                _num("admitdx_count", m, "count", "Admission diagnosis entries", (0, 1e4)),
            ],
        )
    )

    m = "medications"
    aggs = {"med_orders": "count(*)", "med_distinct": "count(DISTINCT lower(drugname))"}
    specs = [
        _num("med_orders", m, "count", "Medication orders by 24 h (not cancelled)", (0, 1e5)),
        _num("med_distinct", m, "count", "Distinct drugs ordered by 24 h", (0, 1e4)),
    ]
    for name, expression in medication_class_sql("drugname").items():
        aggs[f"med_{name}"] = f"coalesce(bool_or({expression}), false)::INTEGER"
        specs.append(_bin(f"med_{name}", m, f"A '{name}' ordered (by drug name)"))
    groups.append(
        Group(
            ModalitySpec(m, ModalityKind.TABULAR, "Medications ordered"),
            "medication",
            "drugorderoffset",
            aggs,
            {"drugname": "VARCHAR"},
            specs,
            where="coalesce(lower(drugordercancelled), 'no') <> 'yes'",
            optional_columns={"drugordercancelled": "VARCHAR"},
        )
    )

    groups.append(
        _flag_group(
            "treatments",
            "tx",
            "Treatments charted",
            "treatment",
            "treatmentoffset",
            "treatmentstring",
            "Treatments charted by 24 h",
            1e5,
            {
                _slug(c): (f"split_part(treatmentstring, '|', 1) = '{c}'", f"A treatment in category '{c}'")
                for c in TREATMENT_CATEGORIES
            },
        )
    )

    groups.append(
        _flag_group(
            "past_history",
            "hx",
            "Past medical history charted",
            "pasthistory",
            "pasthistoryoffset",
            "pasthistorypath",
            "Past-history entries by 24 h",
            1e4,
            {
                name: (
                    f"regexp_matches(lower(pasthistorypath), '{pattern}')",
                    f"Past history mentions {name.replace('_', ' ')}",
                )
                for name, pattern in HISTORY_FLAGS.items()
            },
        )
    )

    m = "respiratory"
    value = "TRY_CAST(respchartvalue AS DOUBLE)"
    groups.append(
        Group(
            ModalitySpec(m, ModalityKind.TABULAR, "Respiratory therapy charting (oxygen / ventilator settings)"),
            "respiratorycharting",
            "respchartoffset",
            {
                "resp_entries": "count(*)",
                "resp_fio2_max": f"max({value}) FILTER (WHERE respchartvaluelabel = 'FiO2')",
                "resp_peep_max": f"max({value}) FILTER (WHERE respchartvaluelabel = 'PEEP')",
                "resp_o2_lpm_max": f"max({value}) FILTER (WHERE respchartvaluelabel = 'LPM O2')",
                "resp_tidal_volume_last": f"arg_max({value}, offset_min) FILTER (WHERE respchartvaluelabel = 'Tidal Volume (set)')",
            },
            {"respchartvaluelabel": "VARCHAR", "respchartvalue": "VARCHAR"},
            [
                _num("resp_entries", m, "count", "Respiratory charting entries in the first 24 h", (0, 1e5)),
                _num("resp_fio2_max", m, "%", "Highest FiO2", (0, 100)),
                _num("resp_peep_max", m, "cmH2O", "Highest PEEP", (0, 50)),
                _num("resp_o2_lpm_max", m, "L/min", "Highest oxygen flow", (0, 100)),
                _num("resp_tidal_volume_last", m, "mL", "Last set tidal volume", (0, 3000)),
            ],
            time_series=True,
        )
    )

    m = "labs"
    aggs, specs = {"lab_count": "count(*)"}, [_num("lab_count", m, "count", "Lab results in the first 24 h", (0, 1e5))]
    for name, labname in LABS.items():
        only = f"FILTER (WHERE labname = '{labname}')"
        for stat, sql in (
            ("last", f"arg_max(labresult, offset_min) {only}"),
            ("min", f"min(labresult) {only}"),
            ("max", f"max(labresult) {only}"),
        ):
            aggs[f"lab_{name}_{stat}"] = sql
            specs.append(_num(f"lab_{name}_{stat}", m, None, f"Lab {labname}: {stat} in the first 24 h"))
    groups.append(
        Group(
            ModalitySpec(m, ModalityKind.TABULAR, "Laboratory results"),
            "lab",
            "labresultoffset",
            aggs,
            {"labname": "VARCHAR", "labresult": "DOUBLE"},
            specs,
            time_series=True,
        )
    )

    m = "vitals_periodic"
    aggs, specs = (
        {"vp_count": "count(*)"},
        [_num("vp_count", m, "count", "Periodic vital rows in the first 24 h", (0, 1e6))],
    )
    for column in PERIODIC:
        a, s = _stats(m, f"vp_{column}", column, None, f"Periodic {column}")
        aggs.update(a)
        specs += s
    groups.append(
        Group(
            ModalitySpec(m, ModalityKind.TABULAR, "Periodic (monitor) vital signs"),
            "vitalperiodic",
            "observationoffset",
            aggs,
            {c: "DOUBLE" for c in PERIODIC},
            specs,
            time_series=True,
        )
    )

    m = "nurse_charting"
    groups.append(
        Group(
            ModalitySpec(m, ModalityKind.TABULAR, "Nurse flowsheet charting"),
            "nursecharting",
            "nursingchartoffset",
            {
                "nc_entries": "count(*)",
                "nc_gcs_min": "min(TRY_CAST(nursingchartvalue AS DOUBLE)) FILTER (WHERE nursingchartcelltypevalname = 'GCS Total')",
            },
            {"nursingchartcelltypevalname": "VARCHAR", "nursingchartvalue": "VARCHAR"},
            [
                _num("nc_entries", m, "count", "Nurse charting entries in the first 24 h", (0, 1e6)),
                _num("nc_gcs_min", m, "points", "Lowest charted GCS total", (3, 15)),
            ],
            time_series=True,
        )
    )
    return groups


ADMISSION_MODALITY = ModalitySpec(
    "admission", ModalityKind.TABULAR, "Demographics and admission fields of the unit stay"
)
APACHE_MODALITY = ModalitySpec(
    "apache_aps", ModalityKind.TABULAR, "APACHE IV day-1 physiology variables (scored stays only)"
)


def admission_specs(patient: pd.DataFrame) -> list[FeatureSpec]:
    m = "admission"
    specs = [
        _num("age", m, "years", "Age ('> 89' coded as 90)", (0, 120)),
        _num("height_cm", m, "cm", "Admission height", (50, 250)),
        _num("weight_kg", m, "kg", "Admission weight", (10, 400)),
        _num("hours_in_hospital_before_unit", m, "hours", "Hospital time before the unit admission", (0, 1e5)),
    ]
    for column in ("gender", "ethnicity", "unittype", "unitadmitsource", "unitstaytype", "hospitaladmitsource"):
        categories = tuple(sorted(patient[column].dropna().unique())) or ("unknown",)
        specs.append(
            FeatureSpec(
                column, FeatureKind.CATEGORICAL, m, None, f"{column} (categories seen in this source)", None, categories
            )
        )
    specs.append(_num("unitvisitnumber", m, "count", "Which unit stay of the hospital stay this is", (1, 100)))
    return specs


def admission_features(patient: pd.DataFrame) -> pd.DataFrame:
    age = patient["age"].replace({"> 89": "90"})
    out = pd.DataFrame(
        {
            "age": pd.to_numeric(age, errors="coerce"),
            "height_cm": patient["admissionheight"],
            "weight_kg": patient["admissionweight"],
            "hours_in_hospital_before_unit": (-patient["hospitaladmitoffset"] / 60).clip(lower=0),
            "unitvisitnumber": patient["unitvisitnumber"],
        }
    )
    for column in ("gender", "ethnicity", "unittype", "unitadmitsource", "unitstaytype", "hospitaladmitsource"):
        out[column] = patient[column]
    return out.reset_index(drop=True)


def apache_specs() -> list[FeatureSpec]:
    m = "apache_aps"
    return [_bin(f"aps_{c}", m, f"APACHE day-1 {c}") for c in APS_BINARY] + [
        _num(f"aps_{c}", m, None, f"APACHE day-1 worst {c} (-1 sentinel is null)") for c in APS_NUMERIC
    ]


def labels(patient: pd.DataFrame) -> dict[str, pd.Series]:
    status = patient["hospitaldischargestatus"]
    mortality = status.map({"Expired": 1, "Alive": 0})
    later_readmit = set()
    ordered = patient.sort_values(["patienthealthsystemstayid", "unitvisitnumber"])
    for _, stays in ordered.groupby("patienthealthsystemstayid"):
        visits = stays["unitvisitnumber"].to_numpy()
        readmit = (stays["unitstaytype"] == "readmit").to_numpy()
        for sid, visit in zip(stays["patientunitstayid"], visits):
            if (readmit & (visits > visit)).any():
                later_readmit.add(sid)
    readmission = patient["patientunitstayid"].isin(later_readmit).astype(int)
    readmission = readmission.where(patient["unitdischargestatus"] == "Alive")
    return {
        "hospital_mortality": mortality.reset_index(drop=True),
        "icu_readmission": readmission.reset_index(drop=True),
    }


def reference_score(folder: Path, stays: pd.Series) -> pd.Series:
    """APACHE IVa predicted hospital mortality (IV when IVa is missing); -1 (not computed) is null."""
    path = find_table(folder, "apachepatientresult", required=False)
    if path is None:
        warn(f"{folder}/apachepatientresult is absent: the APACHE reference score is null for every stay")
        return pd.Series(np.nan, index=range(len(stays)))
    table = read_small(
        path,
        required=["patientunitstayid", "apacheversion", "predictedhospitalmortality"],
        numeric=["patientunitstayid", "predictedhospitalmortality"],
        not_null=["patientunitstayid"],
    )
    table = table[table["predictedhospitalmortality"] >= 0]
    table = table.assign(rank=(table["apacheversion"] != "IVa").astype(int)).sort_values(["patientunitstayid", "rank"])
    best = table.drop_duplicates("patientunitstayid").set_index("patientunitstayid")["predictedhospitalmortality"]
    return stays.map(best).reset_index(drop=True).astype(float)


def read_patients(folder: Path) -> pd.DataFrame:
    path = find_table(folder, "patient")
    patient = read_small(
        path,
        required=[
            "patientunitstayid",
            "patienthealthsystemstayid",
            "uniquepid",
            "gender",
            "age",
            "ethnicity",
            "hospitaladmitoffset",
            "hospitaladmitsource",
            "hospitaldischargestatus",
            "unittype",
            "unitadmitsource",
            "unitvisitnumber",
            "unitstaytype",
            "admissionheight",
            "admissionweight",
            "unitdischargestatus",
        ],
        optional=["hospitalid"],
        numeric=[
            "patientunitstayid",
            "patienthealthsystemstayid",
            "hospitaladmitoffset",
            "unitvisitnumber",
            "admissionheight",
            "admissionweight",
            "hospitalid",
        ],
        not_null=["patientunitstayid", "patienthealthsystemstayid", "uniquepid"],
    )
    if patient["patientunitstayid"].duplicated().any():
        raise LoaderError(path, "patientunitstayid", "is not unique; patient has one row per unit stay")
    patient["hospitalid"] = pd.to_numeric(patient["hospitalid"]).astype("Int64")  # absent column: all null
    return patient.sort_values("patientunitstayid").reset_index(drop=True)


def apache_features(engine: Engine, folder: Path, stays: pd.Series) -> pd.DataFrame | None:
    path = find_table(folder, "apacheapsvar", required=False)
    if path is None:
        warn(f"{folder}/apacheapsvar is absent: modality apache_aps is left out")
        return None
    columns = {"patientunitstayid": "BIGINT", **{c: "DOUBLE" for c in APS_BINARY + APS_NUMERIC}}
    select = ", ".join(f"max(CASE WHEN {c} < 0 THEN NULL ELSE {c} END) AS aps_{c}" for c in APS_BINARY + APS_NUMERIC)
    found = engine.query(
        f"SELECT patientunitstayid, {select} FROM {engine.scan(path, columns)} GROUP BY 1", path
    ).set_index("patientunitstayid")
    return pd.DataFrame({c: stays.map(found[c]).to_numpy() for c in found.columns})


def group_features(engine: Engine, path: Path, group: Group, stays: pd.Series) -> tuple[pd.DataFrame, float]:
    """Aggregates per stay of one event table within the window; stays without rows stay null."""
    columns = {"patientunitstayid": "BIGINT", group.offset: "BIGINT", **group.columns}
    source = engine.scan(path, columns, group.optional_columns)
    lower = f"AND {group.offset} >= 0" if group.time_series else ""
    aggs = ", ".join(f"{sql} AS {name}" for name, sql in group.aggregates.items())
    found = engine.query(
        f"""SELECT patientunitstayid, {aggs}, max(offset_min) AS latest_offset
            FROM (SELECT *, {group.offset} AS offset_min FROM {source}) t
            WHERE patientunitstayid IN (SELECT stay FROM stays) AND {group.offset} <= {WINDOW_MINUTES} {lower} AND {group.where}
            GROUP BY patientunitstayid""",
        path,
    ).set_index("patientunitstayid")
    frame = pd.DataFrame({name: stays.map(found[name]).to_numpy(dtype=float) for name in group.aggregates})
    latest = float(found["latest_offset"].max()) if len(found) else float("-inf")
    return frame, latest


def split_rows(patient: pd.DataFrame, split_by: str, seed: int, path: Path) -> tuple[np.ndarray | None, dict]:
    """(splits or None for the default person hash, the scheme recorded in the manifest)."""
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by {split_by!r} (accepted: {', '.join(SPLIT_BY)})")
    if split_by == "patient":
        return None, {
            "by": "patient",
            "column": "uniquepid",
            "seed": seed,
            "fractions": dict(zip(("train", "val", "test"), SPLIT_FRACTIONS)),
        }
    if patient["hospitalid"].isna().all():
        raise LoaderError(
            path, "hospitalid", "is missing or empty; --split-by hospital needs the patient table's hospitalid"
        )
    return split_by_hospital(patient["hospitalid"].tolist(), patient["uniquepid"].tolist(), seed)


def build(
    root: str | Path,
    out: str | Path,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int = 2,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    split_by: str = "patient",
) -> Path:
    folder = Path(root)
    if split_by not in SPLIT_BY:  # before any work
        raise ValueError(f"split_by {split_by!r} (accepted: {', '.join(SPLIT_BY)})")
    groups = event_groups()
    stage_names = ["patients + labels", "apache", *[g.table for g in groups], "write"]
    with Stages("eicu", stage_names, enabled=progress) as stages, Engine(memory_limit, threads) as engine:
        stages.next()
        patient = read_patients(folder)
        splits, split_scheme = split_rows(patient, split_by, seed, find_table(folder, "patient"))
        stays = patient["patientunitstayid"]
        engine.register("stays", pd.DataFrame({"stay": stays.astype("int64")}))
        label_values = labels(patient)
        modalities, specs, parts = [ADMISSION_MODALITY], admission_specs(patient), [admission_features(patient)]

        stages.next()
        aps = apache_features(engine, folder, stays)
        if aps is not None:
            modalities.append(APACHE_MODALITY)
            specs += apache_specs()
            parts.append(aps)

        latest_offsets, used, absent = {}, [], []
        for group in groups:
            stages.next()
            path = find_table(folder, group.table, required=False)
            if path is None:
                absent.append(group.table)
                warn(f"{folder}/{group.table}.csv.gz is absent: modality {group.modality.name!r} is left out")
                continue
            frame, latest_offsets[group.modality.name] = group_features(engine, path, group, stays)
            modalities.append(group.modality)
            specs += group.specs
            parts.append(frame)
            used.append(group.table)
        late = {name: offset for name, offset in latest_offsets.items() if offset > WINDOW_MINUTES}
        if late:
            raise RuntimeError(f"eICU inputs timed after the 24 h window reached the features: {late}")

        stages.next()
        structured = pd.concat(parts, axis=1)
        manifest = Manifest(
            name="eicu-first-24h",
            description="eICU-CRD unit stays; features from the first 24 h of the unit stay",
            modalities=modalities,
            features=specs,
            outcomes=list(OUTCOMES),
            reference_scores=[
                ReferenceScore(
                    "apache_iva_hospital_mortality",
                    "hospital_mortality",
                    "APACHE IVa predicted hospital mortality (apachepatientresult), for comparison only",
                )
            ],
            provenance={
                "source": "eICU Collaborative Research Database",
                "root": str(folder.resolve()),
                "licence": "as the source: PhysioNet Credentialed Health Data License (ODbL for the public demo)",
                "generator": "mmnar_core.loaders.eicu",
                "window": "offset <= 1440 min (>= 0 for time series)",
                "tables_used": ["patient", "apacheapsvar", *used],
                "tables_absent": absent,
                "seed": seed,
                "split": split_scheme,
            },
        )
        ids = pd.DataFrame({"patient_id": stays.astype(str), "group_id": patient["uniquepid"].astype(str)})
        extra = {"patienthealthsystemstayid": patient["patienthealthsystemstayid"].astype("int64")}
        if patient["hospitalid"].notna().any():
            extra["hospitalid"] = patient["hospitalid"]
        return write_dataset(
            Path(out),
            manifest,
            ids,
            structured,
            label_values,
            references={"apache_iva_hospital_mortality": reference_score(folder, stays)},
            extra_columns=extra,
            seed=seed,
            overwrite=overwrite,
            splits=splits,
        )
