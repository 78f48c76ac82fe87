"""The exported reports of a saved assessment (issue 17, item 6): the PDF is one or two pages with the summary,
the risks with their intervals, the drivers, a heatmap, the model and the disclaimers; the HTML report has no
script, charts as inline SVG, is small, and its print rules let a note flow instead of clipping it; the note
excerpt keeps the top phrases in their sentences. The real-browser print checks are in test_report_browser.py."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pypdfium2 as pdfium
import pytest

from mmnar_app.note_excerpt import excerpt
from mmnar_app.static_charts import Row, hbar_svg, risk_svg


# ------------------------------------------------------------------ the note excerpt (no model)
def _span(note: str, phrase: str, effect: float, task: str = "t"):
    start = note.index(phrase)
    return SimpleNamespace(start=start, end=start + len(phrase), attribution={task: effect})


FILLER = " ".join(f"Unrelated sentence number {i} about nothing in particular." for i in range(40))
NOTE = (
    "Chief Complaint: dyspnea.\n\n"
    + FILLER
    + " The patient had a large pleural effusion on admission. "
    + FILLER
    + " Creatinine rose to 2.4 during the stay.\nDischarged home."
)


def test_excerpt_keeps_the_top_phrases_in_their_sentences_ranked_and_elides_the_rest():
    spans = [
        _span(NOTE, "large pleural effusion", 0.05),
        _span(NOTE, "Creatinine rose to 2.4", -0.03),
        _span(NOTE, "number 7", 0.001),  # weak: not among the top 2
    ]
    segments = excerpt(NOTE, spans, "t", k=2)
    marked = [(s.rank, s.text) for s in segments if s.rank is not None]
    assert sorted(marked) == [(1, "large pleural effusion"), (2, "Creatinine rose to 2.4")]
    text = "".join(s.text for s in segments)
    assert "The patient had a large pleural effusion on admission." in text  # its whole sentence
    assert "Creatinine rose to 2.4 during the stay." in text
    assert "number 7" not in text and "…" in text  # the filler between is elided
    assert len(text) < 300  # a page holds it: 2 sentences, not the 5,000-character note
    assert [s.rank for s in segments if s.rank] == [1, 2]  # reading order (here also rank order)


def test_excerpt_budget_drops_later_windows_never_the_top_one():
    spans = [_span(NOTE, "large pleural effusion", 0.05), _span(NOTE, "Creatinine rose to 2.4", -0.04)]
    segments = excerpt(NOTE, spans, "t", k=2, limit=40)
    ranks = [s.rank for s in segments if s.rank is not None]
    assert ranks == [1]


def test_excerpt_merges_windows_separated_only_by_whitespace():
    note = "EXAM: CHEST.\n\nFINDINGS: small effusion.\n\nIMPRESSION: no acute disease.\n"
    spans = [_span(note, "small effusion", 0.02), _span(note, "no acute disease", -0.01)]
    text = "".join(s.text for s in excerpt(note, spans, "t", k=2))
    assert "FINDINGS: small effusion. IMPRESSION: no acute disease." in text.replace("\n", " ")
    assert "…" not in text.split("FINDINGS")[1].split("no acute")[0]  # no elision between adjacent lines


# ------------------------------------------------------------------ static charts (no model)
def test_risk_chart_writes_each_value_after_its_whisker_never_on_it():
    risks = [SimpleNamespace(task="death_180d", risk=0.185, low=0.15, high=0.22)]
    svg = risk_svg(risks)
    whisker = re.search(r'<path d="M([\d.]+) [\d.]+V[\d.]+M[\d.]+ [\d.]+H([\d.]+)', svg)
    label = re.search(r'<text x="([\d.]+)"[^>]*>18\.5 %', svg)
    assert whisker and label
    assert float(label.group(1)) > float(whisker.group(2))  # right of the interval's upper end
    assert "<title>" in svg and 'role="img"' in svg


def test_tick_labels_never_repeat_on_a_narrow_axis():
    svg = hbar_svg([Row("a", 0.0, 0.05)], "t", 0.0475, 0.0525, lambda v, d: f"{100 * v:.{d}f} %", "risk")
    ticks = re.findall(r'text-anchor="middle" fill="#334155">([^<]+)</text>', svg)[:-1]
    assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks


# ------------------------------------------------------------------ real saved assessments
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Demo 06 (structured + X-ray: fast) analysed and saved as the Patient page saves it."""
    from mmnar_app.report_bench import demo, record_of, save_analysed
    from mmnar_app.service import LocalService
    from mmnar_app.store import open_store
    from mmnar_core.resources import DEMO_BUNDLE

    store = open_store(None, data_dir=tmp_path_factory.mktemp("data"))
    service = LocalService(DEMO_BUNDLE)
    aid = save_analysed(store, service, record_of(demo("Demo 06")), "Demo 06 (50 y, female)", "before discharge")
    return store, aid, service.info


def _load(store, aid):
    from mmnar_app.history import _stored

    return _stored(store, store.url, aid)


def _pdf_text(data: bytes) -> tuple[int, str, int]:
    document = pdfium.PdfDocument(data)
    text = "".join(page.get_textpage().get_text_range() for page in document)
    images = sum(1 for page in document for o in page.get_objects() if o.type == pdfium.raw.FPDF_PAGEOBJ_IMAGE)
    return len(document), text, images


def test_pdf_holds_summary_risks_drivers_heatmap_model_and_disclaimers(saved):
    from mmnar_app.pdf_report import build_pdf

    store, aid, info = saved
    assessment, explanations = _load(store, aid)
    explanation = next(iter(explanations.values()))
    data = build_pdf(assessment, explanations, synthetic=True)
    pages, text, images = _pdf_text(data)
    flat = " ".join(text.split())
    assert data.startswith(b"%PDF") and 1 <= pages <= 2
    assert images >= 1  # the X-ray heatmap thumbnail
    assert "Demo model trained on synthetic data. Not for clinical use." in flat
    assert info.model_id in flat and assessment.model_version in flat
    for r in explanation.prediction.risks:  # every risk with its interval
        assert f"{100 * r.risk:.1f} %" in flat and f"{100 * r.low:.1f} % to {100 * r.high:.1f} %" in flat
    for card in explanation.summary():  # the summary card: headline and the top drivers
        assert " ".join(card.headline.split()) in flat
        for driver in card.drivers:
            assert " ".join(driver.sentence.split())[:60] in flat
    assert "Demo 06 (50 y, female)" in flat and "before discharge" in flat


def test_pdf_for_a_real_model_omits_the_synthetic_banner(saved):
    from mmnar_app.pdf_report import build_pdf

    store, aid, _ = saved
    assessment, explanations = _load(store, aid)
    _, text, _ = _pdf_text(build_pdf(assessment, explanations, synthetic=False))
    assert "synthetic" not in text.lower() and "Attributions describe the model, not medicine" in " ".join(text.split())


def test_html_report_is_small_static_and_prints_notes_whole(saved):
    from mmnar_app.report import build_html

    store, aid, _ = saved
    assessment, explanations = _load(store, aid)
    document = build_html(assessment, explanations, True)
    assert len(document.encode()) < 1_000_000
    assert "<script" not in document.lower() and "plotly" not in document.lower()  # no 4.9 MB of plotly.js
    assert document.count('role="img"') >= 4  # risk, Shapley, structured, absent modality: static SVG charts
    assert "data:image/jpeg;base64," in document  # the heatmap
    assert "@media print" in document and "break-inside:auto" in document.replace(" ", "")
    assert ".note{max-height:none!important;overflow:visible!important" in document.replace(" ", "")


def test_pdf_export_is_audited(saved):
    from mmnar_app.history import export_pdf

    store, aid, info = saved
    assessment, explanations = _load(store, aid)
    data = export_pdf(store, assessment, explanations, True, "dr-test", info.version, "death_180d")
    assert data.startswith(b"%PDF")
    entry = store.audit_log(action="export")[0]
    assert entry.assessment_id == aid and entry.detail == "pdf"


def test_pdf_without_a_unicode_font_falls_back_to_the_core_font(saved, monkeypatch):
    """A machine with neither matplotlib's nor the system's DejaVu Sans still gets its PDF (Latin-1 text, the
    few other characters spelled plainly), instead of an error."""
    from mmnar_app import pdf_report

    store, aid, info = saved
    assessment, explanations = _load(store, aid)
    monkeypatch.setattr(pdf_report, "_font_files", lambda: None)
    assert pdf_report.ReportPDF("x").text_of("a − b “c” … ≤ 5 µmol/L") == 'a - b "c" ... <= 5 µmol/L'
    pages, text, images = _pdf_text(pdf_report.build_pdf(assessment, explanations, synthetic=True))
    assert 1 <= pages <= 2 and images >= 1
    assert "Not for clinical use" in text and info.model_id in " ".join(text.split())
