"""Demo patients shipped beside the demo bundle: raw inputs of synthetic TEST-split patients (never seen in
training or calibration), so the app can show a full analysis from a fresh clone.

Each patient is a folder with `structured.json` (feature -> value, null = not measured), optional
`cxr.png`, `discharge_note.txt`, `radiology_report.txt`; `patients.json` indexes them.
`python -m mmnar_app.demo_patients DATASET OUT [--n 12]` rebuilds the folder from a synthetic dataset.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mmnar_app.resources import resource_path
from mmnar_core.schema import ModalityKind, PatientRecord

DEMO_DIR = resource_path("demo_patients")


@dataclass
class DemoPatient:
    key: str
    label: str
    structured: dict
    images: dict[str, bytes] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)

    def record(self) -> PatientRecord:
        return PatientRecord(self.key, dict(self.structured), dict(self.images), dict(self.texts))


def load_demo_patients(root: Path = DEMO_DIR) -> list[DemoPatient]:
    index = json.loads((root / "patients.json").read_text(encoding="utf-8"))
    out = []
    for entry in index["patients"]:
        folder = root / entry["key"]
        structured = json.loads((folder / "structured.json").read_text(encoding="utf-8"))
        images = {m: (folder / f"{m}.png").read_bytes() for m in entry["images"]}
        texts = {m: (folder / f"{m}.txt").read_text(encoding="utf-8") for m in entry["texts"]}
        out.append(DemoPatient(entry["key"], entry["label"], structured, images, texts))
    return out


def _plain(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _label(number: int, record: PatientRecord, present: list[str]) -> str:
    age, sex = record.structured.get("age"), record.structured.get("sex")
    who = ", ".join(str(p) for p in (f"{age:.0f} y" if isinstance(age, (int, float)) else None, sex) if p)
    return f"Demo {number:02d} ({who}): {' + '.join(present)}"


def export_demo_patients(dataset_dir: str | Path, out: str | Path, n: int = 12) -> Path:
    """Pick `n` test-split patients covering the commonest missingness patterns (round robin over
    patterns, richest first) and write their raw inputs."""
    from mmnar_core.dataset import load_dataset

    dataset = load_dataset(dataset_dir)
    kinds = {m.name: m.kind for m in dataset.manifest.modalities}
    rows = dataset.split_indices("test")
    ids = dataset.patients["patient_id"].to_numpy()[rows]
    patterns = dataset.patterns()[rows]
    by_pattern: dict[int, list[str]] = {}
    for pid, pattern in zip(ids, patterns):
        by_pattern.setdefault(int(pattern), []).append(str(pid))
    order = sorted(by_pattern, key=lambda p: (-bin(p).count("1"), -len(by_pattern[p])))
    chosen: list[str] = []
    while len(chosen) < n and any(by_pattern[p] for p in order):
        for p in order:
            if by_pattern[p] and len(chosen) < n:
                chosen.append(by_pattern[p].pop(0))
    out = Path(out)
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    index = []
    for number, pid in enumerate(chosen, 1):
        record = dataset.record(pid)
        key = f"demo{number:02d}"
        folder = staging / key
        folder.mkdir()
        structured = {k: _plain(v) for k, v in record.structured.items()}
        (folder / "structured.json").write_text(json.dumps(structured, indent=1, ensure_ascii=False), encoding="utf-8")
        images = [m for m, p in record.images.items() if p is not None]
        for m in images:
            shutil.copyfile(record.images[m], folder / f"{m}.png")
        texts = [m for m, t in record.texts.items() if t and t.strip()]
        for m in texts:
            (folder / f"{m}.txt").write_text(record.texts[m], encoding="utf-8")
        present = [m for m in kinds if m in images or m in texts or (kinds[m] is ModalityKind.TABULAR)]
        index.append(
            {
                "key": key,
                "label": _label(number, record, present),
                "source_patient_id": pid,
                "images": images,
                "texts": texts,
            }
        )
    meta = {
        "dataset": dataset.manifest.name,
        "content_hash": dataset.manifest.content_hash,
        "split": "test",
        "patients": index,
    }
    (staging / "patients.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmnar_app.demo_patients", description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("out", nargs="?", default=str(DEMO_DIR))
    parser.add_argument("--n", type=int, default=12)
    args = parser.parse_args(argv)
    print(export_demo_patients(args.dataset, args.out, args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
