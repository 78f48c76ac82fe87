"""One saved assessment as a self-contained HTML report (charts inline, X-ray overlay as an embedded PNG,
no network access needed to open it)."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING

import plotly.io as pio

from mmnar_app import charts
from mmnar_app.display import (
    CONTRIBUTIONS_EXPLAINED,
    ORDERING_EXPLAINED,
    contribution_rows,
    feature_names,
    modality_name,
    ordering_rows,
    pattern_name,
    percent,
    phrase_rows,
    task_name,
)
from mmnar_app.highlight import highlighted_html
from mmnar_app.overlay import overlay, png_bytes

if TYPE_CHECKING:
    from mmnar_core.explain.explanation import Explanation

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2rem auto;color:#0f172a;padding:0 1rem}
.banner{background:#fef3c7;border:1px solid #f59e0b;padding:.6rem 1rem;border-radius:6px}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #cbd5e1;padding:.3rem .6rem;text-align:left}
.meta{color:#475569;font-size:.9rem}h2{border-bottom:1px solid #e2e8f0;padding-bottom:.2rem}"""


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _summary_card(explanation: Explanation, task: str) -> list[str]:
    """The outcome's summary card (mmnar_core.explain.summary) as the Patient page shows it; nothing for an
    assessment saved before the card existed."""
    card = next((c for c in explanation.summary() if c.task == task), None)
    if card is None:
        return []
    drivers = "".join(f"<li>{html.escape(d.sentence)}</li>" for d in card.drivers)
    return [
        f"<h2>Summary: {html.escape(task_name(task))} {percent(card.risk)} ({html.escape(card.band)})</h2>",
        f"<p>{html.escape(card.headline)}</p><p>{html.escape(card.comparison)}</p>",
        f"<p><b>How reliable here.</b> {html.escape(card.reliability)}</p>",
        f"<p><b>What drives it most.</b></p><ol>{drivers}</ol>" if drivers else "",
    ]


def build_html(assessment, explanations: dict[str, Explanation], synthetic: bool) -> str:
    """`assessment`: a stored Assessment; `explanations`: task -> Explanation (as saved)."""
    first = next(iter(explanations.values()))
    prediction = first.prediction
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Assessment #{assessment.id}</title>"
        f"<style>{STYLE}</style></head><body>"
    ]
    if synthetic:
        parts.append("<p class='banner'><b>Demo model trained on synthetic data. Not for clinical use.</b></p>")
    parts.append(
        f"<h1>Assessment #{assessment.id}: {html.escape(assessment.patient_label)}</h1>"
        f"<p class='meta'>Saved {assessment.created_at:%Y-%m-%d %H:%M UTC} by {html.escape(assessment.user)} · "
        f"model {html.escape(assessment.model_version)} · input hash <code>{assessment.input_hash[:16]}</code></p>"
    )
    if assessment.note:
        parts.append(f"<p><b>Note:</b> {html.escape(assessment.note)}</p>")
    report = prediction.distribution
    if report is not None and report.flagged:
        reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in report.reasons)
        parts.append(f"<div class='banner'><b>{html.escape(report.summary)}</b><ul>{reasons}</ul></div>")
    parts.append(
        "<h2>Risks</h2>"
        + _table(
            [
                {
                    "outcome": task_name(r.task),
                    "risk": percent(r.risk),
                    "model uncertainty (95 %)": f"{percent(r.low)} to {percent(r.high)}",
                }
                for r in prediction.risks
            ]
        )
    )
    for task, explanation in explanations.items():
        parts += _summary_card(explanation, task)
    parts.append(
        f"<p>Available: {html.escape(pattern_name(prediction.available))}. Missing: "
        f"{html.escape(', '.join(modality_name(m) for m in prediction.missing) or 'nothing')}.</p>"
    )
    include_js = "inline"
    for task, explanation in explanations.items():
        parts.append(f"<h2>Why: {html.escape(task_name(task))}</h2>")
        figures = []
        if explanation.what_if is not None:
            figures.append(charts.shapley_figure(explanation.what_if, task))
            if explanation.what_if.ordering is not None:
                figures.append(charts.ordering_figure(explanation.what_if.ordering, task))
            absent = charts.absent_figure(explanation.what_if.absent, task)
            if absent is not None:
                figures.append(absent)
            for item in explanation.what_if.absent:
                verdict = item.estimate.verdict.get(task) if item.estimate is not None else None
                parts.append(
                    f"<p><b>{html.escape(modality_name(item.modality))}, if obtained:</b> "
                    f"{html.escape(verdict or item.note)}</p>"
                )
        figures += [
            charts.tabular_figure(t.features, task, names=feature_names(explanation)) for t in explanation.tabular
        ]
        for figure in figures:
            parts.append(pio.to_html(figure, include_plotlyjs=include_js, full_html=False))
            include_js = False
        if explanation.what_if is not None and explanation.what_if.shapley:
            parts.append(
                _table(contribution_rows(explanation.what_if, task))
                + f"<p class='meta'>{html.escape(CONTRIBUTIONS_EXPLAINED)}</p>"
            )
        if explanation.what_if is not None and explanation.what_if.ordering is not None:
            parts.append(
                _table(ordering_rows(explanation.what_if.ordering, task))
                + f"<p class='meta'>{html.escape(ORDERING_EXPLAINED)}</p>"
            )
        for image in explanation.images:
            stored = assessment.files.get(image.modality)
            if stored is not None and task in image.integrated_gradients:
                png = png_bytes(overlay(stored.data, image.integrated_gradients[task].array(), 0.6, True))
                parts.append(
                    f"<h3>{html.escape(modality_name(image.modality))} (Integrated Gradients; red raises, "
                    f"blue lowers the risk)</h3><img alt='X-ray with attribution heatmap' style='max-width:480px' "
                    f"src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"
                )
        for text in explanation.texts:
            note = assessment.inputs.get("texts", {}).get(text.modality, "")
            if text.phrases:  # phrase deletion (issue 16): the phrases that moved the risk most, then the note
                parts.append(
                    f"<h3>{html.escape(modality_name(text.modality))} (top 10 phrases highlighted)</h3>"
                    + _table(phrase_rows(text, task))
                    + highlighted_html(note, text.phrases, task, 10)
                )
                continue
            parts.append(
                f"<h3>{html.escape(modality_name(text.modality))} (top 20 words highlighted)</h3>"
                + highlighted_html(note, text.words, task, 20)
            )
    parts.append(
        "<h2>Technical detail</h2>"
        + _table(
            [
                {
                    "outcome": task_name(r.task),
                    "network's own risk": percent(r.raw),
                    "calibrated, before the pattern correction": percent(r.calibrated),
                    "pattern correction (logit)": f"{r.rectifier_offset:+.3f}",
                }
                for r in prediction.risks
            ]
        )
    )
    parts.append(
        "<p class='meta'>Attributions describe the model, not medicine. Generated by the MMNAR clinical risk "
        "explorer from the saved assessment, without recomputation.</p></body></html>"
    )
    return "".join(parts)
