"""History: saved assessments with search and filters; reopen one exactly as saved; compare two (inputs,
availability, risks, drivers and what-if side by side, differences marked); download one as a printable PDF
or a self-contained HTML report; the append-only audit log. Every table scrolls inside itself on a narrow
screen instead of widening the page."""

from __future__ import annotations

from datetime import UTC, datetime, time

import streamlit as st

from mmnar_app import history
from mmnar_app.display import task_name
from mmnar_app.page_style import table_style
from mmnar_app.plain_text import plain
from mmnar_app.ui import page_header, render_results, service, store

principal = page_header("History", require="history")  # clinicians: their own; reviewers: all
info = service().info
db = store()
user = principal.username
own_only = not principal.sees_all_assessments
table_style()

search_column, filter_column = st.columns([3, 1], vertical_alignment="bottom")
search = search_column.text_input("Search label or note", key="h_search")
with filter_column.popover("More filters", icon=":material/filter_list:", width="stretch"):
    if own_only:  # enforced on the server below, whatever this field says
        who = user
        st.text_input("User", value=user, disabled=True, key="h_user_own", help="Clinicians see their own assessments.")
    else:
        who = st.text_input("User", key="h_user")
    pattern = st.text_input("Pattern contains", key="h_pattern", help="e.g. cxr, or X-ray")
    dates = st.date_input("Saved between", value=(), key="h_dates")
since = datetime.combine(dates[0], time.min, UTC) if len(dates) >= 1 else None
until = datetime.combine(dates[1], time.max, UTC) if len(dates) == 2 else None
rows = history.with_pattern(
    db.list_assessments(search=search or None, user=who or None, since=since, until=until, limit=1000), pattern
)[:200]
st.dataframe(
    history.summary_rows(rows, info.tasks),
    hide_index=True,
    column_config=history.summary_columns(info.tasks),
    alt="Saved assessments: id, date, patient, user, modalities available, model, risk per outcome and note.",
)
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
    downloads = st.container(horizontal=True)
    downloads.download_button(
        "Download printable PDF",
        lambda: history.export_pdf(db, assessment, explanations, info.synthetic, user, info.version, task),
        file_name=f"assessment-{assessment.id}.pdf",
        mime="application/pdf",
        key="h_export_pdf",
        on_click="ignore",
        icon=":material/picture_as_pdf:",
        help="One page (two at most): summary, risks, drivers, heatmap, note excerpts, model and disclaimers.",
    )
    downloads.download_button(
        "Download HTML report",
        lambda: history.export(db, assessment, explanations, info.synthetic, user, info.version),
        file_name=f"assessment-{assessment.id}.html",
        mime="text/html",
        key="h_export",
        on_click="ignore",
        icon=":material/download:",
        help="The whole assessment in one file that opens without network, notes in full.",
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
        only_changes = st.toggle("Show only what differs", key="h_only_changes")
        for title, rows_of, alt in history.COMPARE_SECTIONS:
            table = rows_of(first, second)
            if not table:
                continue
            marked = history.changed_rows(table)
            st.markdown(f"**{title}** · {sum(marked)} of {len(table)} rows differ")
            if only_changes:
                table = [row for row, changed in zip(table, marked) if changed]
                if not table:
                    st.caption("No difference.")
                    continue
            st.table(history.marked(table), hide_index=True, border="horizontal", alt=alt)
        st.caption(
            "Rows that differ are tinted and say so in the 'difference' column (second minus first for risks "
            "and Shapley values, in percentage points). Same patient before and after adding a modality: save "
            "both, then compare them here."
        )
    else:
        st.caption("Pick two assessments.")
with tab_audit:
    st.caption(
        "Append-only: the database rejects any change or deletion of these rows."
        + (" Your own entries; reviewers see everyone's." if own_only else "")
    )
    st.dataframe(
        history.audit_rows(db.audit_log(limit=500, user=user if own_only else None)),
        hide_index=True,
        column_config=history.audit_columns(),
        alt="Audit log: time, user, action, assessment, model, input hash and detail of each audited action.",
    )
