"""The history page's logic: list rows, reopen a saved assessment exactly as it was (from its stored
outputs, never recomputed), compare two, export one; every view, comparison and export is audited."""

from __future__ import annotations

import streamlit as st

from mmnar_app.display import feature_names, modality_name, percent, signed_points, task_name
from mmnar_app.logging_setup import register_sensitive
from mmnar_core.explain.explanation import Explanation
from mmnar_core.plain_words import number


def label(summary) -> str:
    return f"#{summary.id} · {summary.patient_label} · {summary.created_at:%Y-%m-%d %H:%M} · {summary.user}"


SHORT_NAMES = {"structured": "EHR", "cxr": "X-ray", "discharge_note": "summary", "radiology_report": "radiology"}


def short_pattern(pattern: str) -> str:
    """'structured+cxr' -> 'EHR + X-ray': short enough for a table column."""
    return " + ".join(SHORT_NAMES.get(m, m.replace("_", " ")) for m in pattern.split("+")) if pattern else ""


def short_task(task: str) -> str:
    """'Readmission within 30 days' -> 'Readmission 30 d': a column header that fits its column."""
    name = task_name(task)
    words = name.split(" within ")
    if len(words) == 2:
        return f"{words[0]} {words[1].replace(' days', ' d')}"
    return name


def with_pattern(rows, words: str) -> list:
    """The rows whose availability pattern contains `words` (case-insensitive), as stored ('structured+cxr')
    or in the table's words ('EHR + X-ray'); all rows for no words."""
    wanted = (words or "").strip().casefold()
    if not wanted:
        return list(rows)
    return [r for r in rows if wanted in (r.pattern or "").casefold() or wanted in short_pattern(r.pattern).casefold()]


def summary_rows(rows, tasks: list[str]) -> list[dict]:
    """One row per saved assessment; the model column only when the rows were saved with different models."""
    models = {r.model_id for r in rows}
    out = []
    for r in rows:
        row = {"id": r.id, "patient": r.patient_label}  # then what a clinician scans for: the risks
        row.update({short_task(t): percent((r.summary or {}).get(t)) for t in tasks})
        row["available"] = short_pattern(r.pattern)
        row["saved (UTC)"] = f"{r.created_at:%Y-%m-%d %H:%M}"
        row["user"] = r.user
        if len(models) > 1:
            row["model"] = r.model_id
        row["note"] = r.note
        out.append(row)
    return out


def summary_columns(tasks: list[str]) -> dict:
    """Column widths that fit 1,280 px; the patient column stays pinned when the table scrolls sideways."""
    text = st.column_config.TextColumn
    columns = {
        "id": st.column_config.NumberColumn("id", width=44, pinned=True),
        "saved (UTC)": text(width=128),
        "patient": text(width=160, pinned=True),
        "user": text(width=100),
        "available": text(width=230, help="EHR: structured data; summary: discharge summary; radiology: report"),
        "model": text(width=150),
        "note": text(width="medium"),
    }
    columns.update({short_task(t): text(width=136, help=f"{task_name(t)}: the saved risk") for t in tasks})
    return columns


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
            icon=":material/block:",
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
    _record_export(db, assessment, user, model_version, "html")
    return document


def export_pdf(db, assessment, explanations: dict, synthetic: bool, user: str, model_version: str, task: str) -> bytes:
    """The printable PDF report (one page, two at most), built when the user clicks download (audited)."""
    from mmnar_app.pdf_report import build_pdf

    document = build_pdf(assessment, explanations, synthetic, task)
    _record_export(db, assessment, user, model_version, "pdf")
    return document


def _record_export(db, assessment, user: str, model_version: str, kind: str) -> None:
    """The audit entry of one export: who took which assessment out, in which format."""
    db.record(
        action="export",
        user=user,
        model_version=model_version,
        input_hash=assessment.input_hash,
        assessment_id=assessment.id,
        detail=kind,
    )


def compare_rows(first: tuple, second: tuple) -> list[dict]:
    """Risks of two assessments side by side, with the difference (second - first) in points."""
    (a, ea), (b, eb) = first, second
    pa, pb = _explanation(ea).prediction, _explanation(eb).prediction
    rows = [
        {
            "": "available",
            f"#{a.id}": short_pattern("+".join(pa.available)),
            f"#{b.id}": short_pattern("+".join(pb.available)),
            "difference": CHANGED if set(pa.available) != set(pb.available) else "",
        }
    ]
    risks_b = {r.task: r for r in pb.risks}
    for r in pa.risks:
        other = risks_b.get(r.task)
        rows.append(
            {
                "": task_name(r.task),
                f"#{a.id}": f"{percent(r.risk)} ({percent(r.low)} to {percent(r.high)})",
                f"#{b.id}": f"{percent(other.risk)} ({percent(other.low)} to {percent(other.high)})"
                if other
                else "n/a",
                "difference": signed_points(other.risk - r.risk) if other else "",
            }
        )
    return rows


CHANGED = "changed"
SAME = ""


def _explanation(explanations: dict) -> Explanation:
    return next(iter(explanations.values()))


def _input_value(value, unit: str | None) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(float(value), unit)  # `number` writes no unit for a count
    return str(value)


def compare_inputs(first: tuple, second: tuple) -> list[dict]:
    """Every input of the two assessments side by side, in words with units: availability of each modality,
    each structured value, each note (same text or not, its length) and each image (same file or not); the
    'difference' column says 'changed' where they differ."""
    (a, ea), (b, eb) = first, second
    xa, xb = _explanation(ea), _explanation(eb)
    names = {**feature_names(xb), **feature_names(xa)}
    units = {f.feature: f.unit for x in (xb, xa) for t in x.tabular for f in t.features}
    rows = []
    modalities = list(dict.fromkeys([*xa.prediction.available, *xa.prediction.missing, *xb.prediction.available]))
    for m in modalities:
        has_a, has_b = m in xa.prediction.available, m in xb.prediction.available
        rows.append(
            {
                "input": f"{modality_name(m)} available",
                f"#{a.id}": "yes" if has_a else "no",
                f"#{b.id}": "yes" if has_b else "no",
                "difference": CHANGED if has_a != has_b else SAME,
            }
        )
    sa, sb = a.inputs.get("structured", {}), b.inputs.get("structured", {})
    for feature in dict.fromkeys([*sa, *sb]):
        va, vb = _input_value(sa.get(feature), units.get(feature)), _input_value(sb.get(feature), units.get(feature))
        rows.append(
            {
                "input": names.get(feature, feature.replace("_", " ")),
                f"#{a.id}": va,
                f"#{b.id}": vb,
                "difference": CHANGED if sa.get(feature) != sb.get(feature) else SAME,
            }
        )
    ta, tb = a.inputs.get("texts", {}), b.inputs.get("texts", {})
    for modality in dict.fromkeys([*ta, *tb]):
        na, nb = ta.get(modality), tb.get(modality)
        rows.append(
            {
                "input": modality_name(modality),
                f"#{a.id}": f"{len(na):,} characters" if na else "none",
                f"#{b.id}": f"{len(nb):,} characters" if nb else "none",
                "difference": CHANGED if na != nb else SAME,
            }
        )
    for role in dict.fromkeys([*a.files, *b.files]):
        fa, fb = a.files.get(role), b.files.get(role)
        rows.append(
            {
                "input": f"{modality_name(role)} file",
                f"#{a.id}": fa.filename if fa else "none",
                f"#{b.id}": fb.filename if fb else "none",
                "difference": CHANGED if (fa and fa.sha256) != (fb and fb.sha256) else SAME,
            }
        )
    return rows


def compare_drivers(first: tuple, second: tuple) -> list[dict]:
    """Per outcome, the summary card's top drivers of each assessment side by side (rank by rank); a driver
    that the other assessment does not list among its top ones is named in 'difference'."""
    (a, ea), (b, eb) = first, second
    cards_a = {c.task: c for c in _explanation(ea).summary()}
    cards_b = {c.task: c for c in _explanation(eb).summary()}
    rows = []
    for task in dict.fromkeys([*cards_a, *cards_b]):
        da = cards_a[task].drivers if task in cards_a else []
        db = cards_b[task].drivers if task in cards_b else []
        labels_a, labels_b = {d.label for d in da}, {d.label for d in db}
        for rank in range(max(len(da), len(db))):
            left = da[rank] if rank < len(da) else None
            right = db[rank] if rank < len(db) else None
            only = [
                f"only #{owner}'s: {d.label}"
                for owner, d, others in ((a.id, left, labels_b), (b.id, right, labels_a))
                if d is not None and d.label not in others
            ]
            rows.append(
                {
                    "outcome": task_name(task) if rank == 0 else "",
                    "rank": rank + 1,
                    f"#{a.id}": _driver(left),
                    f"#{b.id}": _driver(right),
                    "difference": "; ".join(only) if only else SAME,
                }
            )
    return rows


def _driver(driver) -> str:
    if driver is None:
        return ""
    value = f" ({driver.value})" if driver.value and driver.value != "available" else ""
    return f"{driver.label}{value}: {signed_points(driver.effect)}"


def compare_what_if(first: tuple, second: tuple) -> list[dict]:
    """Per outcome and modality: the risk without that modality alone (the what-if toggle) and its Shapley
    value, for both assessments, with the change of the Shapley value (second - first)."""
    (a, ea), (b, eb) = first, second
    wa, wb = _explanation(ea).what_if, _explanation(eb).what_if
    if wa is None and wb is None:
        return []
    rows = []
    tasks = list(dict.fromkeys([*(wa.tasks if wa else []), *(wb.tasks if wb else [])]))
    modalities = list(dict.fromkeys([*(wa.shapley if wa else {}), *(wb.shapley if wb else {})]))
    for task in tasks:
        for m in modalities:
            left, right = _what_if_cell(wa, m, task), _what_if_cell(wb, m, task)
            va = wa.shapley[m][task] if wa and m in wa.shapley and task in wa.shapley[m] else None
            vb = wb.shapley[m][task] if wb and m in wb.shapley and task in wb.shapley[m] else None
            if va is not None and vb is not None:
                change = signed_points(vb - va)
            else:
                change = CHANGED if (va is None) != (vb is None) else SAME
            rows.append(
                {
                    "outcome": task_name(task),
                    "modality": modality_name(m),
                    f"#{a.id}": left,
                    f"#{b.id}": right,
                    "difference": change,
                }
            )
    return rows


def _what_if_cell(what_if, modality: str, task: str) -> str:
    """'without it 21.0 % · Shapley +3.2 pts', or 'not available'."""
    if what_if is None or modality not in what_if.shapley:
        return "not available"
    others = [m for m in what_if.available if m != modality]
    without = what_if.subset(others).risks[task]
    return f"without it {percent(without)} · Shapley {signed_points(what_if.shapley[modality][task])}"


def changed_rows(rows: list[dict]) -> list[bool]:
    """Which rows show a difference (for marking them): any non-empty difference other than 0."""
    return [bool(r.get("difference")) and r.get("difference") not in ("+0.0 pts", "-0.0 pts") for r in rows]


COMPARE_SECTIONS = (
    ("Risks", compare_rows, "Risk per outcome of the two assessments with the difference in percentage points."),
    ("Inputs", compare_inputs, "Every input of the two assessments side by side, differences marked."),
    ("Main drivers", compare_drivers, "Each outcome's top drivers of the two assessments side by side."),
    ("What-if", compare_what_if, "Per outcome and modality: the risk without it and its Shapley value, both."),
)
CHANGED_STYLE = "background-color: #fef3c7; font-weight: 600"


def marked(rows: list[dict]):
    """The rows as a table with the ones that differ tinted and bold (their 'difference' cell says so in words
    too). Shown with st.table: its cells wrap, so both assessments stay side by side on a phone."""
    import pandas as pd

    flags = changed_rows(rows)
    frame = pd.DataFrame(rows)
    return frame.style.apply(lambda row: [CHANGED_STYLE if flags[row.name] else ""] * len(row), axis=1)


def audit_columns() -> dict:
    text = st.column_config.TextColumn
    return {
        "at (UTC)": text(width=150, pinned=True),
        "action": text(width=80),
        "input hash": text(width=140),
        "detail": text(width="medium"),
    }


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
