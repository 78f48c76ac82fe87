"""The Patient page's results, answer first, from the one analysis of every outcome: the same pieces as
`ui.render_results` (composed from its `render_*` functions) in fragments, so switching the outcome shown
reruns only the results, a what-if toggle only its table, a heatmap or highlight control only the
attributions (`st.fragment`), never the form or the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from mmnar_app.display import task_name
from mmnar_app.ui import (
    note_modalities,
    render_absent,
    render_answer,
    render_attributions,
    render_modality_parts,
    render_scenarios,
    render_what_if,
)

if TYPE_CHECKING:
    from mmnar_core.explain.explanation import Explanation
    from mmnar_core.results import WhatIfResult


@st.fragment
def _what_if(what_if: WhatIfResult, key: str) -> None:
    """The toggles and their table: a toggle reruns this alone (every subset is precomputed)."""
    with st.container(border=True):
        render_what_if(what_if, key)


@st.fragment
def _attributions(explanation: Explanation, task: str, images: dict[str, bytes], texts: dict[str, str], key: str):
    """The attributions of one outcome: the map, opacity and highlight controls rerun this alone."""
    st.subheader(f"Why: {task_name(task)}")
    render_attributions(explanation, task, images, texts, key)


@st.fragment
def results(explanation: Explanation, tasks: list[str], images: dict[str, bytes], texts: dict[str, str]) -> None:
    """Every outcome's results; the outcome switch reruns only this fragment (nothing is computed: the
    explanation holds every outcome)."""
    key = "live"
    task = (
        st.segmented_control(
            "Outcome shown",
            tasks,
            default=tasks[0],
            format_func=task_name,
            key="task",
            help="Every outcome is analysed at once: switching shows another without waiting.",
        )
        or tasks[0]
    )
    render_answer(explanation, task, key)
    what_if = explanation.what_if
    if what_if is not None:
        _what_if(what_if, key)
        render_scenarios(what_if, note_modalities(explanation, texts), key=key)
        render_modality_parts(what_if, task, key)
    _attributions(explanation, task, images, texts, key)
    if what_if is not None:
        st.subheader("Is an absent modality worth obtaining?")
        render_absent(what_if, task, key)
