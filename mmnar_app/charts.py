"""Plotly figures of the app and the exported report, built from an Explanation's parts (mmnar_core.results)
and the bundle's metrics, so the patient page, a reopened assessment and the HTML export draw the same
pictures.

One convention for every figure: risks in %, changes of a risk in percentage points (never probabilities);
every numeric axis has an explicit range and tick step whose labels are distinct (`nice_axis`); text is dark
enough for 4.5:1 contrast on white; and each figure carries its data as a table and a one-sentence text
alternative (`data_rows`, `alt_text`), which the app shows under "Data behind this chart"."""

from __future__ import annotations

import math
import re
import textwrap
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING

import plotly.graph_objects as go

from mmnar_app.display import (
    LOWERS_RGB,
    RAISES_RGB,
    direction,
    modality_name,
    nice_step,
    ordering_rows,
    pattern_name,
    percent,
    signed_points,
    task_name,
)
from mmnar_core.plain_words import number

if TYPE_CHECKING:
    from mmnar_core.results import AbsentModality, OrderingSplit, TaskRisk, WhatIfResult

RAISES, LOWERS = "#{:02x}{:02x}{:02x}".format(*RAISES_RGB), "#{:02x}{:02x}{:02x}".format(*LOWERS_RGB)
NEUTRAL, RISK = "#475569", "#0f766e"
TEXT, AXIS_TEXT, GRID = "#0f172a", "#334155", "#e2e8f0"  # 17:1 and 10:1 on white; grid lines are not text


def nice_axis(low: float, high: float, target: int = 5, suffix: str = "", signed: bool = False) -> dict:
    """Axis settings for values from `low` to `high` (in the unit shown): a 1-2-2.5-5 tick step giving about
    `target` ticks and just enough decimals that no two tick labels read the same (plotly's ".0%" on a 0-6 %
    range printed "4% 4% 5% 5% 6%")."""
    if not high > low:
        low, high = low - 0.5, high + 0.5
    step = nice_step(low, high, target)
    decimals = _decimals(step)
    return dict(
        range=[low, high],
        tick0=0,
        dtick=step,
        tickformat=f"{'+' if signed else ''}.{decimals}f",
        ticksuffix=suffix,
        showticksuffix="all",
    )


def _decimals(step: float) -> int:
    """Decimals needed to write multiples of `step` exactly (0.25 -> 2, 2.5 -> 1, 20 -> 0)."""
    for decimals in range(0, 7):
        if abs(round(step, decimals) - step) < 1e-9 * max(1.0, step):
            return decimals
    return 6


def tick_labels(axis) -> list[str]:
    """The tick labels plotly draws for an axis set by `nice_axis` (what the tests check for repeats)."""
    low, high = axis.range
    step, fmt = axis.dtick, axis.tickformat
    first = math.ceil((low - 1e-9 * step) / step)
    last = math.floor((high + 1e-9 * step) / step)
    return [format(k * step, fmt) + (axis.ticksuffix or "") for k in range(first, last + 1)]


def _padded(values: Sequence[float], pad: float = 0.08, floor: float | None = None) -> tuple[float, float]:
    """A range holding `values` with `pad` of their span on each side (and 0 when they straddle it)."""
    low, high = min(values), max(values)
    span = (high - low) or max(abs(high), 1.0)
    low, high = low - pad * span, high + pad * span
    if floor is not None:
        low = max(low, floor)
    return low, high


def _light_template() -> go.layout.Template:
    """plotly_white cut to what these charts use (bar, scatter and waterfall traces; cartesian axes): the same
    look, built once. Naming "plotly_white" on every figure validated and copied the whole template (polar,
    geo, 3-D scenes, two dozen trace types): about 30 ms a figure and 6 KB more JSON for the browser to read."""
    import plotly.io as pio

    white = pio.templates["plotly_white"]
    layout = white.layout.to_plotly_json()
    data = white.data.to_plotly_json()
    kept = ("autotypenumbers", "colorway", "font", "hovermode", "hoverlabel", "paper_bgcolor", "plot_bgcolor")
    return go.layout.Template(
        layout={k: layout[k] for k in (*kept, "xaxis", "yaxis", "shapedefaults", "annotationdefaults", "title")},
        data={k: data[k] for k in ("bar", "scatter")},
    )


LIGHT_TEMPLATE = _light_template()


class FigureMemo:
    """Built figures by (builder, source object, arguments): a rerun that shows the same analysis again (the
    outcome switch, a cached analysis, a heatmap or what-if control) reuses them instead of rebuilding, which
    costs plotly's validation, ~50 ms a chart on a 2-core CPU. Each entry holds its source, so the source's id
    cannot be reused by another object while the entry lives; keyword arguments must follow from the source."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.built = 0  # how many figures were built (the rest were reused)
        self._items: OrderedDict[tuple, tuple[object, go.Figure | None]] = OrderedDict()

    def get(self, build: Callable[..., go.Figure | None], source: object, *args: Hashable, **kwargs):
        key = (build.__qualname__, id(source), args)
        hit = self._items.get(key)
        if hit is not None and hit[0] is source:
            self._items.move_to_end(key)
            return hit[1]
        figure = build(source, *args, **kwargs)
        self.built += 1
        self._items[key] = (source, figure)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return figure


TITLE_LINE = 40  # characters of a chart title on one line: a phone's chart (~350 px) cuts a longer one


def wrapped_title(title: str) -> str:
    """A title over TITLE_LINE characters in lines of at most that many, breaking after a ': ' first (plotly
    never wraps a title; at 390 px the end was cut off)."""
    if len(title) <= TITLE_LINE:
        return title
    parts = re.split(r"(?<=:) ", title)
    return "<br>".join(line for part in parts for line in textwrap.wrap(part, TITLE_LINE))


def _layout(
    fig: go.Figure, title: str, height: int = 320, rows: list | None = None, alt: str = "", **kwargs
) -> go.Figure:
    text = wrapped_title(title)
    fig.update_layout(
        title=dict(text=text, font=dict(color=TEXT, size=15)),
        height=height,
        margin=dict(l=10, r=10, t=50 + 20 * text.count("<br>"), b=10),
        template=LIGHT_TEMPLATE,
        font=dict(size=13, color=TEXT),
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        meta=dict(rows=rows or [], alt=alt),
        **kwargs,
    )
    fig.update_layout(legend_font_color=TEXT)
    axis_style = dict(
        tickfont=dict(color=AXIS_TEXT), title_font=dict(color=AXIS_TEXT), gridcolor=GRID, zerolinecolor="#94a3b8"
    )
    fig.update_xaxes(**axis_style)
    fig.update_yaxes(**axis_style)
    return fig


def data_rows(fig: go.Figure) -> list[dict[str, str]]:
    """The figure's data as table rows (words and formatted numbers): the text alternative of the chart."""
    meta = fig.layout.meta
    return list(meta.get("rows", [])) if isinstance(meta, Mapping) else []


def alt_text(fig: go.Figure) -> str:
    """One sentence saying what the chart shows and its main numbers (for screen readers)."""
    meta = fig.layout.meta
    text = meta.get("alt", "") if isinstance(meta, Mapping) else ""
    title = (fig.layout.title.text or "Chart").replace("<br>", " ")
    return text or title


def risk_figure(risks: list[TaskRisk]) -> go.Figure:
    """Risk per outcome (rectified, calibrated) in % with its 95 % interval as whiskers; each risk is written
    to the right of its whisker, never under it (the network's own risk is technical detail: the Patient
    page's expander and the export's last table)."""
    names = [task_name(r.task) for r in risks]
    values = [100 * r.risk for r in risks]
    highs = [100 * r.high for r in risks]
    fig = go.Figure()
    fig.add_bar(
        y=names,
        x=values,
        orientation="h",
        name="risk (95 % interval as whiskers)",
        marker_color=RISK,
        error_x=dict(
            type="data",
            symmetric=False,
            array=[100 * (r.high - r.risk) for r in risks],
            arrayminus=[100 * (r.risk - r.low) for r in risks],
            color=TEXT,
            thickness=1.5,
        ),
        customdata=[[100 * r.low, 100 * r.high] for r in risks],
        hovertemplate="%{y}: %{x:.1f} % (95 %: %{customdata[0]:.1f} to %{customdata[1]:.1f} %)<extra></extra>",
    )
    top = max(highs)
    gap = 0.02 * max(top, 5.0)
    fig.add_scatter(  # the labels sit past the interval's end, so the whisker never crosses them
        y=names,
        x=[h + gap for h in highs],
        mode="text",
        text=[f"{v:.1f} %" for v in values],
        textposition="middle right",
        textfont=dict(color=TEXT),
        cliponaxis=False,
        showlegend=False,
        hoverinfo="skip",
    )
    fig.update_xaxes(title="risk, %", **nice_axis(0.0, min(100.0, top * 1.3 + 2), suffix=" %"))
    fig.update_yaxes(autorange="reversed")
    rows = [
        {"outcome": n, "risk": percent(r.risk), "95 % interval": f"{percent(r.low)} to {percent(r.high)}"}
        for n, r in zip(names, risks)
    ]
    alt = "Risk per outcome: " + "; ".join(f"{row['outcome']} {row['risk']} ({row['95 % interval']})" for row in rows)
    return _layout(
        fig,
        "Risk per outcome, with its 95 % interval",
        height=100 + 60 * len(risks),
        rows=rows,
        alt=alt,
        showlegend=False,
        margin_r=70,
    )


def shapley_figure(what_if: WhatIfResult, task: str) -> go.Figure:
    """Waterfall from the risk with no optional modality to the risk with all of them, one step per
    available modality (its exact Shapley value): the steps sum to the difference by construction. Risks in %,
    steps in percentage points."""
    none, full = what_if.empty(), what_if.full()
    names = list(what_if.shapley)
    values = [100 * what_if.shapley[m][task] for m in names]
    start, end = 100 * none.risks[task], 100 * full.risks[task]
    first = f"{pattern_name(none.modalities)} only" if none.modalities else "no data at all"
    labels = [first, *[modality_name(m) for m in names], "all available"]
    texts = [f"{start:.1f} %", *[f"{v:+.1f} pts" for v in values], f"{end:.1f} %"]
    fig = go.Figure(
        go.Waterfall(
            orientation="v",
            measure=["absolute", *["relative"] * len(names), "total"],
            x=labels,
            y=[start, *values, 0.0],
            text=texts,
            textposition="outside",
            textfont=dict(color=TEXT),
            increasing=dict(marker_color=RAISES),
            decreasing=dict(marker_color=LOWERS),
            totals=dict(marker_color=RISK),
            connector=dict(line=dict(color="#94a3b8")),
            cliponaxis=False,  # the labels above the tallest bars stay whole
            hovertemplate="%{x}: %{text}<extra></extra>",
            name="risk (%) and each modality's step (percentage points)",
        )
    )
    levels = [start]
    for v in values:
        levels.append(levels[-1] + v)
    low, high = _padded([0.0, *levels, end], pad=0.12, floor=0.0)
    fig.update_yaxes(title="risk, %", **nice_axis(low, high, suffix=" %"))
    rows = [{"step": labels[0], "risk or change": texts[0], "direction": ""}]
    rows += [
        {"step": modality_name(m), "risk or change": signed_points(what_if.shapley[m][task]), "direction": direction(v)}
        for m, v in zip(names, values)
    ]
    rows.append({"step": "all available", "risk or change": texts[-1], "direction": ""})
    alt = (
        f"{task_name(task)}: from {start:.1f} % with {first} to {end:.1f} % with all "
        "available modalities; " + "; ".join(f"{modality_name(m)} {v:+.1f} points" for m, v in zip(names, values))
    )
    return _layout(
        fig,
        f"How much each modality contributes: {task_name(task)} (Shapley, percentage points)",
        rows=rows,
        alt=alt,
        showlegend=False,
    )


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
    template = "%{x}: %{y:+.1f} pts<extra>%{fullData.name}</extra>"
    fig = go.Figure()
    fig.add_bar(x=names, y=obtained, name="it was obtained", marker_color=OBTAINED, hovertemplate=template)
    fig.add_bar(x=names, y=shows, name="what it shows", marker_color=SHOWS, hovertemplate=template)
    if absent:
        fig.add_bar(x=absent, y=missing, name="it is missing", marker_color=MISSING, hovertemplate=template)
    totals = [o + c for o, c in zip(obtained, shows)]
    fig.add_scatter(
        x=names,
        y=totals,
        mode="markers+text",
        name="both (its Shapley value)",
        marker=dict(symbol="diamond", size=11, color=TEXT),
        text=[f"{t:+.1f}" for t in totals],
        textposition="top center",
        textfont=dict(color=TEXT),
        cliponaxis=False,
        hovertemplate=template,
    )
    positive = [sum(v for v in (o, c) if v > 0) for o, c in zip(obtained, shows)]
    negative = [sum(v for v in (o, c) if v < 0) for o, c in zip(obtained, shows)]
    low, high = _padded([0.0, *positive, *negative, *totals, *missing], pad=0.15)
    # a short axis title: the long one was cut by the plot's height at 1,440 px (seen in the browser screenshot)
    fig.update_yaxes(title="change, percentage points", zeroline=True, **nice_axis(low, high, signed=True))
    rows = ordering_rows(ordering, task)
    alt = (
        f"{task_name(task)}, per modality, that it was obtained and what it shows, in percentage points: "
        + "; ".join(f"{n} {o:+.1f} and {c:+.1f}" for n, o, c in zip(names, obtained, shows))
    )
    return _layout(
        fig,
        f"That it was obtained vs what it shows: {task_name(task)}",
        height=380,
        barmode="relative",
        legend=dict(orientation="h", y=-0.2),
        rows=rows,
        alt=alt,
    )


def tabular_figure(features: list, task: str, top: int = 12, names: Mapping[str, str] | None = None) -> go.Figure:
    """The `top` structured features by |attribution|, labelled in words (`names`: feature -> words, e.g. the
    explanation's facts) with the patient's value and unit; each bar says its change, so its direction does
    not depend on its colour."""
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
    labels = [label(f) for f in ranked]
    fig = go.Figure(
        go.Bar(
            y=labels,
            x=scores,
            orientation="h",
            marker_color=[RAISES if s > 0 else LOWERS for s in scores],
            text=[f"{s:+.2f}" for s in scores],
            textposition="outside",
            textfont=dict(color=TEXT),
            cliponaxis=False,
            hovertemplate="%{y}<br>%{x:+.2f} pts<extra></extra>",
        )
    )
    low, high = _padded([0.0, *scores], pad=0.2) if scores else (-1.0, 1.0)
    fig.update_xaxes(title="contribution to the risk, percentage points", **nice_axis(low, high, signed=True))
    rows = [
        {"feature": lab, "change of the risk": f"{s:+.2f} pts", "direction": direction(s)}
        for lab, s in zip(labels[::-1], scores[::-1])
    ]
    alt = f"Structured features driving {task_name(task)}, largest first: " + "; ".join(
        f"{row['feature']} {row['change of the risk']}" for row in rows[:5]
    )
    return _layout(
        fig, f"Structured features driving {task_name(task)}", height=120 + 26 * len(ranked), rows=rows, alt=alt
    )


def absent_figure(absent: list[AbsentModality], task: str) -> go.Figure | None:
    """For each absent modality: today's risk and the estimated risk if it were obtained (mean and 10th-90th
    percentile over plausible contents of it given the patient's other data), in %."""
    rows_in = [(a.modality, a.estimate) for a in absent if a.estimate is not None]
    if not rows_in:
        return None
    names = [modality_name(modality) for modality, _ in rows_in]
    estimates = [e for _, e in rows_in]
    fig = go.Figure()
    fig.add_scatter(
        y=names,
        x=[100 * e.current[task] for e in estimates],
        mode="markers",
        name="risk today",
        marker=dict(symbol="line-ns-open", size=22, color=NEUTRAL, line=dict(width=3)),
        hovertemplate="risk today %{x:.1f} %<extra></extra>",
    )
    fig.add_scatter(
        y=names,
        x=[100 * e.mean[task] for e in estimates],
        mode="markers",
        name="estimated if obtained (10th-90th percentile)",
        marker=dict(size=11, color=OBTAINED),
        error_x=dict(
            type="data",
            symmetric=False,
            array=[100 * (e.p90[task] - e.mean[task]) for e in estimates],
            arrayminus=[100 * (e.mean[task] - e.p10[task]) for e in estimates],
        ),
        customdata=[e.n_reference for e in estimates],
        hovertemplate="mean %{x:.1f} % (model fitted on %{customdata} training patients)<extra></extra>",
    )
    values = [100 * v for e in estimates for v in (e.current[task], e.p10[task], e.p90[task], e.mean[task])]
    low, high = _padded(values, pad=0.15, floor=0.0)
    fig.update_xaxes(title="risk, %", **nice_axis(low, high, suffix=" %"))
    rows = [
        {
            "absent modality": n,
            "risk today": percent(e.current[task]),
            "estimated if obtained": percent(e.mean[task]),
            "10th-90th percentile": f"{percent(e.p10[task])} to {percent(e.p90[task])}",
            "change": signed_points(e.mean[task] - e.current[task]),
        }
        for n, e in zip(names, estimates)
    ]
    alt = f"{task_name(task)}, value of obtaining: " + "; ".join(
        f"{row['absent modality']} from {row['risk today']} to about {row['estimated if obtained']}" for row in rows
    )
    _layout(
        fig,
        f"If obtained: {task_name(task)} (estimate)",  # short: the section heading asks the question; fits 390 px
        height=170 + 50 * len(rows_in),
        legend=dict(orientation="h", y=0, yanchor="bottom", yref="container"),
        rows=rows,
        alt=alt,
    )
    return fig.update_layout(margin_b=70)  # the legend under the tick labels and the axis title, not on them


def reliability_figure(reliability: dict, task: str) -> go.Figure:
    counts = reliability["count"]
    keep = [i for i, c in enumerate(counts) if c]
    predicted = [100 * reliability["mean_predicted"][i] for i in keep]
    observed = [100 * reliability["observed_rate"][i] for i in keep]
    fig = go.Figure()
    fig.add_scatter(x=[0, 100], y=[0, 100], mode="lines", line=dict(dash="dash", color=NEUTRAL), name="perfect")
    fig.add_scatter(
        x=predicted,
        y=observed,
        mode="lines+markers",
        name="model (test split)",
        marker=dict(size=[6 + min(14, c / 40) for c in (counts[i] for i in keep)], color=RISK),
        line=dict(color=RISK),
        customdata=[counts[i] for i in keep],
        hovertemplate="predicted %{x:.1f} %<br>observed %{y:.1f} %<br>n = %{customdata}<extra></extra>",
    )
    top = min(100.0, max([*predicted, *observed, 10.0]) * 1.1)
    fig.update_xaxes(title="predicted risk, %", **nice_axis(0.0, top, suffix=" %"))
    fig.update_yaxes(title="observed rate, %", **nice_axis(0.0, top, suffix=" %"))
    rows = [
        {"predicted (bin mean)": f"{p:.1f} %", "observed rate": f"{o:.1f} %", "patients": str(counts[i])}
        for p, o, i in zip(predicted, observed, keep)
    ]
    alt = f"Reliability of {task_name(task)} on the test split: predicted against observed risk in {len(rows)} bins."
    return _layout(fig, f"Reliability: {task_name(task)}", height=360, rows=rows, alt=alt)


def pattern_counts_figure(counts: dict[str, int], modalities: list[str]) -> go.Figure:
    from mmnar_core.patterns import decode_pattern

    items = sorted(((int(p), n) for p, n in counts.items()), key=lambda item: -item[1])
    labels = [pattern_name([m for m, a in zip(modalities, decode_pattern(p, len(modalities))) if a]) for p, _ in items]
    wrapped = [_wrap_pattern(label) for label in labels]  # a half-width column: long patterns on two lines
    fig = go.Figure(
        go.Bar(
            x=[n for _, n in items],
            y=wrapped,
            orientation="h",
            marker_color=RISK,
            customdata=labels,
            hovertemplate="%{customdata}: %{x} patients<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    top = max([n for _, n in items] + [1])
    axis = nice_axis(0.0, top * 1.05, target=3)  # a narrow column: few, unrotated labels
    axis.update(dtick=max(1, math.ceil(axis["dtick"])), tickformat=",.0f")  # whole patients: 2.5 -> 3
    fig.update_xaxes(title="patients", tickangle=0, **axis)
    rows = [{"pattern": lab, "patients": f"{n:,}"} for lab, (_, n) in zip(labels, items)]
    alt = "Missingness patterns in the training data: " + "; ".join(f"{r['pattern']} {r['patients']}" for r in rows)
    return _layout(
        fig,
        "Missingness patterns in the training data (patients)",
        # plotly gives every bar the same band: each band as tall as the longest label needs
        height=120 + len(wrapped) * max(30, *(18 * (1 + w.count("<br>")) for w in wrapped)),
        rows=rows,
        alt=alt,
    )


def _wrap_pattern(label: str, width: int = 34) -> str:
    """A pattern's name ("A + B + C") broken after a '+' into lines of at most about `width` characters."""
    lines: list[str] = []
    for part in label.split(" + "):
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += f" + {part}"
        else:
            lines.append(part if not lines else f"+ {part}")
    return "<br>".join(lines)
