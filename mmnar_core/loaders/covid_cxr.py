"""`build covid-cxr`: the COVID-19 image data collection subset in ../shared/data/covid-cxr-notes
(metadata.csv + images/) -> canonical dataset.

One row per patient (patientid). Prediction time = the patient's first image (smallest `offset`, days
since symptom onset; unknown offsets last): the image, its `clinical_notes` and the measurements on that
row are the inputs; age and sex are taken from any row. Labels per patient from all rows: went_icu,
death (survival == 'N'), intubated; null where unknown. '?' means unknown.

Tiny and biased (case reports): for real-input smoke tests and demo uploads, never performance claims.
The notes are case-report text and may describe the later course; do not read anything into scores.
Each image keeps its licence (column `license` in images.parquet); several are non-commercial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mmnar_core.dataset import Manifest
from mmnar_core.loaders.output import Stages, warn, write_dataset
from mmnar_core.loaders.tables import find_table, read_small
from mmnar_core.schema import FeatureKind, FeatureSpec, ModalityKind, ModalitySpec, OutcomeSpec

MEASUREMENTS = {
    "temperature": ("temperature", "degC", (30, 45), "Body temperature"),
    "spo2": ("po2_saturation", "%", (30, 100), "Oxygen saturation"),
    "leukocyte_count": ("leukocyte_count", "10^9/L", (0, 200), "Leukocyte count"),
    "neutrophil_count": ("neutrophil_count", "10^9/L", (0, 200), "Neutrophil count"),
    "lymphocyte_count": ("lymphocyte_count", "10^9/L", (0, 100), "Lymphocyte count"),
}
MODALITIES = (
    ModalitySpec("demographics", ModalityKind.TABULAR, "Age and sex"),
    ModalitySpec("measurements", ModalityKind.TABULAR, "Vital signs and blood counts reported with the first image"),
    ModalitySpec("cxr", ModalityKind.IMAGE, "The patient's first chest X-ray"),
    ModalitySpec("clinical_note", ModalityKind.TEXT, "Clinical notes published with the first image"),
)
OUTCOMES = (
    OutcomeSpec(
        "went_icu",
        "ICU admission",
        "went_icu == 'Y' on any row (1) / 'N' (0); other values unknown",
        anchor="first image",
        defined_for="patients whose ICU status is reported",
    ),
    OutcomeSpec(
        "death",
        "Death",
        "survival == 'N' on any row (1) / 'Y' (0); other values unknown",
        anchor="first image",
        defined_for="patients whose survival is reported",
    ),
    OutcomeSpec(
        "intubated",
        "Intubation",
        "intubated == 'Y' on any row (1) / 'N' (0); other values unknown",
        anchor="first image",
        defined_for="patients whose intubation status is reported",
    ),
)
UNKNOWN = ["?"]


def feature_specs() -> list[FeatureSpec]:
    specs = [
        FeatureSpec("age", FeatureKind.NUMERIC, "demographics", "years", "Age", (0, 120)),
        FeatureSpec("sex", FeatureKind.CATEGORICAL, "demographics", None, "Sex", None, ("F", "M")),
    ]
    for name, (_, unit, rng, desc) in MEASUREMENTS.items():
        specs.append(FeatureSpec(name, FeatureKind.NUMERIC, "measurements", unit, desc, rng))
    return specs


def read_metadata(folder: Path) -> pd.DataFrame:
    path = find_table(folder, "metadata")
    columns = [c for c, *_ in MEASUREMENTS.values()]
    meta = read_small(
        path,
        required=[
            "patientid",
            "offset",
            "sex",
            "age",
            "survival",
            "intubated",
            "went_icu",
            "view",
            "filename",
            "license",
            "clinical_notes",
            *columns,
        ],
        optional=["staged_file", "doi", "url"],
        numeric=["offset", "age", *columns],
        not_null=["patientid", "filename"],
        na_values=UNKNOWN,
    )
    meta["image_file"] = meta["staged_file"].fillna(meta["filename"])
    return meta


def per_patient_label(rows: pd.Series, positive: str, negative: str) -> float:
    values = set(rows.dropna())
    if positive in values:
        return 1.0
    if negative in values:
        return 0.0
    return float("nan")


def build(root: str | Path, out: str | Path, seed: int = 0, overwrite: bool = False, progress: bool = True) -> Path:
    folder = Path(root)
    images_dir = folder / "images"
    with Stages("covid-cxr", ["read", "per patient", "write"], enabled=progress) as stages:
        stages.next()
        meta = read_metadata(folder)
        stages.next()
        ordered = meta.assign(_unknown=meta["offset"].isna()).sort_values(
            ["patientid", "_unknown", "offset", "image_file"]
        )
        first = ordered.drop_duplicates("patientid").reset_index(drop=True)
        by_patient = meta.groupby("patientid")
        static = by_patient[["age", "sex"]].first()
        structured = pd.DataFrame(
            {
                "age": first["patientid"].map(static["age"]).to_numpy(),
                "sex": first["patientid"].map(static["sex"]).where(lambda s: s.isin(["F", "M"])).to_numpy(),
            }
        )
        for name, (column, *_rest) in MEASUREMENTS.items():
            structured[name] = first[column].to_numpy()
        labels = {}
        for outcome, column, positive, negative in (
            ("went_icu", "went_icu", "Y", "N"),
            ("death", "survival", "N", "Y"),
            ("intubated", "intubated", "Y", "N"),
        ):
            per = by_patient[column].agg(lambda rows: per_patient_label(rows, positive, negative))  # noqa: B023
            labels[outcome] = first["patientid"].map(per)
        refs: list[dict[str, Any] | None] = []
        for row in first.itertuples():
            path = images_dir / row.image_file
            if not path.is_file():
                warn(f"{path}: image listed in metadata.csv is missing; patient {row.patientid} has no cxr")
                refs.append(None)
            else:
                refs.append({"path": path, "view": row.view, "license": row.license, "image_id": row.image_file})

        def image_bytes(modality: str, ref: dict, patient_id: str):
            suffix = ref["path"].suffix.lower() or ".jpg"
            meta_row = {"image_id": ref["image_id"], "view": ref["view"], "license": ref["license"]}
            return f"images/{modality}/{patient_id}{suffix}", ref["path"].read_bytes(), meta_row

        stages.next()
        manifest = Manifest(
            name="covid-cxr-notes",
            description="COVID-19 image data collection subset: first chest X-ray + note per patient "
            "(tiny and biased: smoke tests and demos only, never performance claims)",
            modalities=list(MODALITIES),
            features=feature_specs(),
            outcomes=list(OUTCOMES),
            provenance={
                "source": "COVID-19 image data collection (ieee8023/covid-chestxray-dataset), subset",
                "root": str(folder.resolve()),
                "licence": "per image (images.parquet column `license`): CC BY / BY-SA / BY-NC-SA",
                "generator": "mmnar_core.loaders.covid_cxr",
                "seed": seed,
            },
        )
        ids = pd.DataFrame(
            {"patient_id": "covid_" + first["patientid"].astype(str), "group_id": first["patientid"].astype(str)}
        )
        texts = {"clinical_note": first["clinical_notes"]}
        return write_dataset(
            Path(out),
            manifest,
            ids,
            structured,
            labels,
            texts=texts,
            images={"cxr": pd.Series(refs, dtype=object)},
            image_bytes=image_bytes,
            seed=seed,
            overwrite=overwrite,
        )
