"""The printable reports and the History page in a real browser (issue 17, items 5 and 6), with Debian's
Chromium through Playwright, for Demo 01 (all four modalities) saved with a long discharge note:

- the HTML report is under 1 MB, and printed to PDF by Chromium (`page.pdf`) it keeps the whole discharge
  note (the note flows onto the next pages instead of being clipped to its screen scroll box);
- the PDF report has at most 2 pages;
- both PDFs' pages are rendered to PNG in test-output/browser/ (report_print_*.png, report_pdf_*.png);
- History at 1,280 px and on a phone (390 px): no table makes the page wider than the screen, Compare shows
  the side-by-side sections, and the PDF download button downloads a PDF. Screenshots: history_*.png."""

from __future__ import annotations

import re

import pypdfium2 as pdfium
import pytest

from mmnar_app.browser_harness import chromium_page, streamlit_server, wait_for_text, wait_idle

from support.paths import ROOT

SHOTS = ROOT / "test-output" / "browser"
LONG_NOTES = 5  # demo discharge summaries joined: about 10,000 characters, several printed pages


def _flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _render(pdf: bytes, prefix: str) -> int:
    """Every page of `pdf` as test-output/browser/{prefix}_{n}.png; the number of pages."""
    document = pdfium.PdfDocument(pdf)
    for i, page in enumerate(document, 1):
        page.render(scale=1.4).to_pil().save(SHOTS / f"{prefix}_{i}.png")
    return len(document)


def _pdf_text(pdf: bytes) -> str:
    return "".join(page.get_textpage().get_text_range() for page in pdfium.PdfDocument(pdf))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A data folder holding Demo 01 with a long note, and Demo 06 before and after removing its X-ray."""
    from mmnar_app.report_bench import demo, long_note, record_of, save_analysed
    from mmnar_app.service import LocalService
    from mmnar_app.store import open_store
    from mmnar_core.resources import DEMO_BUNDLE

    data = tmp_path_factory.mktemp("data")
    store = open_store(None, data_dir=data)
    service = LocalService(DEMO_BUNDLE)
    six = demo("Demo 06")
    save_analysed(store, service, record_of(six), "Demo 06", "baseline", user="local")
    save_analysed(store, service, record_of(six, drop=("cxr",)), "Demo 06", "without the X-ray", user="local")
    note = long_note(LONG_NOTES)
    one = save_analysed(
        store, service, record_of(demo("Demo 01"), {"discharge_note": note}), "Demo 01", "long note", user="local"
    )
    return data, store, one, note, service.info


@pytest.mark.slow
def test_html_report_prints_the_whole_note_and_pdf_fits_two_pages(saved):
    from mmnar_app.history import _stored, export, export_pdf

    _, store, one, note, info = saved
    assert len(note) > 8_000
    assessment, explanations = _stored(store, store.url, one)
    assert set(assessment.inputs["texts"]) == {"discharge_note", "radiology_report"} and "cxr" in assessment.files
    document = export(store, assessment, explanations, True, "local", info.version)
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / "report.html").write_text(document, encoding="utf-8")
    assert len(document.encode("utf-8")) < 1_000_000

    pdf = export_pdf(store, assessment, explanations, True, "local", info.version, info.tasks[0])
    (SHOTS / "report.pdf").write_bytes(pdf)
    assert _render(pdf, "report_pdf") <= 2

    with chromium_page((390, 844)) as page:  # on a phone: nothing wider than the screen (tables scroll)
        page.goto((SHOTS / "report.html").as_uri())
        page.wait_for_load_state("load")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 391
        page.screenshot(path=str(SHOTS / "report_390.png"))
    with chromium_page((1280, 900)) as page:
        page.goto((SHOTS / "report.html").as_uri())
        page.wait_for_load_state("load")
        printed = page.pdf(format="A4", print_background=True)
    (SHOTS / "report_print.pdf").write_bytes(printed)
    pages = _render(printed, "report_print")
    text = _flat(_pdf_text(printed))
    assert _flat(note) in text, "the printed HTML report lost part of the discharge note"
    assert _flat(assessment.inputs["texts"]["radiology_report"]) in text
    assert pages >= 3  # the long note really ran over a page (what used to be clipped)


def _fits(page, width: int) -> None:
    """Nothing on the page is wider than the screen: wide tables scroll inside themselves."""
    overflow = page.evaluate("() => document.documentElement.scrollWidth")
    assert overflow <= width + 1, f"the page is {overflow} px wide on a {width} px screen"
    for frame in page.locator("[data-testid='stDataFrame']").all():
        box = frame.bounding_box()
        if box is not None and box["width"] > 0:
            assert box["x"] >= -1 and box["x"] + box["width"] <= width + 1, box


def _shot(page, name: str, width: int) -> None:
    """The whole page (Streamlit scrolls inside its own container, so the window is made tall for it)."""
    page.set_viewport_size({"width": width, "height": 2400})
    wait_idle(page)
    page.screenshot(path=str(SHOTS / f"{name}_{width}.png"))


def _history(page, url: str, width: int) -> None:
    page.goto(f"{url}/History")
    wait_for_text(page, "Audit log", 120)
    wait_for_text(page, "Risk per outcome", 120)
    wait_idle(page)
    _fits(page, width)
    _shot(page, "history", width)
    page.get_by_role("button", name="Download printable PDF").scroll_into_view_if_needed()
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Download printable PDF").click()
    path = download.value.path()
    assert open(path, "rb").read(5) == b"%PDF-"
    page.get_by_role("tab", name="Compare").click()
    wait_for_text(page, "Main drivers", 60)
    wait_for_text(page, "What-if", 60)
    wait_idle(page)
    _fits(page, width)
    _shot(page, "history_compare", width)


@pytest.mark.slow
def test_history_and_compare_fit_desktop_and_phone(saved):
    data = saved[0]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with streamlit_server(data, SHOTS / "streamlit_history.log", {"MMNAR_USER": "local"}) as (url, _, _):
        for width, height in ((1280, 900), (390, 844)):
            with chromium_page((width, height)) as page:
                try:
                    _history(page, url, width)
                except Exception:
                    page.screenshot(path=str(SHOTS / f"history_failure_{width}.png"), full_page=True)
                    raise
