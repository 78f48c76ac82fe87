"""History: saved assessments with search and filters; reopen one exactly as saved; compare two; export
one as a self-contained HTML report; the append-only audit log."""

from __future__ import annotations

from datetime import UTC, datetime, time

import streamlit as st

from mmnar_app import history
from mmnar_app.display import task_name
from mmnar_app.plain_text import plain
from mmnar_app.ui import page_header, render_results, service, store

principal = page_header("History", require="history")  # clinicians: their own; reviewers: all
info = service().info
db = store()
user = principal.username
own_only = not principal.sees_all_assessments

with st.container(border=True):
    a, b, c, d = st.columns([2, 1, 1, 2])
    search = a.text_input("Search label or note", key="h_search")
    if own_only:  # enforced on the server below, whatever this field says
        who = user
        b.text_input("User", value=user, disabled=True, key="h_user_own", help="Clinicians see their own assessments.")
    else:
        who = b.text_input("User", key="h_user")
    pattern = c.text_input("Pattern contains", key="h_pattern", help="e.g. cxr")
    dates = d.date_input("Saved between", value=(), key="h_dates")
since = datetime.combine(dates[0], time.min, UTC) if len(dates) >= 1 else None
until = datetime.combine(dates[1], time.max, UTC) if len(dates) == 2 else None
rows = db.list_assessments(search=search or None, user=who or None, pattern=pattern or None, since=since, until=until)
st.dataframe(history.summary_rows(rows, info.tasks), hide_index=True)
if not rows:
    st.info("No saved assessments match. Analyse a patient on the Patient page and press **Save assessment**.")
    st.stop()

labels = {r.id: history.label(r) for r in rows}
tab_open, tab_compare, tab_audit = st.tabs(["Open", "Compare", "Audit log"])
with tab_open:
    chosen = st.selectbox("Assessment", list(labels), format_func=labels.get, key="h_open")
    assessment, explanations = history.load(db, chosen, user, info.version, own_only=own_only)
    task = (
        st.segmented_control(
            "Outcome", list(explanations), default=list(explanations)[0], format_func=task_name, key="h_task"
        )
        or list(explanations)[0]
    )
    st.download_button(
        "Export as HTML report",
        lambda: history.export(db, assessment, explanations, info.synthetic, user, info.version),
        file_name=f"assessment-{assessment.id}.html",
        mime="text/html",
        key="h_export",
        on_click="ignore",
    )
    st.caption(
        f"Saved {assessment.created_at:%Y-%m-%d %H:%M UTC} by {plain(assessment.user)} with model "
        f"{plain(assessment.model_version)}" + (f" · note: {plain(assessment.note)}" if assessment.note else "")
    )
    if assessment.model_id != info.model_id:
        st.warning(f"Saved with model {assessment.model_id}; the app now runs {info.model_id}. Shown exactly as saved.")
    render_results(
        explanations[task],
        task,
        history.image_bytes(assessment),
        assessment.inputs.get("texts", {}),
        key=f"saved{assessment.id}",
    )
with tab_compare:
    picked = st.multiselect(
        "Two assessments",
        list(labels),
        format_func=labels.get,
        max_selections=2,
        key="h_compare",
        default=list(labels)[:2] if len(labels) >= 2 else None,
    )
    if len(picked) == 2:
        first, second = (history.load(db, i, user, info.version, action="compare", own_only=own_only) for i in picked)
        st.dataframe(history.compare_rows(first, second), hide_index=True)
        st.caption("Same patient before and after adding a modality: save both, then compare them here.")
    else:
        st.caption("Pick two assessments.")
with tab_audit:
    st.caption(
        "Append-only: the database rejects any change or deletion of these rows."
        + (" Your own entries; reviewers see everyone's." if own_only else "")
    )
    st.dataframe(history.audit_rows(db.audit_log(limit=500, user=user if own_only else None)), hide_index=True)
