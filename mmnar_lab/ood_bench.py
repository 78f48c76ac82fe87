"""Benchmark of the out-of-distribution warnings (issue 16, item 2): `python -m mmnar_lab.ood_bench`.

Prints
- the false-alarm rate on the synthetic test split of the bundle's own cohort (target <= 5 %), per
  modality, per detector and for any modality, from the cached embeddings, the raw structured values and
  the X-ray files; and on the test splits of other synthetic cohorts of the same simulator (other seed,
  scenario and ordering policy), where the structured distance is left out when their structured
  embeddings come from another tabular encoder than the bundle's;
- the detection rate under the synthetic bundle of real inputs (target >= 95 % of patients): the real
  X-rays and notes of ../shared/data/covid-cxr-notes (one X-ray and the first note per patient; the note
  given as the discharge note), the same X-rays re-saved as 224 x 224 PNGs like the training ones (so
  neither size nor file type can give them away), and real IU radiology reports (a seeded sample, given
  as the radiology report), encoded through the Predictor.

The bundle's own distribution check is used when it has one; otherwise one is fitted in memory on the
training split of --dataset (the bundle's training cohort) and the output says so. Nothing is fitted on
the test split or on the real data.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TIMINGS: list[float] = []  # CPU seconds of each synthetic patient's check


def _rate(flags: list[bool]) -> str:
    return f"{np.mean(flags):.3f} ({int(np.sum(flags))}/{len(flags)})" if flags else "n/a (0 patients)"


def load_check(bundle_dir: str, dataset_dir: str, cache: str | None):
    from mmnar_core.bundle import load_bundle
    from mmnar_core.ood import DistributionCheck

    bundle = load_bundle(bundle_dir)
    check = DistributionCheck.from_bundle(bundle)
    if check is not None:
        return check, f"the bundle's own ({bundle_dir})"
    from mmnar_core.dataset import load_dataset
    from mmnar_core.encoders.cache import load_embeddings

    dataset = load_dataset(dataset_dir)
    return DistributionCheck().fit(dataset, load_embeddings(dataset, cache)), f"fitted here on {dataset_dir} (train)"


def synthetic_false_alarms(check, dataset_dir: str, cache: str | None, limit: int | None) -> dict:
    from mmnar_core.dataset import load_dataset
    from mmnar_core.encoders.cache import load_embeddings

    dataset = load_dataset(dataset_dir)
    embeddings = load_embeddings(dataset, cache)
    # only embeddings made by the encoders the check was fitted on (another cohort's tabular encoder differs)
    same = [m for m, fit in check.fits_.items() if embeddings.encoders.get(m, {}).get("encoder_id") == fit.encoder_id]
    rows = dataset.split_indices("test")[:limit]
    ids = dataset.patients["patient_id"].to_numpy()
    names = dataset.manifest.modality_names
    image_names = [m.name for m in dataset.manifest.modalities if m.kind.value == "image"]
    paths = {
        (str(p), m): dataset.root / f
        for p, m, f in zip(dataset.images.patient_id, dataset.images.modality, dataset.images.path)
    }
    flags: dict[str, list[bool]] = {}
    overall, seconds = [], []
    for row in rows:
        vectors = {m: embeddings.vectors[m][row] for m in names if m in same and embeddings.present[m][row]}
        values = {f.name: dataset.structured[f.name].iloc[row] for f in dataset.manifest.features}
        images = {m: paths[(str(ids[row]), m)] for m in image_names if (str(ids[row]), m) in paths}
        started = time.process_time()
        report = check.check({k: None if _missing(v) else v for k, v in values.items()}, vectors, images)
        seconds.append(time.process_time() - started)
        for modality in report.modalities:
            flags.setdefault(modality.modality, []).append(modality.flagged)
            for detector in modality.detectors:
                flags.setdefault(f"{modality.modality}/{detector.detector}", []).append(detector.flagged)
        overall.append(report.flagged)
    TIMINGS.extend(seconds)
    return {"any": overall, **flags}


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def covid_records(root: Path, square: bool = False) -> list:
    """One record per patient: the first X-ray (metadata order) and the first non-empty note, when there are."""
    from mmnar_core.schema import PatientRecord

    rows = list(csv.DictReader(open(root / "metadata.csv", encoding="utf-8")))
    images: dict[str, Path] = {}
    notes: dict[str, str] = {}
    for row in rows:
        pid = row["patientid"]
        note = (row.get("clinical_notes") or "").strip()
        if note and pid not in notes:
            notes[pid] = note
        path = root / "images" / (row.get("staged_file") or row.get("filename") or "")  # as the loader reads it
        if pid not in images and row.get("modality") == "X-ray" and path.is_file():
            images[pid] = path
    return [
        PatientRecord(
            f"covid-{pid}",
            {},
            {"cxr": _square_png(images[pid]) if square else images[pid].read_bytes()} if pid in images else {},
            {"discharge_note": notes[pid]} if pid in notes else {},
        )
        for pid in dict.fromkeys([*images, *notes])
    ]


def _square_png(path: Path) -> bytes:
    from PIL import Image

    image = Image.open(path).convert("L")
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    square = image.crop((left, top, left + side, top + side)).resize((224, 224), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    square.save(buffer, "PNG")
    return buffer.getvalue()


def iu_records(path: Path, n: int, seed: int) -> list:
    import pandas as pd

    from mmnar_core.schema import PatientRecord

    table = pd.read_csv(path)
    texts = [
        " ".join(str(x) for x in (r.indication, r.findings, r.impression) if isinstance(x, str)).strip()
        for r in table.itertuples()
    ]
    texts = [t for t in texts if t]
    chosen = np.sort(np.random.default_rng(seed).choice(len(texts), min(n, len(texts)), replace=False))
    return [PatientRecord(f"iu-{i}", {}, {}, {"radiology_report": texts[i]}) for i in chosen]


def real_detection(predictor, check, records: list) -> dict[str, list[bool]]:
    vectors = predictor.encode_many(records)
    flags: dict[str, list[bool]] = {"any": []}
    for record, vector in zip(records, vectors):
        report = check.check_record(record, vector)
        flags["any"].append(report.flagged)
        for modality in report.modalities:
            flags.setdefault(modality.modality, []).append(modality.flagged)
            for detector in modality.detectors:
                flags.setdefault(f"{modality.modality}/{detector.detector}", []).append(detector.flagged)
    return flags


def main(argv: list[str] | None = None) -> int:
    from mmnar_core.resources import DEMO_BUNDLE

    parser = argparse.ArgumentParser(prog="python -m mmnar_lab.ood_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=str(DEMO_BUNDLE))
    parser.add_argument(
        "--dataset", default="/work/data/v2", help="the bundle's training cohort (its test split is used)"
    )
    parser.add_argument(
        "--other",
        nargs="*",
        default=["/work/data/v1", "/work/data/v3"],
        help="other synthetic cohorts (same simulator, other seed and scenario) whose test splits are checked too",
    )
    parser.add_argument("--cache", default="/work/data/cache")
    parser.add_argument("--data", default=str(SHARED), help="the shared real data folder")
    parser.add_argument("--iu", type=int, default=500, help="IU reports sampled (seed 0); 0 = all")
    parser.add_argument("--limit", type=int, default=None, help="at most this many synthetic test patients")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from mmnar_core.predictor import Predictor

    torch.set_num_threads(1)
    started = time.perf_counter()
    check, origin = load_check(args.bundle, args.dataset, args.cache)
    print(f"distribution check: {origin}; level {check.settings.level}")
    figures: dict[str, dict[str, str]] = {}
    synthetic = synthetic_false_alarms(check, args.dataset, args.cache, args.limit)
    figures["synthetic test split: false alarms (target <= 0.05)"] = {k: _rate(v) for k, v in synthetic.items()}
    for other in args.other:
        title = f"other synthetic cohort {Path(other).name}, test split: false alarms"
        figures[title] = {k: _rate(v) for k, v in synthetic_false_alarms(check, other, args.cache, args.limit).items()}
    predictor = Predictor.load(args.bundle, device="cpu")
    root = Path(args.data)
    covid = real_detection(predictor, check, covid_records(root / "covid-cxr-notes"))
    figures["real COVID-19 X-rays + notes: detected (target >= 0.95)"] = {k: _rate(v) for k, v in covid.items()}
    square = real_detection(predictor, check, covid_records(root / "covid-cxr-notes", square=True))
    figures["same X-rays as 224 x 224 PNG: detected"] = {k: _rate(v) for k, v in square.items() if k.startswith("cxr")}
    iu = iu_records(root / "iu-xray-reports" / "indiana_reports.csv", args.iu or 10**9, seed=0)
    figures["real IU radiology reports: detected (target >= 0.95)"] = {
        k: _rate(v) for k, v in real_detection(predictor, check, iu).items()
    }
    for title, rows in figures.items():
        print(f"\n{title}")
        for key, value in rows.items():
            print(f"  {key:34s} {value}")
    p50, p95 = np.quantile(TIMINGS, [0.5, 0.95]) * 1000
    print(f"\none check (synthetic test patients, CPU time): p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    print(f"{time.perf_counter() - started:.0f} s wall")
    if args.json:
        Path(args.json).write_text(json.dumps({"origin": origin, **figures}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
