"""A tiny hand-written MIMIC-IV root (hosp/, icu/, MIMIC-IV-Note note/, MIMIC-CXR-JPG cxr/) for loader tests.

The real MIMIC-IV-Note and MIMIC-CXR are credentialed, so these files follow their published column
layouts with made-up content. Every modality has inputs inside its window and inputs just outside it
(texts marked LEAK, a lab of 9.9, a heart rate of 200, a late CXR 'd-late'); the expectations in the
tests are computed by hand from the timeline below.

Subject 1 (kept): index hadm 100, 2150-01-01 08:00 -> 2150-01-05 12:00; readmitted at exactly +30 days
  (hadm 101), ICU stay during the index stay (1 day) and one in the readmission (-> icu_90d = 1).
Subject 2 (dropped): index admission ended in death.
Subject 3 (dropped): 17 years old at the index admission.
Subject 4 (kept): readmitted at +0 days exactly (not counted); ICU at +90.0001 days (not counted);
  dod 180 days after the discharge date (counted).
Subject 5 (kept): readmitted at +30.0001 days (not counted); ICU at exactly +90 days (counted);
  dod on the discharge date (day 0, not counted).
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
from PIL import Image

T = pd.Timestamp
D = pd.Timedelta

DISCH1 = T("2150-01-05 12:00:00")
DISCH4 = T("2160-03-10 10:00:00")
DISCH5 = T("2170-06-01 09:30:00")


def _write(path: Path, rows: list[dict] | pd.DataFrame, columns: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows, columns=columns)
    for column in frame.columns:
        if pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].dt.strftime("%Y-%m-%d %H:%M:%S")
    frame.to_csv(path, index=False, compression="gzip" if path.name.endswith(".gz") else None)


ADMISSION_COLUMNS = [
    "subject_id",
    "hadm_id",
    "admittime",
    "dischtime",
    "deathtime",
    "admission_type",
    "admit_provider_id",
    "admission_location",
    "discharge_location",
    "insurance",
    "language",
    "marital_status",
    "race",
    "edregtime",
    "edouttime",
    "hospital_expire_flag",
]


def _admission(subject, hadm, admit, disch, died=0, **extra):
    row = {
        "subject_id": subject,
        "hadm_id": hadm,
        "admittime": admit,
        "dischtime": disch,
        "deathtime": disch if died else None,
        "admission_type": "EW EMER.",
        "admit_provider_id": "P1",
        "admission_location": "EMERGENCY ROOM",
        "discharge_location": "DIED" if died else "HOME",
        "insurance": "Medicare",
        "language": "ENGLISH",
        "marital_status": "MARRIED",
        "race": "WHITE",
        "edregtime": admit - D(hours=3),
        "edouttime": admit,
        "hospital_expire_flag": died,
    }
    row.update(extra)
    return row


def write_mimic_root(root: Path, notes: bool = True, cxr: bool = True, chartevents: bool = True) -> Path:
    hosp, icu = root / "hosp", root / "icu"
    admit1 = T("2150-01-01 08:00:00")
    _write(
        hosp / "admissions.csv.gz",
        [
            _admission(1, 100, admit1, DISCH1),
            _admission(1, 101, DISCH1 + D(days=30), DISCH1 + D(days=33)),
            _admission(2, 200, T("2140-01-01 00:00"), T("2140-01-03 00:00"), died=1),
            _admission(2, 201, T("2140-01-10 00:00"), T("2140-01-12 00:00")),
            _admission(3, 300, T("2152-05-01 00:00"), T("2152-05-02 00:00")),
            _admission(
                4, 400, T("2160-03-01 10:00"), DISCH4, race="BLACK/AFRICAN AMERICAN", insurance="Medicaid", language="?"
            ),
            _admission(4, 401, DISCH4, DISCH4 + D(days=2)),
            _admission(5, 500, T("2170-05-20 09:30"), DISCH5, admission_type="NEW TYPE"),
            _admission(5, 501, DISCH5 + D(days=30.0001), DISCH5 + D(days=35)),
        ],
        ADMISSION_COLUMNS,
    )
    _write(
        hosp / "patients.csv.gz",
        [
            {
                "subject_id": 1,
                "gender": "F",
                "anchor_age": 60,
                "anchor_year": 2150,
                "anchor_year_group": "2011 - 2013",
                "dod": None,
            },
            {
                "subject_id": 2,
                "gender": "M",
                "anchor_age": 70,
                "anchor_year": 2140,
                "anchor_year_group": "2011 - 2013",
                "dod": "2140-01-03",
            },
            {
                "subject_id": 3,
                "gender": "M",
                "anchor_age": 15,
                "anchor_year": 2150,
                "anchor_year_group": "2011 - 2013",
                "dod": None,
            },
            {
                "subject_id": 4,
                "gender": "M",
                "anchor_age": 50,
                "anchor_year": 2160,
                "anchor_year_group": "2011 - 2013",
                "dod": (DISCH4.normalize() + D(days=180)).strftime("%Y-%m-%d"),
            },
            {
                "subject_id": 5,
                "gender": "F",
                "anchor_age": 80,
                "anchor_year": 2170,
                "anchor_year_group": "2011 - 2013",
                "dod": DISCH5.strftime("%Y-%m-%d"),
            },
        ],
    )
    _write(
        hosp / "d_labitems.csv.gz",
        [
            {"itemid": 50912, "label": "Creatinine", "fluid": "Blood", "category": "Chemistry"},
            {"itemid": 50983, "label": "Sodium", "fluid": "Blood", "category": "Chemistry"},
        ],
    )

    def lab(i, s, h, item, t, v, u="mg/dL"):
        return {
            "labevent_id": i,
            "subject_id": s,
            "hadm_id": h,
            "specimen_id": i,
            "itemid": item,
            "order_provider_id": None,
            "charttime": t,
            "storetime": t,
            "value": str(v),
            "valuenum": v,
            "valueuom": u,
            "ref_range_lower": None,
            "ref_range_upper": None,
            "flag": None,
            "priority": "ROUTINE",
            "comments": None,
        }

    _write(
        hosp / "labevents.csv.gz",
        [
            lab(1, 1, 100, 50912, T("2150-01-02 06:00"), 1.0),
            lab(2, 1, 100, 50912, T("2150-01-04 06:00"), 2.0),
            lab(3, 1, 100, 50912, DISCH1 + D(seconds=1), 9.9),  # after discharge: must not count
            lab(4, 1, 101, 50912, DISCH1 + D(days=31), 7.7),  # readmission: must not count
            lab(5, 1, 100, 50912, T("2150-01-03 06:00"), 88.0, "umol/L"),  # other unit: left out
            lab(6, 1, 100, 50983, DISCH1, 140.0, "mEq/L"),  # exactly at the prediction time: counts
            lab(7, 4, 400, 50983, T("2160-03-02 10:00"), 131.0, "mEq/L"),
        ],
    )
    _write(
        hosp / "diagnoses_icd.csv.gz",
        [
            {"subject_id": 1, "hadm_id": 100, "seq_num": 1, "icd_code": "I509", "icd_version": 10},
            {"subject_id": 1, "hadm_id": 100, "seq_num": 2, "icd_code": "25000", "icd_version": 9},
            {"subject_id": 1, "hadm_id": 101, "seq_num": 1, "icd_code": "J189", "icd_version": 10},
        ],
    )
    _write(
        hosp / "procedures_icd.csv.gz",
        [
            {
                "subject_id": 1,
                "hadm_id": 100,
                "seq_num": 1,
                "chartdate": "2150-01-03",
                "icd_code": "0BH17EZ",
                "icd_version": 10,
            },
            {
                "subject_id": 1,
                "hadm_id": 100,
                "seq_num": 2,
                "chartdate": "2150-01-10",
                "icd_code": "0BH17EZ",
                "icd_version": 10,
            },
        ],
    )
    _write(
        hosp / "prescriptions.csv.gz",
        [
            {
                "subject_id": 1,
                "hadm_id": 100,
                "pharmacy_id": 1,
                "starttime": T("2150-01-02 09:00"),
                "stoptime": None,
                "drug": "Insulin Glargine",
            },
            {
                "subject_id": 1,
                "hadm_id": 100,
                "pharmacy_id": 2,
                "starttime": DISCH1 + D(hours=1),
                "stoptime": None,
                "drug": "Heparin",
            },
        ],
    )
    _write(
        icu / "icustays.csv.gz",
        [
            {
                "subject_id": 1,
                "hadm_id": 100,
                "stay_id": 1000,
                "first_careunit": "MICU",
                "last_careunit": "MICU",
                "intime": T("2150-01-02 08:00"),
                "outtime": T("2150-01-03 08:00"),
                "los": 1.0,
            },
            {
                "subject_id": 1,
                "hadm_id": 101,
                "stay_id": 1001,
                "first_careunit": "MICU",
                "last_careunit": "MICU",
                "intime": DISCH1 + D(days=31),
                "outtime": DISCH1 + D(days=32),
                "los": 1.0,
            },
            {
                "subject_id": 4,
                "hadm_id": 401,
                "stay_id": 4001,
                "first_careunit": "MICU",
                "last_careunit": "MICU",
                "intime": DISCH4 + D(days=90.0001),
                "outtime": DISCH4 + D(days=91),
                "los": 1.0,
            },
            {
                "subject_id": 5,
                "hadm_id": 501,
                "stay_id": 5001,
                "first_careunit": "MICU",
                "last_careunit": "MICU",
                "intime": DISCH5 + D(days=90),
                "outtime": DISCH5 + D(days=91),
                "los": 1.0,
            },
        ],
    )
    if chartevents:

        def chart(s, h, stay, item, t, v, u):
            return {
                "subject_id": s,
                "hadm_id": h,
                "stay_id": stay,
                "caregiver_id": 1,
                "charttime": t,
                "storetime": t,
                "itemid": item,
                "value": str(v),
                "valuenum": v,
                "valueuom": u,
                "warning": 0,
            }

        _write(
            icu / "chartevents.csv.gz",
            [
                chart(1, 100, 1000, 220045, T("2150-01-02 09:00"), 80.0, "bpm"),
                chart(1, 100, 1000, 220045, T("2150-01-03 07:00"), 90.0, "bpm"),
                chart(1, 100, 1000, 220045, DISCH1 + D(minutes=1), 200.0, "bpm"),  # after discharge
                chart(1, 100, 1000, 223761, T("2150-01-02 10:00"), 98.6, "?F"),
            ],
        )
    if notes:

        def note(nid, s, h, kind, seq, t, text):
            return {
                "note_id": nid,
                "subject_id": s,
                "hadm_id": h,
                "note_type": kind,
                "note_seq": seq,
                "charttime": t,
                "storetime": t,
                "text": text,
            }

        _write(
            root / "note" / "discharge.csv.gz",
            [
                note(
                    "1-DS-1",
                    1,
                    100,
                    "DS",
                    1,
                    DISCH1 + D(hours=23),
                    "Discharge summary IN-WINDOW.\nDischarged home, stable.",
                ),
                note("1-DS-2", 1, 100, "DS", 2, DISCH1 + D(hours=25), "LEAK: addendum written after the window"),
                note("1-DS-3", 1, 101, "DS", 1, DISCH1 + D(days=33), "LEAK: summary of the readmission"),
            ],
        )
        _write(
            root / "note" / "radiology.csv",
            [
                note(
                    "1-RR-1", 1, None, "RR", 1, T("2150-01-01 03:00"), "RR-IN-1: chest film, no effusion"
                ),  # admit - 5 h
                note("1-RR-2", 1, 100, "RR", 2, T("2150-01-04 10:00"), "RR-IN-2: small left effusion"),
                note("1-RR-0", 1, None, "RR", 3, T("2150-01-01 01:00"), "EARLY: before the window (admit - 7 h)"),
                note("1-RR-3", 1, 100, "RR", 4, DISCH1 + D(minutes=1), "LEAK: report after discharge"),
            ],
        )
    if cxr:
        meta = []
        for dicom, study, view, when in (
            ("d-in-pa", 11, "PA", T("2150-01-03 10:00")),
            ("d-in-ap", 12, "AP", T("2150-01-04 10:00")),
            ("d-lat", 12, "LATERAL", T("2150-01-04 10:00")),
            ("d-late", 13, "PA", DISCH1 + D(hours=2)),
        ):
            meta.append(
                {
                    "dicom_id": dicom,
                    "subject_id": 1,
                    "study_id": study,
                    "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
                    "ViewPosition": view,
                    "Rows": 64,
                    "Columns": 48,
                    "StudyDate": when.strftime("%Y%m%d"),
                    "StudyTime": f"{int(when.strftime('%H%M%S'))}.0",
                    "ProcedureCodeSequence_CodeMeaning": "CHEST",
                    "ViewCodeSequence_CodeMeaning": "postero-anterior",
                    "PatientOrientationCodeSequence_CodeMeaning": "Erect",
                }
            )
            folder = root / "cxr" / "files" / "p1" / "p1" / f"s{study}"
            folder.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            Image.new("L", (48, 64), color=len(dicom) * 10).save(buffer, format="JPEG")
            (folder / f"{dicom}.jpg").write_bytes(buffer.getvalue())
        _write(root / "cxr" / "mimic-cxr-2.0.0-metadata.csv.gz", meta)
    return root
