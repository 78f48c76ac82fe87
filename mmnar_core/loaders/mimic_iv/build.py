"""`build mimic-iv`: default post-discharge cohort -> canonical dataset.

Stages: core tables and cohort -> labels -> structured features (streamed) -> notes -> CXR -> window
check -> write. Each input's latest timestamp is checked against its modality's window before anything is
written, so a bug that let post-discharge data in fails the build instead of leaking silently.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mmnar_core.dataset import Manifest
from mmnar_core.loaders.duck import DEFAULT_MEMORY_LIMIT, Engine
from mmnar_core.loaders.mimic_iv import cohort as cohort_mod
from mmnar_core.loaders.mimic_iv import cxr as cxr_mod
from mmnar_core.loaders.mimic_iv import features as feat
from mmnar_core.loaders.mimic_iv import notes as notes_mod
from mmnar_core.loaders.output import Stages, warn, write_dataset
from mmnar_core.loaders.tables import LoaderError, find_table
from mmnar_core.schema import MIMIC_STYLE_MODALITIES

STAGES = (
    "cohort",
    "labels",
    "admission + ICU",
    "diagnoses + procedures",
    "prescriptions",
    "labs",
    "vitals",
    "discharge notes",
    "radiology reports",
    "chest X-rays",
    "window check",
    "write",
)


class LeakageError(RuntimeError):
    """An input timed after its modality's window reached the features: a loader bug, never data."""


def build(
    root: str | Path,
    out: str | Path,
    note_root: str | Path | None = None,
    cxr_root: str | Path | None = None,
    cxr_embeddings: str | Path | None = None,
    cxr_max_side: int = 512,
    max_reports: int = 3,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int = 2,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    root = Path(root)
    hosp, icu = root / "hosp", root / "icu"
    if not hosp.is_dir():
        raise LoaderError(hosp, "(folder)", "a MIMIC-IV root must contain hosp/ (and icu/)")
    note_root = Path(note_root) if note_root else root / "note"
    cxr_root = Path(cxr_root) if cxr_root else root / "cxr"

    with Stages("mimic-iv", STAGES, enabled=progress) as stages, Engine(memory_limit, threads) as engine:
        stages.next()
        admissions = cohort_mod.read_admissions(hosp)
        patients = cohort_mod.read_patients(hosp)
        icustays = cohort_mod.read_icustays(icu if icu.is_dir() else None)
        cohort = cohort_mod.index_admissions(admissions, patients)
        engine.register("cohort", cohort[["subject_id", "hadm_id", "admittime", "dischtime", "prediction_time"]])

        stages.next()
        labels = cohort_mod.labels(cohort, admissions, icustays)

        stages.next()
        latest: dict[str, list[pd.Series]] = {"structured": [], "discharge_note": [], "radiology_report": [], "cxr": []}
        parts = [feat.admission_features(cohort)]
        icu_part, icu_latest = feat.icu_features(cohort, icustays)
        parts.append(icu_part)
        latest["structured"].append(cohort["hadm_id"].map(icu_latest))

        stages.next()
        parts.append(feat.diagnosis_features(engine, _optional(hosp, "diagnoses_icd"), cohort))
        proc_part, proc_latest = feat.procedure_features(engine, _optional(hosp, "procedures_icd"), cohort)
        parts.append(proc_part)
        # chartdate is a date: its latest possible moment is the end of that day, compared with the date of discharge
        latest_proc = pd.to_datetime(cohort["hadm_id"].map(proc_latest))
        if (latest_proc.dt.normalize() > cohort["dischtime"].dt.normalize()).any():
            raise LeakageError("procedures_icd: a procedure dated after the index discharge reached the features")

        stages.next()
        med_part, med_latest = feat.medication_features(engine, _optional(hosp, "prescriptions"), cohort)
        parts.append(med_part)
        latest["structured"].append(cohort["hadm_id"].map(med_latest))

        stages.next()
        lab_part, lab_latest = feat.lab_features(engine, find_table(hosp, "labevents"), cohort)
        parts.append(lab_part)
        latest["structured"].append(cohort["hadm_id"].map(lab_latest))

        stages.next()
        chartevents = find_table(icu, "chartevents", required=False) if icu.is_dir() else None
        if chartevents is None:
            warn(f"{icu}/chartevents.csv.gz is absent: ICU vital features are null (unknown) for every patient")
            parts.append(feat.absent_measures(cohort, "vital", feat.VITALS))
        else:
            vital_part, vital_latest = feat.vital_features(engine, chartevents, cohort)
            parts.append(vital_part)
            latest["structured"].append(cohort["hadm_id"].map(vital_latest))
        structured = pd.concat(parts, axis=1)

        stages.next()
        texts = {}
        discharge = find_table(note_root, "discharge", required=False)
        radiology = find_table(note_root, "radiology", required=False)
        if discharge is None and radiology is None:
            warn(
                f"no MIMIC-IV-Note tables in {note_root}: discharge_note and radiology_report are absent for every patient"
            )
        if discharge is not None:
            texts["discharge_note"], when = notes_mod.discharge_notes(engine, discharge, cohort)
            latest["discharge_note"].append(when)
        stages.next()
        if radiology is not None:
            texts["radiology_report"], when = notes_mod.radiology_reports(engine, radiology, cohort, max_reports)
            latest["radiology_report"].append(when)

        stages.next()
        images, source = {}, None
        if find_table(cxr_root, cxr_mod.METADATA_TABLE, required=False) is not None:
            embeddings = cxr_mod.read_embeddings(Path(cxr_embeddings)) if cxr_embeddings else None
            source = cxr_mod.CxrSource(cxr_root, cxr_max_side, embeddings)
            chosen = cxr_mod.select_images(cxr_mod.read_metadata(cxr_root), cohort)
            images["cxr"] = source.reference(chosen, cohort)
            latest["cxr"].append(images["cxr"].map(lambda r: r["study_time"] if isinstance(r, dict) else pd.NaT))
        else:
            warn(f"no {cxr_mod.METADATA_TABLE}.csv[.gz] in {cxr_root}: cxr is absent for every patient")

        stages.next()
        check_windows(cohort, latest)

        stages.next()
        manifest = Manifest(
            name="mimic-iv-post-discharge",
            description="MIMIC-IV first adult admissions discharged alive; prediction at index discharge",
            modalities=list(MIMIC_STYLE_MODALITIES),
            features=feat.feature_specs(),
            outcomes=list(cohort_mod.OUTCOMES),
            provenance={
                "source": "MIMIC-IV (hosp, icu) + optional MIMIC-IV-Note and MIMIC-CXR-JPG",
                "root": str(root.resolve()),
                "note_root": str(note_root) if (discharge or radiology) else None,
                "cxr_root": str(cxr_root) if source else None,
                "licence": "as the source: PhysioNet Credentialed Health Data License (ODbL for the public demo)",
                "generator": "mmnar_core.loaders.mimic_iv",
                "cohort": {
                    "subjects": int(admissions["subject_id"].nunique()),
                    "kept": int(len(cohort)),
                    "rule": "first admission by admittime; drop hospital_expire_flag = 1 or age < 18",
                },
                "windows": {
                    "structured": "index admission, events timed <= dischtime",
                    "discharge_note": "same hadm_id, charttime in [admittime, dischtime + 24 h]",
                    "radiology_report": "same subject, charttime in [admittime - 6 h, dischtime]",
                    "cxr": "frontal (PA/AP), study time in [admittime - 6 h, dischtime]",
                },
                "options": {"cxr_max_side": cxr_max_side, "max_reports": max_reports, "seed": seed},
            },
        )
        ids = pd.DataFrame(
            {
                "patient_id": [f"{s}_{h}" for s, h in zip(cohort["subject_id"], cohort["hadm_id"])],
                "group_id": cohort["subject_id"].astype(str),
            }
        )
        extra = {
            "subject_id": cohort["subject_id"].astype("int64"),
            "hadm_id": cohort["hadm_id"].astype("int64"),
            "prediction_time": cohort["prediction_time"],
        }
        return write_dataset(
            Path(out),
            manifest,
            ids,
            structured.reset_index(drop=True),
            {k: pd.Series(v) for k, v in labels.items()},
            texts=texts,
            images=images,
            image_bytes=source.image_bytes if source else None,
            extra_columns=extra,
            seed=seed,
            overwrite=overwrite,
        )


def _optional(folder: Path, name: str) -> Path | None:
    path = find_table(folder, name, required=False)
    if path is None:
        warn(f"{folder}/{name}.csv.gz is absent: its features are null (unknown) for every patient")
    return path


def window_ends(cohort: pd.DataFrame) -> dict[str, pd.Series]:
    """The last moment each modality may be timed at, per cohort row."""
    return {
        "structured": cohort["prediction_time"],
        "discharge_note": cohort["dischtime"] + notes_mod.DISCHARGE_AFTER,
        "radiology_report": cohort["dischtime"],
        "cxr": cohort["dischtime"],
    }


def check_windows(cohort: pd.DataFrame, latest: dict[str, list[pd.Series]]) -> None:
    ends = window_ends(cohort)
    for modality, series_list in latest.items():
        for series in series_list:
            times = pd.to_datetime(pd.Series(series).reset_index(drop=True))
            late = times > ends[modality].reset_index(drop=True)
            if late.any():
                row = int(late.to_numpy().argmax())
                raise LeakageError(
                    f"{modality}: subject {cohort['subject_id'].iloc[row]} has an input timed {times.iloc[row]} after "
                    f"its window end {ends[modality].iloc[row]}"
                )
