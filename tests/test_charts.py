"""The app's charts (mmnar_app.charts) on hand-made results: no axis repeats a tick label, risks are in %
and changes in percentage points (never probabilities), the risk labels sit clear of the interval whiskers,
text is dark enough to read, and every chart carries its data table and text alternative."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import plotly.graph_objects as go
import pytest

from mmnar_app import charts
from mmnar_core.results import (
    AbsentModality,
    MissingPart,
    ModalityParts,
    ObtainedEstimate,
    OrderingSplit,
    SubsetRisks,
    TaskRisk,
    WhatIfResult,
)

from support.contrast import contrast

TASKS = ["readmission_30d", "death_180d"]
OPTIONAL = ["structured", "cxr", "discharge_note"]


def task_risk(task: str, risk: float, low: float, high: float) -> TaskRisk:
    return TaskRisk(task, risk, low, high, raw=risk, calibrated=risk, rectifier_offset=0.0, pattern_residual=0.0)


def what_if(base: float = 0.041, step: float = 0.004) -> WhatIfResult:
    """Risks that grow by `step` per modality from `base`: a narrow range, where '.0%' ticks repeated."""
    subsets = [
        SubsetRisks(list(s), 0, {t: base + step * len(s) + 0.001 * i for i, t in enumerate(TASKS)})
        for n in range(len(OPTIONAL) + 1)
        for s in itertools.combinations(OPTIONAL, n)
    ]
    shapley = {m: {t: step for t in TASKS} for m in OPTIONAL}
    estimate = ObtainedEstimate(
        current={t: base + 3 * step for t in TASKS},
        mean={t: base + 3 * step + 0.002 for t in TASKS},
        p10={t: base + 3 * step - 0.003 for t in TASKS},
        p90={t: base + 3 * step + 0.006 for t in TASKS},
        n_reference=120,
        n_candidates=80,
    )
    ordering = OrderingSplit(
        tasks=TASKS,
        available=OPTIONAL,
        none_risk={t: base for t in TASKS},
        pattern_risk={t: base + step for t in TASKS},
        risk={t: base + 3 * step for t in TASKS},
        parts=[
            ModalityParts(m, {t: step / 3 for t in TASKS}, {t: -step / 7 for t in TASKS}, {t: step for t in TASKS})
            for m in OPTIONAL
        ],
        missing=[MissingPart("radiology_report", {t: -0.0004 for t in TASKS}, {t: base for t in TASKS})],
    )
    return WhatIfResult(
        "p1", TASKS, OPTIONAL, subsets, shapley, [AbsentModality("radiology_report", "ok", estimate)], ordering
    )


def features() -> list:
    return [
        SimpleNamespace(feature=f"f{i}", value=float(i), unit="mg/dL", missing=False, attribution={"death_180d": a})
        for i, a in enumerate([0.0031, -0.0012, 0.0004, -0.00005])
    ]


def figures() -> dict[str, object]:
    w = what_if()
    risks = [task_risk("readmission_30d", 0.043, 0.041, 0.047), task_risk("death_180d", 0.051, 0.046, 0.058)]
    reliability = {"count": [40, 0, 12], "mean_predicted": [0.01, 0.0, 0.035], "observed_rate": [0.012, 0.0, 0.03]}
    return {
        "risk": charts.risk_figure(risks),
        "shapley": charts.shapley_figure(w, "death_180d"),
        "ordering": charts.ordering_figure(w.ordering, "death_180d"),
        "tabular": charts.tabular_figure(features(), "death_180d"),
        "absent": charts.absent_figure(w.absent, "death_180d"),
        "reliability": charts.reliability_figure(reliability, "death_180d"),
        "patterns": charts.pattern_counts_figure({"1": 7, "3": 3, "7": 2}, ["structured", "cxr", "discharge_note"]),
    }


def numeric_axes(fig) -> list:
    return [fig.layout[name] for name in ("xaxis", "yaxis") if fig.layout[name].dtick is not None]


@pytest.mark.parametrize("name", list(figures()))
def test_no_axis_repeats_a_tick_label(name):
    fig = figures()[name]
    axes = numeric_axes(fig)
    assert axes, f"{name}: no numeric axis with explicit ticks"
    for axis in axes:
        labels = charts.tick_labels(axis)
        assert len(labels) >= 2, (name, labels)
        assert len(set(labels)) == len(labels), (name, labels)
        assert "%" not in axis.tickformat  # d3's percent format: the unit is the suffix, values are already %


def test_nice_axis_labels_are_distinct_where_plotly_repeated_them():
    # plotly's ".0%" on a 4-6 % range (values as probabilities) wrote "4% 4% 5% 5% 6%"; a broken step or too few
    # decimals would repeat here too, over ranges from 0.05 points to 90 points wide
    for low, high in [(4.1, 5.9), (0.0, 0.12), (-0.05, 0.02), (0.3, 0.5), (12.0, 12.4), (0.0, 95.0), (-3.0, 7.5)]:
        for signed in (False, True):
            axis = SimpleNamespace(**charts.nice_axis(low, high, signed=signed, suffix=" %"))
            labels = charts.tick_labels(axis)
            assert len(labels) >= 3 and len(set(labels)) == len(labels), (low, high, labels)


def test_risks_in_percent_and_changes_in_points():
    figs = figures()
    bar = figs["risk"].data[0]
    assert list(bar.x) == pytest.approx([4.3, 5.1])  # %, not 0.043
    waterfall = figs["shapley"].data[0]
    assert waterfall.y[0] == pytest.approx(4.2) and list(waterfall.y[1:4]) == pytest.approx([0.4] * 3)
    assert all(t.endswith("pts") for t in waterfall.text[1:4]) and waterfall.text[0].endswith("%")
    assert list(figs["tabular"].data[0].x) == pytest.approx([-0.005, 0.04, -0.12, 0.31])
    assert list(figs["absent"].data[1].x) == pytest.approx([100 * (0.041 + 0.012 + 0.002)])
    for name, fig in figs.items():
        for trace in fig.data:
            template = trace.hovertemplate or ""
            assert ":.1%" not in template and ":.0%" not in template, (name, template)  # no probability format
        for axis in numeric_axes(fig):
            if name != "patterns":
                assert axis.ticksuffix == " %" or "points" in (axis.title.text or ""), (name, axis.title.text)


def test_risk_labels_sit_beyond_the_whiskers():
    risks = [task_risk("readmission_30d", 0.20, 0.10, 0.45), task_risk("death_180d", 0.02, 0.01, 0.03)]
    fig = charts.risk_figure(risks)
    bar, labels = fig.data
    assert bar.text is None  # nothing drawn where the whisker runs
    assert labels.mode == "text" and labels.textposition == "middle right"
    for x, r in zip(labels.x, risks):
        assert x > 100 * r.high  # to the right of the interval's end
    assert list(labels.text) == ["20.0 %", "2.0 %"]
    assert fig.layout.xaxis.range[1] > max(labels.x)


def test_contrast_helper_knows_the_grey_that_failed():
    assert contrast("#808495") < 4.5 < contrast(charts.AXIS_TEXT)  # streamlit's grey axis labels: 3.7:1


@pytest.mark.parametrize("name", list(figures()))
def test_text_is_dark_enough_and_the_data_is_there(name):
    fig = figures()[name]
    assert contrast(fig.layout.font.color) >= 4.5 and contrast(fig.layout.title.font.color) >= 4.5
    for axis in (fig.layout.xaxis, fig.layout.yaxis):
        assert contrast(axis.tickfont.color) >= 4.5 and contrast(axis.title.font.color) >= 4.5
    rows = charts.data_rows(fig)
    assert rows and all(set(row) == set(rows[0]) for row in rows)  # a table: the same columns on every row
    alt = charts.alt_text(fig)
    assert len(alt) > 40 and any(ch.isdigit() for ch in alt)


def test_data_rows_say_the_direction_in_words():
    rows = charts.data_rows(figures()["tabular"])
    assert [r["direction"] for r in rows] == ["raises", "lowers", "raises", "lowers"]
    assert rows[0]["change of the risk"] == "+0.31 pts"


@pytest.mark.parametrize("name", list(figures()))
def test_charts_keep_plotly_whites_look_without_its_bulk(name):
    """The light template gives every axis, font and trace type a chart uses plotly_white's values, and the
    figure sent to the browser stays small (the whole plotly_white template added about 6 KB to each)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    fig = figures()[name]
    white = pio.templates["plotly_white"]
    template = fig.layout.template
    for part in ("xaxis", "yaxis", "hoverlabel", "colorway", "paper_bgcolor"):
        assert template.layout[part] == white.layout[part], part
    assert {t.type for t in fig.data} <= {"bar", "scatter", "waterfall"}, "a trace type the template lacks"
    assert len(template.to_plotly_json()["data"]) <= 2
    heavy = go.Figure(fig).update_layout(template="plotly_white")
    assert len(heavy.to_json()) - len(fig.to_json()) > 4_000, name


def test_figure_memo_reuses_a_figure_only_for_the_same_source_and_arguments():
    memo = charts.FigureMemo(size=3)
    w = what_if()
    first = memo.get(charts.shapley_figure, w, "death_180d")
    assert memo.get(charts.shapley_figure, w, "death_180d") is first and memo.built == 1  # shown again: reused
    assert memo.get(charts.shapley_figure, w, "readmission_30d") is not first and memo.built == 2  # other outcome
    twin = what_if()  # equal content, another analysis: never served another object's figure
    assert memo.get(charts.shapley_figure, twin, "death_180d") is not first and memo.built == 3
    assert memo.get(charts.ordering_figure, w.ordering, "death_180d") is not None and memo.built == 4
    assert memo.get(charts.shapley_figure, w, "death_180d") is not first and memo.built == 5  # bounded: evicted


def test_long_pattern_names_wrap_in_the_chart_and_stay_whole_in_its_table():
    modalities = ["structured", "cxr", "discharge_note", "radiology_report"]
    fig = charts.pattern_counts_figure({"15": 900, "5": 2000, "1": 80}, modalities)
    lines = [line for label in fig.data[0].y for line in label.split("<br>")]
    assert max(len(line) for line in lines) <= 34, lines  # the whole name (66 characters) was cut in a half column
    full = [row["pattern"] for row in charts.data_rows(fig)]
    assert "Structured EHR + Chest X-ray + Discharge summary + Radiology report" in full
    assert all("<br>" not in name for name in full)


def test_a_long_title_breaks_after_its_colon_and_its_alt_text_reads_as_one_line():
    fig = figures()["ordering"]  # "That it was obtained vs what it shows: Death within 180 days", 60 characters
    assert fig.layout.title.text == "That it was obtained vs what it shows:<br>Death within 180 days"
    assert fig.layout.margin.t >= 70  # room for the second line
    assert max(len(line) for line in fig.layout.title.text.split("<br>")) <= charts.TITLE_LINE
    assert charts.wrapped_title("Risk: Death") == "Risk: Death"  # short titles stay on one line
    shapley = figures()["shapley"].layout  # "How much each modality contributes: Death within 180 days (Shapley, ...)"
    assert max(len(line) for line in shapley.title.text.split("<br>")) <= charts.TITLE_LINE, shapley.title.text
    assert shapley.margin.t >= 90  # three lines
    assert "<br>" not in charts.alt_text(charts._layout(go.Figure(), "A long chart title that has: two parts here"))
