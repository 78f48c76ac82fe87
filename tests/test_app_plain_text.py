"""User-supplied strings are shown as text, never markdown or HTML (issue 18, item 6): markdown, HTML and
image links planted in a save note, an uploaded file's content and a file name come back escaped on every
element that renders markdown; mmnar_app.plain_text.plain is the one helper."""

from __future__ import annotations

import json
import re

import pytest
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

from mmnar_app.plain_text import plain

from support.app_keys import input_key as widget_key
from support.paths import ROOT

PLANTED = (
    "![pixel](https://outside.example/p.png) [click](https://outside.example/x) "
    "<img src=https://outside.example/i.png> **bold** ~~gone~~ www.outside.example $x$"
)
MARKDOWN_ELEMENTS = ("markdown", "caption", "error", "warning", "info", "success")
_RENDER = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_AUTOLINK = re.compile(r"(?<!\\)(https?://outside|www\.outside)")


def markup_from_planted(source: str) -> list[str]:
    """What the planted text would become if `source` were rendered as markdown: tags, links, autolinks."""
    html = _RENDER.render(source)
    found = [tag for tag in ("<img", 'href="https://outside', "<strong>bold", "<s>gone", "<del>gone") if tag in html]
    return found + _AUTOLINK.findall(source)


def rendered(app: AppTest) -> list[str]:
    return [str(e.value) for kind in MARKDOWN_ELEMENTS for e in getattr(app, kind)]


def test_plain_shows_exactly_the_characters_and_no_markup():
    for text in (
        PLANTED,
        "# heading\n- item\n1. first\n> quote",
        "<script>alert(1)</script> &lt;b&gt;",
        "_em_ __strong__ a__b__ x_y_ *s* `code`",
    ):
        source = plain(text)
        assert markup_from_planted(source) == []
        html = _RENDER.render(source)
        assert not re.search(r"<(h1|ul|ol|li|blockquote|script|b|em|strong|code)\b", html), html
    assert plain("clinician@example.org") == "clinician@example.org" and plain("a.json: 1.5") == "a.json: 1.5"
    assert plain("spo2_min: 150") == "spo2_min: 150"  # snake_case names stay readable in the message source
    assert markup_from_planted(PLANTED)  # the check itself sees the planted markup when it is not escaped


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MMNAR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MMNAR_USER", "dr-test")
    monkeypatch.delenv("MMNAR_DATABASE_URL", raising=False)
    return tmp_path / "data"


def page(name: str) -> AppTest:
    app = AppTest.from_file(str(ROOT / "app" / name), default_timeout=180)
    app.run()
    assert not app.exception, app.exception
    return app


def test_planted_markup_in_notes_uploads_and_file_names_is_shown_escaped(data_dir):
    patient = page("pages/1_Patient.py")
    box = patient.selectbox(key="patient_choice")
    box.set_value(next(o for o in box.options if o.startswith("Demo 06"))).run()
    shown = []
    for filename, content in (
        (f"{PLANTED}.json", json.dumps({"resourceType": PLANTED}).encode()),
        ("values.csv", f"age,{PLANTED}\n70,44\n".encode()),
    ):
        patient.file_uploader(key=widget_key(patient, "structured_upload")).upload(
            filename, content, "application/octet-stream"
        ).run()
        assert not patient.exception, patient.exception
        shown += rendered(patient)
    assert any("outside.example" in s for s in shown), shown  # the planted text did reach the page
    patient.button(key="analyse").click().run()
    patient.text_area(key="save_note").set_value(PLANTED)
    patient.button(key="save").click().run()
    assert not patient.exception, patient.exception
    history = page("pages/3_History.py")
    shown += rendered(history)
    assert any("outside.example" in s and "note:" in s for s in rendered(history)), rendered(history)
    leaks = {s: markup_from_planted(s) for s in shown if markup_from_planted(s)}
    assert not leaks, leaks
