"""One saved assessment as a printable PDF of one page (two at most): the summary card of every outcome, the
risks with their intervals, the top drivers, an X-ray heatmap thumbnail, a highlighted excerpt of a note, the
model id and version, and the disclaimers. Built from the stored outputs, never recomputed.

fpdf2 (pure Python, a wheel, no system libraries, ~1 MB) draws it: WeasyPrint needs Pango and cairo from the
system, reportlab is several times larger for what we use. Text is DejaVu Sans when a copy can be found
(matplotlib ships one; so do most Linux systems), else the PDF core font with the few non-Latin-1 characters
our text uses spelled plainly."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from fpdf import FPDF
from fpdf.enums import TableCellFillMode, XPos, YPos
from fpdf.fonts import FontFace

from mmnar_app.display import modality_name, pattern_name, percent, task_name
from mmnar_app.note_excerpt import Segment, excerpt
from mmnar_app.report import (
    ATTRIBUTIONS_CAVEAT,
    DISCLAIMER,
    explanations_by_task,
    heatmap_rgb,
    model_words,
    risk_rows,
)

if TYPE_CHECKING:
    from mmnar_core.explain.explanation import Explanation

INK, MUTED = (15, 23, 42), (51, 65, 85)
RAISES, LOWERS = (220, 38, 38), (37, 99, 235)
HEAD = FontFace(emphasis="BOLD", fill_color=(241, 245, 249))
AMBER_FILL, AMBER_LINE = (254, 243, 199), (180, 83, 9)
SYSTEM_FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/usr/local/share/fonts")
PLAIN = str.maketrans(
    {"−": "-", "–": "-", "—": "-", "“": '"', "”": '"', "‘": "'", "’": "'", "…": "...", "≤": "<=", "≥": ">="}
)


def _font_files() -> tuple[Path, Path] | None:
    """DejaVu Sans regular and bold: matplotlib's copy (installed with captum), else the system's; None if
    neither is there."""
    folders = []
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.submodule_search_locations:
        folders += [Path(p) / "mpl-data" / "fonts" / "ttf" for p in spec.submodule_search_locations]
    folders += [Path(p) for p in SYSTEM_FONT_DIRS]
    for folder in folders:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


class ReportPDF(FPDF):
    """A4 portrait with a footer on every page: the disclaimer, the model, the page number."""

    def __init__(self, footer_text: str):
        super().__init__(orientation="P", unit="mm", format="A4")
        self.footer_text = footer_text
        self.set_margins(12, 11, 12)
        self.set_auto_page_break(True, margin=14)
        fonts = _font_files()
        self.unicode = fonts is not None
        if fonts is not None:
            self.add_font("body", "", str(fonts[0]))
            self.add_font("body", "B", str(fonts[1]))
            self.family = "body"
        else:
            self.family = "helvetica"
        self.set_text_color(*INK)
        self.set_title("Assessment report")
        self.set_lang("en")
        self.set_creator("MMNAR clinical risk explorer")

    def text_of(self, text: str) -> str:
        """The text as the font can draw it (core fonts: Latin-1 only)."""
        if self.unicode:
            return text
        return text.translate(PLAIN).encode("latin-1", "replace").decode("latin-1")

    def style(self, size: float, bold: bool = False, colour: tuple[int, int, int] = INK) -> None:
        self.set_font(self.family, "B" if bold else "", size)
        self.set_text_color(*colour)

    def para(self, text: str, size: float = 8.5, bold: bool = False, colour=INK, height: float | None = None) -> None:
        self.style(size, bold, colour)
        self.multi_cell(0, height or size * 0.46, self.text_of(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def heading(self, text: str, size: float = 10.5) -> None:
        if self.will_page_break(18):  # never a heading alone at the foot of a page
            self.add_page()
        self.ln(1.5)
        self.para(text, size, bold=True)
        self.ln(0.5)

    def footer(self) -> None:
        self.set_y(-11)
        self.style(7, colour=MUTED)
        text = self.text_of(f"{self.footer_text} · page {self.page_no()}/{{nb}}")
        self.multi_cell(0, 3, text, align="C")


def _risk_table(pdf: ReportPDF, prediction, cards: dict) -> None:
    pdf.style(8.5)
    pdf.set_fill_color(255, 255, 255)
    with pdf.table(
        col_widths=(38, 16, 40, 92),
        text_align=("LEFT", "RIGHT", "LEFT", "LEFT"),
        line_height=4.6,
        padding=1,
        headings_style=HEAD,
        cell_fill_mode=TableCellFillMode.NONE,
    ) as table:
        compared = "compared with the held-out patients"
        table.row(["outcome", "risk", "model uncertainty (95 %)", compared])
        for row in risk_rows(prediction, cards):  # the HTML report's rows
            table.row(
                [
                    pdf.text_of(row["outcome"]),
                    row["risk"],
                    row["model uncertainty (95 %)"],
                    pdf.text_of(row.get(compared, "")),
                ]
            )


def _cards(pdf: ReportPDF, explanation: Explanation, focus: str) -> None:
    """The summary card of every outcome, the chosen one first: headline, comparison, reliability, drivers."""
    cards = explanation.summary()
    cards.sort(key=lambda c: c.task != focus)
    for card in cards:
        if pdf.will_page_break(22):
            pdf.add_page()
        pdf.para(f"{task_name(card.task)}: {percent(card.risk)} ({card.band})", 9.5, bold=True)
        pdf.para(f"{card.headline} {card.comparison}", 8)
        pdf.para(f"How reliable here. {card.reliability}", 7.5, colour=MUTED)
        for i, driver in enumerate(card.drivers, 1):
            pdf.para(f"{i}. {driver.sentence}", 8)
        pdf.ln(1.2)


def _contributions(pdf: ReportPDF, explanation: Explanation, width: float) -> None:
    """Each available modality's Shapley value per outcome (percentage points), and the what-if risk without it."""
    what_if = explanation.what_if
    if what_if is None or not what_if.shapley:
        return
    tasks = what_if.tasks
    pdf.style(7.5)
    pdf.set_fill_color(255, 255, 255)
    first = width - 21 * len(tasks)
    with pdf.table(
        width=width,
        col_widths=(first, *[21] * len(tasks)),
        text_align=("LEFT", *["RIGHT"] * len(tasks)),
        line_height=4,
        padding=0.8,
        align="LEFT",
        headings_style=HEAD,
        cell_fill_mode=TableCellFillMode.NONE,
    ) as table:
        table.row(
            ["modality: its Shapley value, points", *[pdf.text_of(task_name(t).split(" within")[0]) for t in tasks]]
        )
        for modality, values in what_if.shapley.items():
            table.row([pdf.text_of(modality_name(modality)), *[f"{100 * values[t]:+.1f}" for t in tasks]])
        full, none = what_if.full(), what_if.empty()
        table.row(["with none of them (risk)", *[percent(none.risks[t]) for t in tasks]])
        table.row(["with all available (risk)", *[percent(full.risks[t]) for t in tasks]])


def _thumbnail(pdf: ReportPDF, assessment, explanation: Explanation, task: str, x: float, y: float, w: float) -> float:
    """The first X-ray's Integrated Gradients overlay for `task` with its colour scale; the height used."""
    for image in explanation.images:
        stored = assessment.files.get(image.modality)
        rgb = heatmap_rgb(stored.data, image, task, max_side=384) if stored is not None else None
        if rgb is None:
            continue
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=85)
        height = w * rgb.shape[0] / rgb.shape[1]
        pdf.image(buffer, x=x, y=y, w=w, h=height, alt_text=f"{modality_name(image.modality)} heatmap")
        bar_y = y + height + 1
        steps = 40
        for i in range(steps):  # blue (lowers) -> light grey -> red (raises)
            t = i / (steps - 1) * 2 - 1
            end = RAISES if t > 0 else LOWERS
            grey = (226, 232, 240)
            colour = tuple(round(g + (e - g) * abs(t)) for g, e in zip(grey, end))
            pdf.set_fill_color(*colour)
            pdf.rect(x + i * w / steps, bar_y, w / steps + 0.05, 2.2, style="F")
        pdf.set_xy(x, bar_y + 2.4)
        pdf.style(6.5, colour=MUTED)
        pdf.multi_cell(
            w,
            2.8,
            pdf.text_of(
                f"{modality_name(image.modality)}, Integrated Gradients for {task_name(task).lower()}: red regions "
                "raised the risk, blue lowered it (left: lowers, right: raises)."
            ),
            align="L",
        )
        return pdf.get_y() - y
    return 0.0


def _words(segment: Segment) -> Iterator[str]:
    """The segment's words, each with the space that follows it."""
    words = segment.text.split(" ")
    for i, word in enumerate(words):
        token = word + (" " if i < len(words) - 1 else "")
        if token:
            yield token


def flow_excerpt(pdf: ReportPDF, segments: list[Segment], size: float = 8) -> None:
    """The excerpt as running text: each ranked span in bold on a tint (red raised, blue lowered the risk) with
    its rank before it, so the order reads without colour."""
    line = size * 0.48
    left, right = pdf.l_margin, pdf.w - pdf.r_margin
    margin, pdf.c_margin = pdf.c_margin, 0  # runs of text side by side: no padding inside each cell
    pdf.set_x(left)
    for segment in segments:
        marked = segment.rank is not None
        if marked:
            pdf.style(size * 0.75, bold=True, colour=MUTED)
            rank = f"[{segment.rank}]"
            if pdf.get_x() + pdf.get_string_width(rank) > right:
                pdf.ln(line)
            pdf.cell(pdf.get_string_width(rank) + 0.6, line, rank)
            tint = RAISES if segment.effect > 0 else LOWERS
            pdf.set_fill_color(*(round(255 - 0.22 * (255 - c)) for c in tint))
        for word in _words(segment):
            pdf.style(size, bold=marked)
            text = pdf.text_of(word)
            width = pdf.get_string_width(text)
            if pdf.get_x() + width > right and pdf.get_x() > left + 1:
                pdf.ln(line)
            if pdf.get_x() <= left + 0.01:  # no space at the start of a line
                text = text.lstrip()
                width = pdf.get_string_width(text)
            if text:
                pdf.cell(min(width, right - left), line, text, fill=marked)
    pdf.c_margin = margin
    pdf.ln(line + 1)


def _note_excerpts(pdf: ReportPDF, assessment, explanation: Explanation, task: str) -> None:
    """Each note as an excerpt around the phrases (or words) that moved the `task` risk most."""
    texts = assessment.inputs.get("texts", {})
    for text in explanation.texts:
        spans = text.phrases or text.words
        note = texts.get(text.modality, "")
        segments = excerpt(note, spans, task, k=4, limit=600) if spans and note else []
        if not segments:
            continue
        unit = "phrases" if text.phrases else "words"
        pdf.heading(
            f"{modality_name(text.modality)}: the {unit} that moved the {task_name(task).lower()} risk most", 9.5
        )
        flow_excerpt(pdf, segments)
        ranked = sorted((s for s in segments if s.rank is not None), key=lambda s: s.rank or 0)
        pdf.para(
            "  ".join(f"[{s.rank}] {100 * s.effect:+.1f} pts" for s in ranked)
            + f" (red raised, blue lowered the risk). An excerpt of a {len(note):,}-character note: the whole note "
            "is in the HTML report.",
            7,
            colour=MUTED,
        )


def build_pdf(assessment, explanations: dict[str, Explanation], synthetic: bool, task: str | None = None) -> bytes:
    """The PDF report of a stored assessment; `task`: the outcome whose heatmap and note excerpt are shown
    (default: the first explained)."""
    explanations = explanations_by_task(explanations)
    focus = task if task in explanations else next(iter(explanations))
    explanation = explanations[focus]
    prediction = explanation.prediction
    model = model_words(assessment)
    pdf = ReportPDF(("Synthetic demo model, not for clinical use · " if synthetic else "") + f"model {model}")
    pdf.add_page()
    pdf.para(f"Assessment #{assessment.id}: {assessment.patient_label}", 14, bold=True, height=7)
    pdf.para(
        f"Saved {assessment.created_at:%Y-%m-%d %H:%M UTC} by {assessment.user} · model {model} · input hash "
        f"{assessment.input_hash[:16]}",
        7.5,
        colour=MUTED,
    )
    if assessment.note:
        pdf.para(f"Note: {assessment.note}", 8)
    pdf.ln(1)
    banner = (
        (DISCLAIMER + " " if synthetic else "") + "Decision support only: " + ATTRIBUTIONS_CAVEAT.split(". ")[0] + "."
    )
    pdf.set_fill_color(*AMBER_FILL)
    pdf.set_draw_color(*AMBER_LINE)
    pdf.style(8.5, bold=True)
    pdf.multi_cell(0, 4.6, pdf.text_of(banner), border=1, fill=True, padding=1, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_draw_color(0, 0, 0)
    report = prediction.distribution
    if report is not None and report.flagged:
        pdf.ln(1)
        pdf.multi_cell(
            0,
            4.2,
            pdf.text_of(report.summary + " " + " ".join(report.reasons)),
            border=1,
            fill=True,
            padding=1,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    pdf.heading("Risks")
    _risk_table(pdf, prediction, {c.task: c for c in explanation.summary()})
    pdf.para(
        f"Available: {pattern_name(prediction.available)}. Missing: "
        f"{', '.join(modality_name(m) for m in prediction.missing) or 'nothing'}. The interval is the model's own "
        "uncertainty, not what the record does not show.",
        7.5,
        colour=MUTED,
    )
    pdf.heading("Summary and what drives each risk")
    _cards(pdf, explanation, focus)
    # the thumbnail and the table stay together: a smaller thumbnail rather than a page of its own
    thumb_w = next((w for w in (50, 42, 36) if not pdf.will_page_break(w * 1.2 + 22)), 50)
    if pdf.will_page_break(thumb_w * 1.2 + 22):
        pdf.add_page()
    pdf.heading("Modalities and where the model looked")
    top = pdf.get_y()
    used = _thumbnail(pdf, assessment, explanation, focus, pdf.w - pdf.r_margin - thumb_w, top, thumb_w)
    pdf.set_xy(pdf.l_margin, top)
    table_w = pdf.w - pdf.l_margin - pdf.r_margin - (thumb_w + 5 if used else 0)
    _contributions(pdf, explanation, table_w)
    pdf.set_x(pdf.l_margin)
    pdf.style(7, colour=MUTED)
    pdf.multi_cell(
        table_w,
        3.2,
        pdf.text_of(
            "Shapley value: what each modality adds to the risk, averaged over the orders in which the modalities "
            "could be added; the values sum to the risk with all of them minus the risk with none."
        ),
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.set_y(max(pdf.get_y(), top + used) + 1)
    _note_excerpts(pdf, assessment, explanation, focus)
    pdf.para(ATTRIBUTIONS_CAVEAT, 7, colour=MUTED)
    return bytes(pdf.output())
