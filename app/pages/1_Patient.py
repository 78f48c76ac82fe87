"""Patient page: bring one patient's available modalities, analyse, see the risks and why, play what-if,
save the assessment. Answer first: the patient and the Analyse button sit in a bar that stays on screen;
once analysed, the results come first and the form folds into one line of the analysed inputs.

The form is always rendered at the same place of the page (folded with CSS, never moved or left out), so
the browser keeps every field it was given: a field the browser never showed (a hidden tab, a closed
expander) could otherwise come back empty on the next click (seen in tests/test_app_patient_switch.py)."""

from __future__ import annotations

import streamlit as st

from mmnar_app import patient_form as form
from mmnar_app import patient_results
from mmnar_app.display import modality_name
from mmnar_app.page_style import fold_inputs, page_style
from mmnar_app.plain_text import plain
from mmnar_app.ui import page_header, service, store
from mmnar_core.schema import ModalityKind

user = page_header("Patient", require="analyse").username  # clinicians (and the local demo user)
svc = service()
info = svc.info
state = st.session_state
form.init_state(info)
page_style()

# ------------------------------------------------------------------ the bar: who, and the action
with st.container(key="patient_bar"):
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    left.selectbox(
        "Patient",
        form.patient_choices(),
        key="patient_choice",
        on_change=form.load_choice,
        args=(info,),
        help="A demo patient (synthetic, from the test split: never seen in training) or a new patient.",
    )
    # no help tooltip: it opened over the bar after every click (the outcome switch says every outcome is analysed)
    clicked = right.button("Analyse", type="primary", key="analyse", width="stretch")
    st.caption("Available now: " + form.availability_summary(info))
# the analysis' progress and messages have a slot of their own above the results, so the results keep their
# place in the page whether or not a status is shown: the browser then updates their charts instead of
# drawing every one again (that redrawing was 0.4-0.7 s of every re-analysis from the cache)
status_area = st.container()
results_area = st.container()  # filled below, above the inputs: the answer first
inputs_area = st.container(key="patient_inputs")

if clicked:
    with status_area:
        form.analyse(svc, store(), user)
analysis = state.get("analysis")

with inputs_area:
    if analysis is not None:
        shown = st.toggle(
            f"Analysed inputs: {plain(form.inputs_summary(info, analysis))}. Show them to change them.",
            key=form.widget_key("show_inputs"),
        )
        fold_inputs(not shown)
    with st.container(key="patient_inputs_body"):
        form.label_input()
        for modality in info.modalities:
            name, kind = modality.name, modality.kind
            with st.container(border=True):
                st.markdown(f"**{modality_name(name)}**")
                if kind is ModalityKind.TABULAR:
                    form.structured_inputs(info, name)
                elif kind is ModalityKind.IMAGE:
                    form.image_input(info, name)
                else:
                    form.text_input(info, name)

if analysis is not None:
    if form.inputs_changed(analysis):
        status_area.info("The inputs changed since this analysis. Press **Analyse** to update it.")
    with results_area:
        explanation = analysis["explanation"]  # every outcome
        patient_results.results(
            explanation, info.tasks, analysis["image_bytes"], analysis["texts"], analysis.get("pending_refused")
        )
        st.caption(form.timing_line(analysis))
    with status_area:
        form.finish_pending(svc, analysis)  # the attributions within each modality, after the risks are on screen
    with results_area:
        form.save_panel(info, store(), user, analysis)
form.mark_rendered()  # the whole form of this patient is on screen: Analyse now acts on it
