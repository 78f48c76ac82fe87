"""MMNAR clinical risk explorer: the entry point (`streamlit run app/Home.py`). It only declares the pages
and the navigation (`st.navigation`, in the sidebar, with Material icons that render without an emoji
font); each page signs the user in and checks the role itself (`ui.page_header`)."""

from __future__ import annotations

import streamlit as st

PAGES = [
    st.Page("welcome.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/1_Patient.py", title="Patient", icon=":material/stethoscope:", url_path="Patient"),
    st.Page("pages/2_Model_card.py", title="Model card", icon=":material/monitoring:", url_path="Model_card"),
    st.Page("pages/3_History.py", title="History", icon=":material/history:", url_path="History"),
    st.Page("pages/4_Admin.py", title="Admin", icon=":material/admin_panel_settings:", url_path="Admin"),
]
st.navigation(PAGES, position="sidebar").run()
