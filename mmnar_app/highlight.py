"""A note as HTML with each attributed word highlighted: red raises the risk, blue lowers it, strength
by |attribution| relative to the note's largest. Everything not a word is escaped text, verbatim."""

from __future__ import annotations

import html


def highlighted_html(note: str, words: list, task: str, top: int | None = None) -> str:
    """`words`: WordAttribution-like objects (text, start, end, attribution[task]) with spans into
    `note`. With `top`, only the `top` words of largest |attribution| are coloured."""
    scored = [(w.start, w.end, float(w.attribution.get(task, 0.0))) for w in words]
    scale = max((abs(s) for _, _, s in scored), default=0.0) or 1.0
    if top is not None:
        keep = set(sorted(range(len(scored)), key=lambda i: -abs(scored[i][2]))[:top])
        scored = [s for i, s in enumerate(scored) if i in keep]
    parts, position = [], 0
    for start, end, score in sorted(scored):
        if start < position:  # overlapping spans cannot be drawn twice; keep the first
            continue
        parts.append(html.escape(note[position:start]))
        strength = abs(score) / scale
        colour = "220, 38, 38" if score > 0 else "37, 99, 235"
        parts.append(
            f'<span title="{100 * score:+.2f} pts" style="background: rgba({colour}, {0.08 + 0.6 * strength:.2f}); '
            f'border-radius: 3px">{html.escape(note[start:end])}</span>'
        )
        position = end
    parts.append(html.escape(note[position:]))
    body = "".join(parts)
    return (
        '<div style="white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.85rem; '
        f'line-height: 1.5; max-height: 28rem; overflow-y: auto; padding: 0.5rem">{body}</div>'
    )
