"""Plotly figures of the app and the exported report, built from an Explanation's parts (mmnar_core.results)
and the bundle's metrics, so the patient page, a reopened assessment and the HTML export draw the same
pictures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from mmnar_app.display import modality_name, pattern_name, task_name
from mmnar_core.plain_words import number

if TYPE_CHECKING:
    from mmnar_core.results import AbsentModality, OrderingSplit, TaskRisk, WhatIfResult

RAISES, LOWERS, NEUTRAL = "#c2410c", "#1d4ed8", "#64748b"


def _layout(fig: go.Figure, title: str, height: int = 320, **kwargs) -> go.Figure:
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=10, r=10, t=50, b=10),
        template="plotly_white",
        font=dict(size=13),
        **kwargs,
    )
    return fig


def risk_figure(risks: list[TaskRisk]) -> go.Figure:
    """Risk per outcome (rectified, calibrated) with its 95 % interval (the network's own risk is technical
    detail: the Patient page's expander and the export's last table)."""
    names = [task_name(r.task) for r in risks]
    fig = go.Figure()
    fig.add_bar(
        y=names,
        x=[r.risk for r in risks],
        orientation="h",
        name="risk (rectified, calibrated)",
        marker_color="#0f766e",
        error_x=dict(
            type="data",
            symmetric=False,
            array=[r.high - r.risk for r in risks],
            arrayminus=[r.risk - r.low for r in risks],
        ),
        text=[f"{100 * r.risk:.1f} %" for r in risks],
        textposition="outside",
        hovertemplate="%{y}: %{x:.1%}<extra></extra>",
    )
    top = max(r.high for r in risks)
    fig.update_xaxes(tickformat=".0%", range=[0, min(1.0, top * 1.3 + 0.02)])
    return _layout(fig, "Risk per outcome", height=80 + 60 * len(risks), legend=dict(orientation="h", y=-0.25))


def shapley_figure(what_if: WhatIfResult, task: str) -> go.Figure:
    """Waterfall from the risk with no optional modality to the risk with all of them, one step per
    available modality (its exact Shapley value): the steps sum to the difference by construction."""
    none, full = what_if.empty(), what_if.full()
    names = list(what_if.shapley)
    values = [what_if.shapley[m][task] for m in names]
    fig = go.Figure(
        go.Waterfall(
            orientation="v",
            measure=["absolute", *["relative"] * len(names), "total"],
            x=[f"without: {pattern_name(none.modalities)}", *[modality_name(m) for m in names], "all available"],
            y=[none.risks[task], *values, 0.0],
            text=[
                f"{100 * none.risks[task]:.1f} %",
                *[f"{100 * v:+.1f} pts" for v in values],
                f"{100 * full.risks[task]:.1f} %",
            ],
            textposition="outside",
            increasing=dict(marker_color=RAISES),
            decreasing=dict(marker_color=LOWERS),
            totals=dict(marker_color="#0f766e"),
            connector=dict(line=dict(color="#cbd5e1")),
            cliponaxis=False,  # the labels above the tallest bars stay whole
        )
    )
    fig.update_yaxes(tickformat=".0%")
    return _layout(fig, f"How much each modality contributes: {task_name(task)} (Shapley, percentage points)")


OBTAINED, SHOWS, MISSING = "#7c3aed", "#0891b2", "#94a3b8"


def ordering_figure(ordering: OrderingSplit, task: str) -> go.Figure:
    """Per modality, its Shapley value (the diamond) split into "it was obtained" (present with training
    content: the ordering signal) and "what it shows" (the patient's content against that), stacked; for an
    absent modality, what its absence does to the risk ("it is missing", beside the sums: not part of them)."""
    names = [modality_name(p.modality) for p in ordering.parts]
    obtained = [100 * p.obtained[task] for p in ordering.parts]
    shows = [100 * p.shows[task] for p in ordering.parts]
    absent = [modality_name(m.modality) + " (absent)" for m in ordering.missing]
    missing = [100 * m.effect[task] for m in ordering.missing]
    fig = go.Figure()
    fig.add_bar(x=names, y=obtained, name="it was obtained", marker_color=OBTAINED, hovertemplate="%{y:+.1f} pts")
    fig.add_bar(x=names, y=shows, name="what it shows", marker_color=SHOWS, hovertemplate="%{y:+.1f} pts")
    if absent:
        fig.add_bar(x=absent, y=missing, name="it is missing", marker_color=MISSING, hovertemplate="%{y:+.1f} pts")
    fig.add_scatter(
        x=names,
        y=[o + c for o, c in zip(obtained, shows)],
        mode="markers+text",
        name="both (its Shapley value)",
        marker=dict(symbol="diamond", size=11, color="#0f172a"),
        text=[f"{o + c:+.1f}" for o, c in zip(obtained, shows)],
        textposition="top center",
        cliponaxis=False,
    )
    fig.update_yaxes(title="change of the risk, percentage points", tickformat="+.1f", zeroline=True)
    return _layout(
        fig,
        f"That it was obtained vs what it shows: {task_name(task)}",
        barmode="relative",
        legend=dict(orientation="h", y=-0.2),
    )


def tabular_figure(features: list, task: str, top: int = 12, names: Mapping[str, str] | None = None) -> go.Figure:
    """The `top` structured features by |attribution|, labelled in words (`names`: feature -> words, e.g. the
    explanation's facts) with the patient's value and unit."""
    ranked = sorted(features, key=lambda f: abs(f.attribution[task]), reverse=True)[:top][::-1]
    names = names or {}

    def label(f) -> str:
        name = names.get(f.feature, f.feature.replace("_", " "))
        if f.missing or f.value is None:
            return f"{name}: not recorded"
        value = (
            number(f.value, f.unit) if isinstance(f.value, (int, float)) and not isinstance(f.value, bool) else f.value
        )
        return f"{name}: {value}"

    scores = [100 * f.attribution[task] for f in ranked]  # percentage points, the unit of every risk change
    fig = go.Figure(
        go.Bar(
            y=[label(f) for f in ranked],
            x=scores,
            orientation="h",
            marker_color=[RAISES if s > 0 else LOWERS for s in scores],
            hovertemplate="%{y}<br>%{x:+.2f} pts<extra></extra>",
        )
    )
    fig.update_xaxes(
        title="contribution to the risk, percentage points", tickformat="+.2f"
    )  # baseline: technical detail
    return _layout(fig, f"Structured features driving {task_name(task)}", height=120 + 26 * len(ranked))


def absent_figure(absent: list[AbsentModality], task: str) -> go.Figure | None:
    """For each absent modality: today's risk and the estimated risk if it were obtained (mean and 10th-90th
    percentile over plausible contents of it given the patient's other data)."""
    rows = [(a.modality, a.estimate) for a in absent if a.estimate is not None]
    if not rows:
        return None
    names = [modality_name(modality) for modality, _ in rows]
    estimates = [e for _, e in rows]
    fig = go.Figure()
    fig.add_scatter(
        y=names,
        x=[e.current[task] for e in estimates],
        mode="markers",
        name="risk today",
        marker=dict(symbol="line-ns-open", size=22, color=NEUTRAL, line=dict(width=3)),
    )
    fig.add_scatter(
        y=names,
        x=[e.mean[task] for e in estimates],
        mode="markers",
        name="estimated if obtained",
        marker=dict(size=11, color="#7c3aed"),
        error_x=dict(
            type="data",
            symmetric=False,
            array=[e.p90[task] - e.mean[task] for e in estimates],
            arrayminus=[e.mean[task] - e.p10[task] for e in estimates],
        ),
        customdata=[e.n_reference for e in estimates],
        hovertemplate="mean %{x:.1%} (model fitted on %{customdata} training patients)<extra></extra>",
    )
    fig.update_xaxes(tickformat=".1%")  # the estimates can lie within a point of each other: no repeated ticks
    _layout(
        fig,
        f"Value of obtaining an absent modality: {task_name(task)} (estimate)",
        height=150 + 50 * len(rows),
        legend=dict(orientation="h", y=0, yanchor="bottom", yref="container"),  # under the tick labels, not on them
    )
    return fig.update_layout(margin_b=60)


def reliability_figure(reliability: dict, task: str) -> go.Figure:
    counts = reliability["count"]
    keep = [i for i, c in enumerate(counts) if c]
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dash", color="#94a3b8"), name="perfect")
    fig.add_scatter(
        x=[reliability["mean_predicted"][i] for i in keep],
        y=[reliability["observed_rate"][i] for i in keep],
        mode="lines+markers",
        name="model (test split)",
        marker=dict(size=[6 + min(14, c / 40) for c in (counts[i] for i in keep)]),
        customdata=[counts[i] for i in keep],
        hovertemplate="predicted %{x:.1%}<br>observed %{y:.1%}<br>n = %{customdata}<extra></extra>",
    )
    top = max(
        [reliability["mean_predicted"][i] for i in keep] + [reliability["observed_rate"][i] for i in keep] + [0.1]
    )
    fig.update_xaxes(title="predicted risk", tickformat=".0%", range=[0, min(1, top * 1.1)])
    fig.update_yaxes(title="observed rate", tickformat=".0%", range=[0, min(1, top * 1.1)])
    return _layout(fig, f"Reliability: {task_name(task)}", height=360)


def pattern_counts_figure(counts: dict[str, int], modalities: list[str]) -> go.Figure:
    from mmnar_core.patterns import decode_pattern

    items = sorted(((int(p), n) for p, n in counts.items()), key=lambda item: -item[1])
    labels = [pattern_name([m for m, a in zip(modalities, decode_pattern(p, len(modalities))) if a]) for p, _ in items]
    fig = go.Figure(go.Bar(x=[n for _, n in items], y=labels, orientation="h", marker_color="#0f766e"))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Missingness patterns in the training data (patients)", height=120 + 30 * len(items))
