"""A note as HTML with each attributed word or phrase highlighted, readable with and without colour: the hue
says the direction (red raises the risk, blue lowers it), the shade, weight and underline say the strength
(|attribution| relative to the note's largest), and a mark after the span gives its rank and direction
(e.g. "2↑"), the same rank as the ranked list beside it. Everything not a span is escaped text, verbatim."""

from __future__ import annotations

import html

from mmnar_app.display import LOWERS_RGB, RAISES_RGB, direction, signed_points

TEXT = "#0f172a"
MAX_ALPHA = 0.55  # the strongest shade: dark text on it keeps >= 4.5:1 contrast (tests/test_highlight.py)
LEVELS = (  # share of the largest |attribution| -> (name, CSS): strength shown without colour too
    (2 / 3, "strong", "font-weight: 700; text-decoration: underline; text-decoration-thickness: 2px"),
    (1 / 3, "medium", "font-weight: 600; text-decoration: underline; text-decoration-thickness: 1px"),
    (0.0, "weak", "text-decoration: underline dotted"),
)
HIDDEN = "position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap"


def ranked(words: list, task: str, top: int | None = None) -> list:
    """The attributed spans by |attribution| on `task`, largest first (the highlight's ranks)."""
    order = sorted(words, key=lambda w: -abs(float(w.attribution.get(task, 0.0))))
    return order if top is None else order[:top]


def level(share: float) -> tuple[str, str]:
    """(name, CSS) of a span whose |attribution| is `share` of the note's largest."""
    return next((name, css) for floor, name, css in LEVELS if share >= floor)


def shade(score: float, share: float) -> tuple[tuple[int, int, int], float]:
    """The background colour and alpha of a span: red or blue, stronger for a larger share."""
    return (RAISES_RGB if score > 0 else LOWERS_RGB), 0.08 + (MAX_ALPHA - 0.08) * share


def highlighted_html(note: str, words: list, task: str, top: int | None = None, label: str = "Note") -> str:
    """`words`: WordAttribution-like objects (text, start, end, attribution[task]) with spans into
    `note`. With `top`, only the `top` words of largest |attribution| are highlighted. The note scrolls in a
    box a keyboard can reach (tabindex), named `label` for a screen reader."""
    scale = max((abs(float(w.attribution.get(task, 0.0))) for w in words), default=0.0) or 1.0
    ranks = {id(w): i for i, w in enumerate(ranked(words, task, top), 1)}
    chosen = sorted((w for w in words if id(w) in ranks), key=lambda w: (w.start, w.end))
    parts, position = [], 0
    for w in chosen:
        if w.start < position:  # overlapping spans cannot be drawn twice; keep the first
            continue
        score = float(w.attribution.get(task, 0.0))
        share = abs(score) / scale
        (red, green, blue), alpha = shade(score, share)
        strength, css = level(share)
        rank, arrow = ranks[id(w)], "↑" if score > 0 else "↓"
        parts.append(html.escape(note[position : w.start]))
        parts.append(
            f'<span title="rank {rank}: {signed_points(score, 2)}" style="background: rgba({red}, {green}, {blue}, '
            f'{alpha:.2f}); border-radius: 3px; {css}">{html.escape(note[w.start : w.end])}</span>'
            f'<sup aria-hidden="true" style="font-weight: 700; font-size: 0.7em">{rank}{arrow}</sup>'
            f'<span style="{HIDDEN}"> (rank {rank}, {strength}, {direction(score)} the risk by '
            f"{signed_points(score, 2)})</span>"
        )
        position = w.end
    parts.append(html.escape(note[position:]))
    body = "".join(parts)
    return (
        f'<div role="region" tabindex="0" aria-label="{html.escape(label)}, highlighted" style="white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.85rem; color: {TEXT}; '
        f'line-height: 1.6; max-height: 28rem; overflow-y: auto; padding: 0.5rem">{body}</div>'
    )


def legend_html(unit: str = "phrases") -> str:
    """The highlight's key: the colour scale of each direction from weak to strong, and the marks that say the
    same without colour."""

    def swatch(rgb: tuple[int, int, int], share: float) -> str:
        (red, green, blue), alpha = shade(1.0 if rgb == RAISES_RGB else -1.0, share)
        name, css = level(share)
        return (
            f'<span style="background: rgba({red}, {green}, {blue}, {alpha:.2f}); border-radius: 3px; padding: 0 0.3rem; '
            f'{css}">{name}</span>'
        )

    raises = " ".join(swatch(RAISES_RGB, s) for s in (0.2, 0.5, 1.0))
    lowers = " ".join(swatch(LOWERS_RGB, s) for s in (0.2, 0.5, 1.0))
    return (
        f'<div style="font-size: 0.85rem; color: {TEXT}; line-height: 1.9">'
        f"<div><strong>Raises the risk</strong> (↑): {raises}</div>"
        f"<div><strong>Lowers the risk</strong> (↓): {lowers}</div>"
        f"<div>Strength: the shade, the weight and the underline (dotted, thin, thick) grow with the effect. The mark "
        f"after each of the {html.escape(unit)} gives its rank in the list and its direction, e.g. 1↑.</div></div>"
    )


def ranked_rows(words: list, task: str, top: int | None = None) -> list[dict[str, str]]:
    """The highlighted spans as a ranked list: rank (the mark in the note), the words, direction, change."""
    rows = []
    for rank, w in enumerate(ranked(words, task, top), 1):
        score = float(w.attribution.get(task, 0.0))
        text = " ".join(w.text.split())
        rows.append(
            {
                "rank": f"{rank}{'↑' if score > 0 else '↓'}",
                "words": text if len(text) <= 120 else text[:119] + "…",
                "effect": f"{direction(score)} the risk",
                "change of the risk": signed_points(score, 2),
            }
        )
    return rows
