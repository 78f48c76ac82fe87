"""The history page's logic: list rows, reopen a saved assessment exactly as it was (from its stored
outputs, never recomputed), compare two, export one; every view, comparison and export is audited."""

from __future__ import annotations

import streamlit as st

from mmnar_app.display import pattern_name, percent, signed_points, task_name
from mmnar_app.logging_setup import register_sensitive
from mmnar_core.explain.explanation import Explanation


def label(summary) -> str:
    return f"#{summary.id} · {summary.patient_label} · {summary.created_at:%Y-%m-%d %H:%M} · {summary.user}"


def summary_rows(rows, tasks: list[str]) -> list[dict]:
    out = []
    for r in rows:
        row = {
            "id": r.id,
            "saved (UTC)": f"{r.created_at:%Y-%m-%d %H:%M}",
            "patient": r.patient_label,
            "user": r.user,
            "available": pattern_name(r.pattern.split("+")) if r.pattern else "",
            "model": r.model_id,
        }
        row.update({task_name(t): percent((r.summary or {}).get(t)) for t in tasks})
        row["note"] = r.note
        out.append(row)
    return out


@st.cache_resource(max_entries=16, show_spinner=False)
def _stored(_db, database: str, assessment_id: int):
    """Assessments are never changed once saved, so each is read, checked and parsed once per process, not
    on every rerun of the page (every widget click reruns it)."""
    assessment = _db.get_assessment(assessment_id)
    explanations = {}
    for stored in assessment.outputs["explanations"].values():  # one per outcome (older), or one of them all
        explanation = Explanation.from_dict(stored)
        explanations.update(dict.fromkeys(explanation.tasks, explanation))
    return assessment, explanations


def load(db, assessment_id: int, user: str, model_version: str, action: str = "view", own_only: bool = False):
    """The stored assessment and its explanations; audits the first `action` per session and id.

    own_only (clinicians): an assessment saved by someone else is refused on the server (audited as
    "denied", the page stops), whatever the page offered."""
    assessment, explanations = _stored(db, db.url, assessment_id)
    if own_only and assessment.user != user:
        db.record(
            action="denied",
            user=user,
            model_version=model_version,
            input_hash=assessment.input_hash,
            assessment_id=assessment_id,
            detail=f"{action}: assessment saved by another user",
        )
        st.error(
            "**Access denied.** Clinicians can open only the assessments they saved. This attempt has been "
            "recorded in the audit log.",
            icon="🚫",
        )
        st.stop()
    register_sensitive(assessment.patient_label, words=True)
    register_sensitive(
        assessment.note, *assessment.inputs.get("texts", {}).values(), *(f.filename for f in assessment.files.values())
    )
    seen = st.session_state.setdefault("audited", set())
    if (action, assessment_id) not in seen:
        db.record(
            action=action,
            user=user,
            model_version=model_version,
            input_hash=assessment.input_hash,
            assessment_id=assessment_id,
        )
        seen.add((action, assessment_id))
    return assessment, explanations


def image_bytes(assessment) -> dict[str, bytes]:
    return {role: stored.data for role, stored in assessment.files.items()}


def export(db, assessment, explanations: dict, synthetic: bool, user: str, model_version: str) -> str:
    """The HTML report, built when the user clicks download (audited as an export)."""
    from mmnar_app.report import build_html

    document = build_html(assessment, explanations, synthetic)
    db.record(
        action="export",
        user=user,
        model_version=model_version,
        input_hash=assessment.input_hash,
        assessment_id=assessment.id,
        detail="html",
    )
    return document


def compare_rows(first: tuple, second: tuple) -> list[dict]:
    """Risks of two assessments side by side, with the difference (second - first)."""
    (a, ea), (b, eb) = first, second
    pa, pb = next(iter(ea.values())).prediction, next(iter(eb.values())).prediction
    rows = [
        {
            "": "available",
            f"#{a.id}": pattern_name(pa.available),
            f"#{b.id}": pattern_name(pb.available),
            "difference": "",
        }
    ]
    risks_b = {r.task: r for r in pb.risks}
    for r in pa.risks:
        other = risks_b.get(r.task)
        rows.append(
            {
                "": task_name(r.task),
                f"#{a.id}": percent(r.risk),
                f"#{b.id}": percent(other.risk) if other else "n/a",
                "difference": signed_points(other.risk - r.risk) if other else "",
            }
        )
    return rows


def audit_rows(entries) -> list[dict]:
    return [
        {
            "at (UTC)": f"{e.at:%Y-%m-%d %H:%M:%S}",
            "user": e.user,
            "action": e.action,
            "assessment": e.assessment_id,
            "model": e.model_version,
            "input hash": (e.input_hash or "")[:16],
            "detail": e.detail,
        }
        for e in entries
    ]
