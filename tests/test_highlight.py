"""Note highlights (mmnar_app.highlight) readable without colour: the strength is in the weight and the
underline, each span carries its rank and direction as a visible mark matching the ranked list, the text
stays escaped, and dark text on the strongest shade keeps 4.5:1 contrast."""

from __future__ import annotations

import re
from types import SimpleNamespace

from mmnar_app.display import LOWERS_RGB, RAISES_RGB
from mmnar_app.highlight import MAX_ALPHA, TEXT, highlighted_html, legend_html, ranked_rows

from support.contrast import contrast

NOTE = "Fever <high> and cough. No effusion. Stable gait."


def span(text: str, score: float) -> SimpleNamespace:
    start = NOTE.index(text)
    return SimpleNamespace(text=text, start=start, end=start + len(text), attribution={"icu": score})


SPANS = [span("Fever <high>", 0.10), span("No effusion", -0.05), span("Stable gait", 0.01), span("cough", 0.004)]


def marked(html: str) -> dict[str, dict[str, str]]:
    """Each highlighted span's text -> its style and the mark after it."""
    found = {}
    for style, text, mark in re.findall(
        r'<span title="[^"]*" style="([^"]*)">(.*?)</span><sup[^>]*>([^<]*)</sup>', html
    ):
        found[text] = {"style": style, "mark": mark}
    return found


def test_strength_and_direction_read_without_colour():
    spans = marked(highlighted_html(NOTE, SPANS, "icu"))
    strong, lowering, weak = spans["Fever &lt;high&gt;"], spans["No effusion"], spans["Stable gait"]
    assert strong["mark"] == "1↑" and lowering["mark"] == "2↓" and weak["mark"] == "3↑"
    assert "font-weight: 700" in strong["style"] and "thickness: 2px" in strong["style"]  # 0.10: the largest
    assert "font-weight: 600" in lowering["style"]  # 0.05: half the largest
    assert "dotted" in weak["style"] and "font-weight" not in weak["style"]  # 0.01: a tenth
    html = highlighted_html(NOTE, SPANS, "icu")
    assert "rank 2, medium, lowers the risk by -5.00 pts" in html  # said in words to a screen reader


def test_top_keeps_the_ranks_of_the_list():
    html = highlighted_html(NOTE, SPANS, "icu", top=2)
    assert set(marked(html)) == {"Fever &lt;high&gt;", "No effusion"}
    rows = ranked_rows(SPANS, "icu", top=2)
    assert [(r["rank"], r["words"], r["effect"], r["change of the risk"]) for r in rows] == [
        ("1↑", "Fever <high>", "raises the risk", "+10.00 pts"),
        ("2↓", "No effusion", "lowers the risk", "-5.00 pts"),
    ]


def test_note_text_is_escaped_and_kept_verbatim():
    html = highlighted_html(NOTE, SPANS, "icu")
    assert "<high>" not in html and "&lt;high&gt;" in html
    visible = re.sub(r"<sup[^>]*>.*?</sup>|<span style=\"position: absolute[^\"]*\">.*?</span>|<[^>]+>", "", html)
    assert visible.replace("&lt;", "<").replace("&gt;", ">") == NOTE


def test_strongest_shade_keeps_text_readable():
    for rgb in (RAISES_RGB, LOWERS_RGB):
        blended = tuple(round((1 - MAX_ALPHA) * 255 + MAX_ALPHA * c) for c in rgb)
        assert contrast(TEXT, "#{:02x}{:02x}{:02x}".format(*blended)) >= 4.5
    # the shade the first edition used at full strength (0.68) would still pass for red; the bound is the
    # blue's at a darker text colour: a mid grey fails on it
    blue = tuple(round((1 - MAX_ALPHA) * 255 + MAX_ALPHA * c) for c in LOWERS_RGB)
    assert contrast("#6b7280", "#{:02x}{:02x}{:02x}".format(*blue)) < 4.5


def test_legend_names_both_directions_and_the_marks():
    legend = legend_html("phrases")
    assert "Raises the risk" in legend and "Lowers the risk" in legend
    assert all(word in legend for word in ("weak", "medium", "strong", "1↑"))
