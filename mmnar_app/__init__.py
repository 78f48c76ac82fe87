"""The clinician app's support code: demo patients, storage, charts, reports (Streamlit pages live in app/)."""
