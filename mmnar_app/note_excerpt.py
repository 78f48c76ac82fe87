"""A short excerpt of a note around the phrases (or words) that moved a risk most, for the printable report:
a page cannot hold a whole discharge summary, so it shows each top phrase in its sentence, ranked, with the
text between them elided. Spans are code-point offsets into the note, as the attributions store them."""

from __future__ import annotations

import re
from dataclasses import dataclass

ELLIPSIS = " … "


def _flat(text: str) -> str:
    """One line: every run of whitespace (line breaks included) as one space."""
    return re.sub(r"\s+", " ", text)


@dataclass(frozen=True)
class Segment:
    """A run of the excerpt: plain text (rank None) or a highlighted phrase with its rank (1 = moved the risk
    most) and its change of the risk (probability; x100 = percentage points)."""

    text: str
    rank: int | None = None
    effect: float = 0.0


def _sentence_bounds(note: str, start: int, end: int, context: int) -> tuple[int, int]:
    """[start, end) widened to the sentence or line around it, at most `context` characters either side
    (then cut at a space), leading and trailing whitespace left out."""
    floor = max(0, start - context)
    stop = max(note.rfind(c, floor, start) for c in ".!?\n")
    left = stop + 1 if stop >= 0 else floor
    if stop < 0 and floor > 0:
        space = note.find(" ", floor, start)
        left = space + 1 if space >= 0 else start
    ceiling = min(len(note), end + context)
    stops = [i for i in (note.find(c, end, ceiling) for c in ".!?\n") if i >= 0]
    if stops:
        right = min(stops) + (0 if note[min(stops)] == "\n" else 1)
    elif ceiling < len(note):
        space = note.rfind(" ", end, ceiling)
        right = space if space >= 0 else end
    else:
        right = ceiling
    while left < start and note[left].isspace():
        left += 1
    while right > end and note[right - 1].isspace():
        right -= 1
    return left, right


def _touch(note: str, a: tuple[int, int], b: list) -> bool:
    """Whether two windows overlap or only whitespace lies between them (then they read as one)."""
    first, second = sorted([(a[0], a[1]), (b[0], b[1])])
    return second[0] <= first[1] or not note[first[1] : second[0]].strip()


def excerpt(note: str, spans: list, task: str, k: int = 4, context: int = 140, limit: int = 900) -> list[Segment]:
    """The k spans of largest |attribution[task]| (objects with start, end, attribution) in their sentences,
    in reading order, windows merged where they overlap, elisions between; at most about `limit` characters
    (further windows are dropped, never the top-ranked one). [] when nothing was attributed."""
    ranked = sorted(spans, key=lambda s: abs(float(s.attribution.get(task, 0.0))), reverse=True)[:k]
    if not ranked or not note:
        return []
    rank = {id(s): i for i, s in enumerate(ranked, 1)}
    windows: list[list] = []  # [left, right, spans]
    budget = limit
    for span in ranked:  # by rank: the most important window is always kept
        left, right = _sentence_bounds(note, span.start, span.end, context)
        merged = next((w for w in windows if _touch(note, (left, right), w)), None)
        if merged is not None:
            budget -= max(0, merged[0] - left) + max(0, right - merged[1])
            merged[0], merged[1] = min(merged[0], left), max(merged[1], right)
            merged[2].append(span)
            continue
        if windows and right - left > budget:
            continue
        budget -= right - left
        windows.append([left, right, [span]])
    segments: list[Segment] = []
    for n, (left, right, chosen) in enumerate(sorted(windows, key=lambda w: w[0])):
        if n or left > 0:
            segments.append(Segment(ELLIPSIS.lstrip() if not segments else ELLIPSIS))
        position = left
        for span in sorted(chosen, key=lambda s: s.start):
            if span.start < position:  # overlapping spans cannot be drawn twice
                continue
            if span.start > position:
                segments.append(Segment(_flat(note[position : span.start])))
            segments.append(
                Segment(
                    _flat(note[span.start : span.end]).strip(), rank[id(span)], float(span.attribution.get(task, 0.0))
                )
            )
            position = span.end
        if right > position:
            segments.append(Segment(_flat(note[position:right])))
    if windows and max(w[1] for w in windows) < len(note.rstrip()):
        segments.append(Segment(ELLIPSIS.rstrip()))
    return segments
