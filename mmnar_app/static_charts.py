"""The report's charts as small inline SVG (a few kB each, no script, crisp in print and in a PDF), drawn from
the same Explanation parts as the app's plotly charts (mmnar_app.charts); each carries a text alternative
(`<title>`, `aria-label`). Every change of a risk is in percentage points, every risk in percent."""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from mmnar_app.display import LOWERS_RGB, RAISES_RGB, modality_name, nice_step, pattern_name, task_name
from mmnar_core.plain_words import number

RAISES, LOWERS = ("#{:02x}{:02x}{:02x}".format(*rgb) for rgb in (RAISES_RGB, LOWERS_RGB))  # the app's red and blue
RISK, NEUTRAL, ESTIMATE = "#0f766e", "#475569", "#7c3aed"
INK, MUTED, GRID = "#0f172a", "#334155", "#cbd5e1"
FONT = 12  # px; text widths below are estimated at CHAR em per character
CHAR = 0.62


@dataclass(frozen=True)
class Row:
    """One line of a horizontal chart: a bar from `start` to `end` (None: no bar), an interval whisker from
    `low` to `high`, a marker, and the text written after whatever is drawn furthest right."""

    label: str
    start: float | None = None
    end: float | None = None
    colour: str = RISK
    text: str = ""
    low: float | None = None
    high: float | None = None
    marker: float | None = None  # a tick (e.g. today's risk)


def _width(text: str, size: float = FONT) -> float:
    return len(text) * size * CHAR


def _ticks(low: float, high: float, n: int = 5) -> list[float]:
    """About n round ticks covering [low, high] (1, 2, 2.5 or 5 times a power of ten apart), never two
    equal ones (so no repeated tick labels)."""
    import math

    step = nice_step(low, high, n)
    first = math.ceil(low / step - 1e-9) * step
    out, value = [], first
    while value <= high + 1e-12:
        out.append(round(value, 12))
        value += step
    return out


def hbar_svg(
    rows: list[Row],
    title: str,
    low: float,
    high: float,
    fmt: Callable[[float, int], str],
    axis_title: str,
    width: int = 640,
) -> str:
    """A horizontal chart: labels left, bars/whiskers/markers on a linear axis [low, high] with round
    ticks (written with as few decimals as keep them distinct: never "4 % 4 % 5 %"), a zero line when 0 is
    inside, each row's text right of its furthest mark (never on a bar or a whisker)."""
    label_w = min(width * 0.42, max((_width(r.label) for r in rows), default=0) + 12)
    fits = int((label_w - 12) / (FONT * CHAR))
    rows = [r if len(r.label) <= fits else replace(r, label=r.label[: fits - 1].rstrip() + "…") for r in rows]
    text_w = max((_width(r.text) for r in rows), default=0) + 10
    left, right = label_w, width - text_w - 4
    row_h, top = 26, 30
    height = top + row_h * len(rows) + 40
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return left + (min(max(value, low), high) - low) / span * (right - left)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{html.escape(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" '
        f'font-size="{FONT}"><title>{html.escape(title)}</title>',
        f'<text x="0" y="16" font-weight="bold" fill="{INK}" font-size="13">{html.escape(title)}</text>',
    ]
    bottom = top + row_h * len(rows)
    ticks = _ticks(low, high)
    digits = next((d for d in range(4) if len({fmt(t, d) for t in ticks}) == len(ticks)), 4)
    for tick in ticks:
        tx = x(tick)
        out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{bottom}" stroke="{GRID}" stroke-width="1"/>')
        out.append(
            f'<text x="{tx:.1f}" y="{bottom + 14}" text-anchor="middle" fill="{MUTED}">{html.escape(fmt(tick, digits))}</text>'
        )
    if low < 0 < high:
        out.append(f'<line x1="{x(0):.1f}" y1="{top}" x2="{x(0):.1f}" y2="{bottom}" stroke="{INK}" stroke-width="1"/>')
    out.append(
        f'<text x="{(left + right) / 2:.1f}" y="{bottom + 32}" text-anchor="middle" fill="{MUTED}">'
        f"{html.escape(axis_title)}</text>"
    )
    for i, row in enumerate(rows):
        y = top + i * row_h
        mid = y + row_h / 2
        out.append(
            f'<text x="{left - 8:.1f}" y="{mid + 4:.1f}" text-anchor="end" fill="{INK}">{html.escape(row.label)}</text>'
        )
        furthest = left
        if row.start is not None and row.end is not None:
            a, b = sorted((x(row.start), x(row.end)))
            out.append(
                f'<rect x="{a:.1f}" y="{y + 5}" width="{max(b - a, 1.5):.1f}" height="{row_h - 10}" fill="{row.colour}"/>'
            )
            furthest = max(furthest, b)
        if row.low is not None and row.high is not None:
            a, b = x(row.low), x(row.high)
            out.append(
                f'<path d="M{a:.1f} {mid - 6}V{mid + 6}M{a:.1f} {mid}H{b:.1f}M{b:.1f} {mid - 6}V{mid + 6}" '
                f'stroke="{INK}" stroke-width="1.5" fill="none"/>'
            )
            furthest = max(furthest, b)
        if row.marker is not None:
            m = x(row.marker)
            out.append(f'<path d="M{m:.1f} {y + 3}V{y + row_h - 3}" stroke="{NEUTRAL}" stroke-width="3"/>')
            furthest = max(furthest, m)
        if row.start is None and row.end is not None:  # a dot (an estimate) rather than a bar
            out.append(f'<circle cx="{x(row.end):.1f}" cy="{mid:.1f}" r="5" fill="{row.colour}"/>')
            furthest = max(furthest, x(row.end) + 5)
        if row.text:
            out.append(f'<text x="{furthest + 6:.1f}" y="{mid + 4:.1f}" fill="{INK}">{html.escape(row.text)}</text>')
    out.append("</svg>")
    return "".join(out)


def _pct(value: float, digits: int = 1) -> str:
    """A risk in percent: whole numbers without decimals, else `digits` of them."""
    points = 100 * value
    return f"{points:.0f} %" if abs(points - round(points)) < 1e-9 else f"{points:.{max(1, digits)}f} %"


def _pts(value: float, digits: int = 1) -> str:
    """Percentage points with their sign; 0 without one."""
    text = f"{value:+.{max(1, digits)}f}"
    return "0" if float(text) == 0 else text


def risk_svg(risks: list, width: int = 640) -> str:
    """Risk per outcome with its 95 % model uncertainty; the value is written after the whisker, never on it."""
    rows = [
        Row(
            task_name(r.task),
            0.0,
            r.risk,
            RISK,
            f"{100 * r.risk:.1f} % ({100 * r.low:.1f}-{100 * r.high:.1f})",
            r.low,
            r.high,
        )
        for r in risks
    ]
    top = max([r.high for r in risks] + [0.05])
    return hbar_svg(rows, "Risk per outcome (95 % model uncertainty)", 0.0, min(1.0, top * 1.1), _pct, "risk", width)


def shapley_svg(what_if, task: str, width: int = 640) -> str:
    """The waterfall from the risk with no optional modality to the risk with all of them, one floating bar per
    available modality (its exact Shapley value, percentage points)."""
    none, full = what_if.empty(), what_if.full()
    rows = [
        Row(
            f"with {pattern_name(none.modalities) if none.modalities else 'none of them'}",
            0.0,
            none.risks[task],
            NEUTRAL,
            _pct(none.risks[task]),
        )
    ]
    running = none.risks[task]
    for modality, values in what_if.shapley.items():
        value = values[task]
        rows.append(
            Row(
                modality_name(modality),
                running,
                running + value,
                RAISES if value > 0 else LOWERS,
                f"{100 * value:+.1f} pts",
            )
        )
        running += value
    rows.append(Row("all available", 0.0, full.risks[task], RISK, _pct(full.risks[task])))
    ends = [v for r in rows for v in (r.start, r.end) if v is not None]
    top = max(ends + [0.05])
    return hbar_svg(
        rows,
        f"How much each modality contributes: {task_name(task)} (Shapley)",
        0.0,
        min(1.0, top * 1.1),
        _pct,
        "risk; each modality's step in percentage points",
        width,
    )


def tabular_svg(
    features: list, task: str, names: Mapping[str, str] | None = None, top: int = 10, width: int = 640
) -> str:
    """The `top` structured values by the size of their contribution, in percentage points."""
    names = names or {}
    ranked = sorted(features, key=lambda f: abs(f.attribution.get(task, 0.0)), reverse=True)[:top]

    def label(f) -> str:
        name = names.get(f.feature, f.feature.replace("_", " "))
        if f.missing or f.value is None:
            return f"{name}: not recorded"
        if isinstance(f.value, (int, float)) and not isinstance(f.value, bool):
            return f"{name}: {number(float(f.value), f.unit)}"
        return f"{name}: {f.value}"

    rows = []
    for f in ranked:
        points = 100 * f.attribution.get(task, 0.0)
        rows.append(Row(label(f), 0.0, points, RAISES if points > 0 else LOWERS, f"{points:+.2f} pts"))
    bound = max([abs(r.end or 0.0) for r in rows] + [0.1]) * 1.1
    return hbar_svg(
        rows,
        f"Structured values driving {task_name(task)}",
        -bound,
        bound,
        _pts,
        "change of the risk, percentage points (red raises, blue lowers)",
        width,
    )


def absent_svg(absent: list, task: str, width: int = 640) -> str | None:
    """Per absent modality: today's risk (grey tick) and the estimate if obtained (dot, 10th-90th percentile)."""
    rows = [
        Row(
            modality_name(a.modality),
            None,
            a.estimate.mean[task],
            ESTIMATE,
            f"{_pct(a.estimate.mean[task])} (today {_pct(a.estimate.current[task])})",
            a.estimate.p10[task],
            a.estimate.p90[task],
            a.estimate.current[task],
        )
        for a in absent
        if a.estimate is not None
    ]
    if not rows:
        return None
    values = [v for r in rows for v in (r.low, r.high, r.marker) if v is not None]
    lo, hi = min(values), max(values)
    pad = max(0.01, (hi - lo) * 0.15)
    return hbar_svg(
        rows,
        f"If an absent modality were obtained: {task_name(task)} (estimate)",
        max(0.0, lo - pad),
        min(1.0, hi + pad),
        _pct,
        "risk: grey tick today; dot the estimate if obtained, line its 10th-90th percentile",
        width,
    )
