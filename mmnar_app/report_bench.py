"""Figures of the exported reports for a demo patient with all four modalities and a long discharge note:
the HTML report's size and build time, the PDF's pages, size and build time, from an assessment analysed and
saved the way the Patient page saves it. `python -m mmnar_app.report_bench [--notes N] [--data DIR]`.

Also what the tests use to put real saved assessments in a store (`save_analysed`)."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mmnar_app.demo_patients import DemoPatient, load_demo_patients
from mmnar_core.schema import PatientRecord


def demo(prefix: str) -> DemoPatient:
    """The demo patient whose label starts with `prefix` (e.g. "Demo 01")."""
    return next(d for d in load_demo_patients() if d.label.startswith(prefix))


def long_note(notes: int) -> str:
    """Demo 01's discharge summary followed by `notes` - 1 other demo patients' (a long stay's note)."""
    summaries = [d.texts["discharge_note"] for d in load_demo_patients() if "discharge_note" in d.texts]
    return "\n\n".join(summaries[:notes])


def record_of(patient: DemoPatient, texts: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> PatientRecord:
    """The patient's record, with notes replaced by `texts` and the modalities in `drop` left out."""
    images = {m: v for m, v in patient.images.items() if m not in drop}
    notes = {m: v for m, v in {**patient.texts, **(texts or {})}.items() if m not in drop}
    return PatientRecord(patient.key, dict(patient.structured), images, notes)


def save_analysed(store, service, record: PatientRecord, label: str, note: str = "", user: str = "dr-test") -> int:
    """Analyse `record` for every outcome (complete: notes' phrases included) and save it as the Patient page
    does (mmnar_app.patient_form.assessment_payload): the assessment's id."""
    from mmnar_app.patient_form import assessment_payload
    from mmnar_core.results import ALL_TASKS

    explanation = service.analyse(record, ALL_TASKS)
    analysis = {  # what the Patient page keeps of an analysis, for the page's own payload
        "explanation": explanation,
        "structured": dict(record.structured),
        "structured_notes": [],
        "texts": dict(record.texts),
        "images": {m: (f"{m}.png", "image/png") for m in record.images},
        "image_bytes": dict(record.images),
    }
    return store.save_assessment(
        user=user,
        patient_label=label,
        model_id=service.info.model_id,
        model_version=service.info.version,
        input_hash=explanation.input_hash,
        note=note,
        **assessment_payload(service.info, analysis),
    )


def measure(store, assessment_id: int, synthetic: bool = True) -> dict:
    """Build both reports of a saved assessment: sizes, pages and seconds."""
    import pypdfium2 as pdfium

    from mmnar_app.history import _stored
    from mmnar_app.pdf_report import build_pdf
    from mmnar_app.report import build_html

    assessment, explanations = _stored(store, store.url, assessment_id)
    started = time.perf_counter()
    document = build_html(assessment, explanations, synthetic)
    html_s = time.perf_counter() - started
    started = time.perf_counter()
    pdf = build_pdf(assessment, explanations, synthetic)
    pdf_s = time.perf_counter() - started
    return {
        "html_bytes": len(document.encode("utf-8")),
        "html_seconds": round(html_s, 3),
        "pdf_bytes": len(pdf),
        "pdf_pages": len(pdfium.PdfDocument(pdf)),
        "pdf_seconds": round(pdf_s, 3),
        "note_chars": len(assessment.inputs.get("texts", {}).get("discharge_note", "")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=7, help="demo discharge summaries joined into one long note")
    parser.add_argument("--data", help="data folder of the store (default: a temporary one)")
    args = parser.parse_args(argv)
    from mmnar_app.service import LocalService
    from mmnar_app.store import open_store
    from mmnar_core.resources import DEMO_BUNDLE

    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="mmnar-report-"))
    store = open_store(None, data_dir=data)
    service = LocalService(DEMO_BUNDLE)
    patient = demo("Demo 01")
    saved = save_analysed(store, service, record_of(patient, {"discharge_note": long_note(args.notes)}), "Demo 01")
    print(json.dumps({"assessment": saved, "data": str(data), **measure(store, saved)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
