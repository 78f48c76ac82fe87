"""Patient page: bring one patient's available modalities, analyse, see the risks and why, play what-if,
save the assessment."""

from __future__ import annotations

import streamlit as st

from mmnar_app import patient_form as form
from mmnar_app.display import modality_name, task_name
from mmnar_app.ui import page_header, render_results, service, store
from mmnar_core.schema import ModalityKind

user = page_header("Patient", require="analyse").username  # clinicians (and the local demo user)
svc = service()
info = svc.info
state = st.session_state
form.init_state(info)

# ------------------------------------------------------------------ who
left, right = st.columns([2, 1])
left.selectbox(
    "Patient",
    form.patient_choices(),
    key="patient_choice",
    on_change=form.load_choice,
    args=(info,),
    help="A demo patient (synthetic, from the test split: never seen in training) or a new patient.",
)
right.text_input(
    "Label for this assessment",
    key="patient_label",
    help="Free text shown in the history (e.g. a pseudonym or bed number); not used by the model.",
)

# ------------------------------------------------------------------ inputs
tab_names = [modality_name(m.name) for m in info.modalities]
tabs = dict(zip(info.modality_names(), st.tabs(tab_names)))
for modality in info.modalities:
    name, kind = modality.name, modality.kind
    with tabs[name]:
        if kind is ModalityKind.TABULAR:
            form.structured_inputs(info, name)
        elif kind is ModalityKind.IMAGE:
            form.image_input(info, name)
        else:
            form.text_input(info, name)

st.caption("Available now: " + form.availability_summary(info))

# ------------------------------------------------------------------ analyse
if st.button("Analyse", type="primary", key="analyse", help="Every outcome is explained in one run."):
    form.analyse(svc, store(), user)
analysis = state.get("analysis")
task = st.segmented_control(
    "Outcome shown",
    info.tasks,
    default=info.tasks[0],
    format_func=task_name,
    key="task",
    help="Every outcome is analysed at once: switching shows another without waiting.",
)
task = task or info.tasks[0]

if analysis is not None:
    st.divider()
    if form.inputs_changed(analysis):
        st.info("The inputs changed since this analysis. Press **Analyse** to update it.")
    explanation = analysis["explanation"]  # every outcome
    render_results(explanation, task, analysis["image_bytes"], analysis["texts"], key="live")
    form.finish_pending(svc, analysis)  # the notes' attributions, after everything else is on screen
    st.divider()
    form.save_panel(info, store(), user, analysis)
