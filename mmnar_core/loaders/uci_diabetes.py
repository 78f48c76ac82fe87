"""`build uci-diabetes`: UCI "Diabetes 130-US hospitals 1999-2008" (diabetic_data.csv[.gz] +
IDs_mapping.csv) -> canonical dataset.

One row per encounter (patient_id = encounter_id, group_id = patient_nbr, so a patient never spans
splits). Encounters discharged to death or hospice are excluded (they cannot be readmitted). Label:
readmission_30d = readmitted == '<30'.

Modalities: `encounter` (demographics, admission fields, utilisation counts, diagnoses, diabetes
medications) and three clinician decisions whose absence is informative: `a1c_test` (A1C ordered),
`glucose_test` (max glucose serum ordered) and `weight` (weight charted; recorded for ~3% of encounters).
'?' and blank mean not recorded (null), never a category.
"""

from __future__ import annotations

import csv
import zlib
from pathlib import Path

import pandas as pd

from mmnar_core.dataset import Manifest
from mmnar_core.loaders.codes import DIAGNOSIS_GROUPS, icd9_group
from mmnar_core.loaders.output import Stages, write_dataset
from mmnar_core.loaders.tables import LoaderError, check_values, find_table, read_header
from mmnar_core.schema import FeatureKind, FeatureSpec, ModalityKind, ModalitySpec, OutcomeSpec

# discharge_disposition_id values meaning death or hospice (IDs_mapping.csv): 11 expired, 13/14 hospice,
# 19/20/21 expired (Medicaid hospice)
EXCLUDED_DISPOSITIONS = {"11", "13", "14", "19", "20", "21"}
MEDICATIONS = (
    "metformin",
    "repaglinide",
    "nateglinide",
    "chlorpropamide",
    "glimepiride",
    "acetohexamide",
    "glipizide",
    "glyburide",
    "tolbutamide",
    "pioglitazone",
    "rosiglitazone",
    "acarbose",
    "miglitol",
    "troglitazone",
    "tolazamide",
    "examide",
    "citoglipton",
    "insulin",
    "glyburide-metformin",
    "glipizide-metformin",
    "glimepiride-pioglitazone",
    "metformin-rosiglitazone",
    "metformin-pioglitazone",
)
AGE_BANDS = tuple(f"[{10 * i}-{10 * (i + 1)})" for i in range(10))
WEIGHT_BANDS = tuple(f"[{25 * i}-{25 * (i + 1)})" for i in range(8)) + (">200",)
COUNTS = (
    "time_in_hospital",
    "num_lab_procedures",
    "num_procedures",
    "num_medications",
    "number_outpatient",
    "number_emergency",
    "number_inpatient",
    "number_diagnoses",
)
MISSING = {"?", "", "None", "NULL", "Not Available", "Not Mapped", "Unknown/Invalid"}
ID_SECTIONS = ("admission_type_id", "discharge_disposition_id", "admission_source_id")

OUTCOME = OutcomeSpec(
    "readmission_30d",
    "Readmission within 30 days",
    "readmitted == '<30' (the published label)",
    anchor="encounter discharge",
    window_days=(0, 30),
    defined_for="encounters not discharged to death or hospice",
)
MODALITIES = (
    ModalitySpec(
        "encounter",
        ModalityKind.TABULAR,
        "Demographics, admission fields, utilisation, diagnoses, diabetes medications",
    ),
    ModalitySpec("a1c_test", ModalityKind.TABULAR, "HbA1c result, present only when the test was ordered"),
    ModalitySpec("glucose_test", ModalityKind.TABULAR, "Max glucose serum result, present only when ordered"),
    ModalitySpec("weight", ModalityKind.TABULAR, "Body weight band, present only when charted"),
)


def read_id_mapping(path: Path) -> dict[str, dict[str, str]]:
    """IDs_mapping.csv holds three small tables one after another, separated by blank lines."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if not row or not any(cell.strip() for cell in row):
                current = None
                continue
            if current is None:
                current = row[0].strip()
                sections[current] = {}
                continue
            sections[current][row[0].strip()] = row[1].strip() if len(row) > 1 else ""
    for name in ID_SECTIONS:
        if name not in sections:
            raise LoaderError(
                path, name, "section is missing (expected three sections: " + ", ".join(ID_SECTIONS) + ")"
            )
    return sections


def read_table(folder: Path) -> pd.DataFrame:
    path = find_table(folder, "diabetic_data")
    header = read_header(path)
    required = [
        "encounter_id",
        "patient_nbr",
        "race",
        "gender",
        "age",
        "weight",
        *ID_SECTIONS,
        *COUNTS,
        "payer_code",
        "medical_specialty",
        "diag_1",
        "diag_2",
        "diag_3",
        "max_glu_serum",
        "A1Cresult",
        *MEDICATIONS,
        "change",
        "diabetesMed",
        "readmitted",
    ]
    for column in required:
        if column not in header:
            raise LoaderError(path, column, f"required column is missing (the file has: {', '.join(header)})")
    try:
        frame = pd.read_csv(path, usecols=required, dtype=str, keep_default_na=False)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise LoaderError(path, "(content)", f"cannot be read: corrupt or truncated file ({error})") from None
    for column in ("encounter_id", "patient_nbr", *COUNTS):
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            row = int(values.isna().to_numpy().argmax())
            raise LoaderError(path, column, f"value {frame[column].iloc[row]!r} on data row {row + 1} is not a number")
    check_values(path, "readmitted", frame["readmitted"], {"<30", ">30", "NO"})
    if frame["encounter_id"].duplicated().any():
        raise LoaderError(path, "encounter_id", "is not unique")
    frame.attrs["path"] = str(path)
    return frame


def feature_specs(mapping: dict[str, dict[str, str]], frame: pd.DataFrame) -> list[FeatureSpec]:
    e = "encounter"
    specs = [
        FeatureSpec("age_band", FeatureKind.CATEGORICAL, e, "years", "Age band", None, AGE_BANDS),
        FeatureSpec("gender", FeatureKind.CATEGORICAL, e, None, "Gender", None, ("Female", "Male")),
        FeatureSpec(
            "race",
            FeatureKind.CATEGORICAL,
            e,
            None,
            "Race",
            None,
            ("AfricanAmerican", "Asian", "Caucasian", "Hispanic", "Other"),
        ),
    ]
    for section in ID_SECTIONS:
        values = {v for k, v in mapping[section].items() if v not in MISSING and v != ""}
        values |= set(_describe(frame[section], mapping[section]).dropna())
        specs.append(
            FeatureSpec(
                section.removesuffix("_id"),
                FeatureKind.CATEGORICAL,
                e,
                None,
                f"{section} (IDs_mapping.csv description)",
                None,
                tuple(sorted(values)),
            )
        )
    for column in COUNTS:
        specs.append(
            FeatureSpec(
                column,
                FeatureKind.NUMERIC,
                e,
                "days" if column == "time_in_hospital" else "count",
                column.replace("_", " "),
                (0, 1000),
            )
        )
    for column in ("payer_code", "medical_specialty"):
        cats = tuple(sorted(set(frame[column]) - MISSING))
        specs.append(
            FeatureSpec(
                column, FeatureKind.CATEGORICAL, e, None, f"{column} (null: not recorded)", None, cats or ("unknown",)
            )
        )
    specs += [
        FeatureSpec(f"dx_{g}", FeatureKind.BINARY, e, None, f"A diagnosis (diag_1..3) in ICD-9 group '{g}'")
        for g in DIAGNOSIS_GROUPS
    ]
    specs.append(FeatureSpec("dx_diabetes_primary", FeatureKind.BINARY, e, None, "diag_1 is diabetes (ICD-9 250.x)"))
    for med in MEDICATIONS:
        specs.append(
            FeatureSpec(
                f"med_{med.replace('-', '_')}",
                FeatureKind.CATEGORICAL,
                e,
                None,
                f"{med}: No / Steady / Up / Down",
                None,
                ("No", "Steady", "Up", "Down"),
            )
        )
    specs += [
        FeatureSpec("med_change", FeatureKind.BINARY, e, None, "Diabetes medication changed"),
        FeatureSpec("diabetes_med", FeatureKind.BINARY, e, None, "Any diabetes medication prescribed"),
        FeatureSpec(
            "a1c_result", FeatureKind.CATEGORICAL, "a1c_test", None, "HbA1c result", None, ("Norm", ">7", ">8")
        ),
        FeatureSpec(
            "max_glu_serum",
            FeatureKind.CATEGORICAL,
            "glucose_test",
            "mg/dL",
            "Max glucose serum",
            None,
            ("Norm", ">200", ">300"),
        ),
        FeatureSpec("weight_band", FeatureKind.CATEGORICAL, "weight", "lb", "Weight band", None, WEIGHT_BANDS),
    ]
    return specs


def _describe(ids: pd.Series, section: dict[str, str]) -> pd.Series:
    described = ids.map(section)
    return described.where(~described.isin(MISSING) & described.notna())


def features(frame: pd.DataFrame, mapping: dict[str, dict[str, str]]) -> pd.DataFrame:
    def known(column: str) -> pd.Series:
        return frame[column].where(~frame[column].isin(MISSING))

    out = {"age_band": known("age"), "gender": known("gender"), "race": known("race")}
    for section in ID_SECTIONS:
        out[section.removesuffix("_id")] = _describe(frame[section], mapping[section])
    for column in COUNTS:
        out[column] = frame[column].astype(float)
    out["payer_code"], out["medical_specialty"] = known("payer_code"), known("medical_specialty")
    groups = pd.DataFrame(
        {
            c: frame[c].map(lambda code: icd9_group(code) if code not in MISSING else None)
            for c in ("diag_1", "diag_2", "diag_3")
        }
    )
    for group in DIAGNOSIS_GROUPS:
        out[f"dx_{group}"] = (groups == group).any(axis=1).astype(int)
    out["dx_diabetes_primary"] = frame["diag_1"].str.startswith("250").astype(int)
    for med in MEDICATIONS:
        out[f"med_{med.replace('-', '_')}"] = known(med)
    out["med_change"] = (frame["change"] == "Ch").astype(int)
    out["diabetes_med"] = (frame["diabetesMed"] == "Yes").astype(int)
    out["a1c_result"], out["max_glu_serum"] = known("A1Cresult"), known("max_glu_serum")
    out["weight_band"] = known("weight")
    return pd.DataFrame(out).reset_index(drop=True)


def build(root: str | Path, out: str | Path, seed: int = 0, overwrite: bool = False, progress: bool = True) -> Path:
    folder = Path(root)
    with Stages("uci-diabetes", ["read", "cohort + label", "features", "write"], enabled=progress) as stages:
        stages.next()
        frame = read_table(folder)
        mapping = read_id_mapping(find_table(folder, "IDs_mapping"))
        stages.next()
        kept = frame[~frame["discharge_disposition_id"].isin(EXCLUDED_DISPOSITIONS)].reset_index(drop=True)
        label = (kept["readmitted"] == "<30").astype(int)
        stages.next()
        specs = feature_specs(mapping, kept)
        structured = features(kept, mapping)
        stages.next()
        manifest = Manifest(
            name="uci-diabetes-130",
            description="UCI Diabetes 130-US hospitals encounters; 30-day readmission",
            modalities=list(MODALITIES),
            features=specs,
            outcomes=[OUTCOME],
            provenance={
                "source": "UCI Diabetes 130-US hospitals 1999-2008 (Strack et al. 2014)",
                "root": str(folder.resolve()),
                "licence": "CC BY 4.0",
                "generator": "mmnar_core.loaders.uci_diabetes",
                "excluded": {"discharged to death or hospice": int(len(frame) - len(kept))},
                "seed": seed,
            },
        )
        ids = pd.DataFrame({"patient_id": kept["encounter_id"], "group_id": kept["patient_nbr"]})
        return write_dataset(
            Path(out), manifest, ids, structured, {"readmission_30d": label}, seed=seed, overwrite=overwrite
        )
