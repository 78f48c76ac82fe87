"""The results view's pieces (mmnar_app.ui) in Streamlit's AppTest, on hand-made results (no model): the
X-ray heatmap has its own method's caption, colour scale and text alternative; every chart has its data
table under "Data behind this chart"; the what-if scenarios are one table."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def heatmap_script():
    import io
    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    from mmnar_app import ui

    buffer = io.BytesIO()
    Image.fromarray(np.full((100, 80), 120, np.uint8)).save(buffer, format="PNG")
    ig = np.zeros((100, 80), np.float32)
    ig[80:90, 60:70] = 1.0  # lower right
    cam = np.zeros((7, 7), np.float32)
    cam[0, 3] = 1.0  # upper centre
    image = SimpleNamespace(
        modality="cxr",
        integrated_gradients={"death_180d": SimpleNamespace(array=lambda: ig)},
        gradcam={"death_180d": SimpleNamespace(array=lambda: cam)},
    )
    ui.render_heatmap(image, "death_180d", buffer.getvalue(), "k")


def test_each_map_has_its_own_caption_colour_scale_and_alt_text():
    app = AppTest.from_function(heatmap_script).run()
    assert not app.exception, app.exception
    shown = app.get("image")[0].proto.imgs[0]
    assert shown.caption.startswith("Integrated Gradients") and "lower right" in shown.alt
    assert "Colour scale, Integrated Gradients" in app.get("html")[0].proto.body
    app.radio(key="k-map-cxr").set_value("Grad-CAM").run()
    shown = app.get("image")[0].proto.imgs[0]
    assert shown.caption.startswith("Grad-CAM") and "Integrated" not in shown.caption
    assert "Grad-CAM" in shown.alt and "upper centre" in shown.alt
    assert "Colour scale, Grad-CAM" in app.get("html")[0].proto.body
    assert any("not whether that raised or lowered" in c.value for c in app.caption)


def chart_script():
    from mmnar_app import charts, ui
    from mmnar_core.results import TaskRisk

    risks = [
        TaskRisk("death_180d", 0.2, 0.1, 0.3, 0.2, 0.2, 0.0, 0.0),
        TaskRisk("icu_90d", 0.05, 0.04, 0.07, 0, 0, 0, 0),
    ]
    ui.render_chart(charts.risk_figure(risks), key="risk")


def test_every_chart_has_its_data_behind_it():
    app = AppTest.from_function(chart_script).run()
    assert not app.exception, app.exception
    assert [e.label for e in app.expander] == ["Data behind this chart"]
    table = app.table[0].value
    assert list(table.columns) == ["outcome", "risk", "95 % interval"]
    assert table.iloc[0].tolist() == ["Death within 180 days", "20.0 %", "10.0 % to 30.0 %"]


def scenarios_script():
    from mmnar_app import ui
    from mmnar_core.results import SubsetRisks, WhatIfResult

    subsets = [
        SubsetRisks([], 0, {"icu_90d": 0.01}),
        SubsetRisks(["structured"], 1, {"icu_90d": 0.10}),
        SubsetRisks(["cxr"], 2, {"icu_90d": 0.02}),
        SubsetRisks(["structured", "cxr"], 3, {"icu_90d": 0.15}),
    ]
    what_if = WhatIfResult("p", ["icu_90d"], ["structured", "cxr"], subsets, {"structured": {}, "cxr": {}})
    ui.render_scenarios(what_if, key="s")


def test_scenarios_are_one_table():
    app = AppTest.from_function(scenarios_script).run()
    assert not app.exception, app.exception
    table = app.dataframe[0].value
    assert table["scenario"].tolist()[1:] == ["Without the Structured EHR", "Without the Chest X-ray"]
    assert table["ICU admission within 90 days: change"].tolist()[1:] == ["-13.0 pts", "-5.0 pts"]


def risks_script():
    from mmnar_app import ui
    from mmnar_core.results import Prediction, TaskRisk

    risks = [
        TaskRisk("death_180d", 0.20, 0.1, 0.3, raw=0.35, calibrated=0.22, rectifier_offset=-0.1, pattern_residual=0)
    ]
    ui.render_risks(Prediction("p", 1, "structured", ["structured"], [], risks, "m"), key="r")


def test_risk_metrics_carry_no_arrow():
    # the first edition wrote the network's own risk as the metric's delta ("raw 35.0 %"), which Streamlit draws
    # with an up arrow whatever its direction; it is technical detail in a table now
    app = AppTest.from_function(risks_script).run()
    assert not app.exception, app.exception
    assert [m.value for m in app.metric] == ["20.0 %"]
    assert all(not m.proto.delta for m in app.metric)
