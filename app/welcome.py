"""Home: what the tool does, where to start, and (for admins) where the data lives."""

from __future__ import annotations

import streamlit as st

from mmnar_app.display import modality_name, task_name
from mmnar_app.plain_text import plain
from mmnar_app.ui import page_header, service, settings, store

principal = page_header("MMNAR clinical risk explorer")  # every signed-in role
info = service().info
st.markdown(
    f"""
Predicts **{", ".join(task_name(t)[:1].lower() + task_name(t)[1:] for t in info.tasks)}** after discharge from whichever of
**{", ".join(modality_name(m.name) for m in info.modalities)}** a patient has, and explains each
prediction: which parts of the record drive it, how much each modality contributes, how the risk would
change without a modality, and what obtaining an absent one is likely to do.

The model accounts for modalities being **missing not at random** (an X-ray is ordered because a clinician
was worried): it sees the missingness pattern, and a per-pattern correction fitted on held-out patients
keeps the risks calibrated for each pattern.
"""
)
if principal.can("analyse"):
    st.page_link(
        "pages/1_Patient.py",
        label="**Start here: analyse a patient** (demo patients ready to open)",
        icon=":material/stethoscope:",
    )
st.page_link(
    "pages/2_Model_card.py", label="How good is the model, and for whom (model card)", icon=":material/monitoring:"
)
if principal.can("history"):
    st.page_link(
        "pages/3_History.py",
        label="Saved assessments, comparisons, exports and the audit log",
        icon=":material/history:",
    )
if principal.can("admin"):
    st.page_link(
        "pages/4_Admin.py", label="Users and roles, audit log export (admin)", icon=":material/admin_panel_settings:"
    )
if principal.can("admin"):  # counts and paths describe the deployment: for admins only
    s = settings()
    st.caption(
        f"Saved assessments: {store().count_assessments()} in {plain(store().url)}. "
        f"Model bundle: {plain(s.bundle_dir)}."
    )
    for line in store().permission_warnings:
        st.warning(plain(line))
