"""The Patient page's results, answer first, from the one analysis of every outcome: `ui.render_results` with
its what-if box and its attributions as fragments, so switching the outcome shown reruns only the results,
a what-if toggle only its table, a heatmap or highlight control only the attributions (`st.fragment`), never
the form or the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from mmnar_app.display import task_name
from mmnar_app.ui import render_results, render_why, what_if_box

if TYPE_CHECKING:
    from mmnar_core.explain.explanation import Explanation

_what_if = st.fragment(what_if_box)  # a toggle reruns this alone (every subset is precomputed)
_why = st.fragment(render_why)  # the map, opacity and highlight controls rerun this alone


@st.fragment
def results(
    explanation: Explanation,
    tasks: list[str],
    images: dict[str, bytes],
    texts: dict[str, str],
    refused: str | None = None,
) -> None:
    """Every outcome's results; the outcome switch reruns only this fragment (nothing is computed: the
    explanation holds every outcome). `refused`: why its pending attributions were not computed."""
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
    render_results(explanation, task, images, texts, "live", what_if_part=_what_if, why_part=_why, refused=refused)
