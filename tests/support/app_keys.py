"""The widget key of a Patient-page input in an AppTest: the app's own `patient_form.widget_key` at the
generation of the patient the app is editing."""

from __future__ import annotations


def input_key(app, name: str) -> str:
    from mmnar_app.patient_form import widget_key

    return widget_key(name, app.session_state["patient_gen"])
