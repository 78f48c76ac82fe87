"""Cut a cleaned note into phrases: the unit the explanation highlights (sentences and clauses, with their
negation cue kept inside).

Why phrases and not words: a clinician reads "No large pleural effusion" or "Severe sepsis from a
pulmonary source", not "effusion" or "81"; a phrase keeps the negation with its finding
(mmnar_core.explain.negation labels it affirmed / negated / hedged), and occluding a whole phrase is a
forward-only test of what the model reads (mmnar_core.explain.note_occlusion).

Rules, on the cleaned note (`text_clean.clean_note`, one paragraph or list item per line): a phrase
crosses no line break except after a section label (below); a line is cut after a sentence end (". ", "! ", "? ", except after a short abbreviation
such as "Dr." or a single letter), after "; ", and after ", " followed by a negation, hedge or termination term
("BNP not elevated, no signs of volume overload" is two phrases). "Label: value" stays one phrase, and a
section label alone on its line joins the first phrase of the next line. The parts
partition every line: each character of the note belongs to exactly one part, so every token is occluded
with exactly one phrase; the reported span is the part without surrounding spaces and trailing
punctuation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmnar_core.explain.negation import PRE_HEDGE, PRE_NEGATION, TERMINATION, assertion_of

ABBREVIATIONS = {"dr", "mr", "mrs", "ms", "vs", "st", "no", "approx", "e.g", "i.e", "etc", "pt", "fig", "resp"}
_CUT_AFTER = re.compile(r"[.!?;](?=\s+\S)")
_LABEL = re.compile(r"^\s*[A-Za-z][\w /&()-]{0,60}:\s*$")  # a section label alone on its line
_COMMA_CUE = re.compile(
    r",(?=\s+(?:"
    + "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in PRE_NEGATION + PRE_HEDGE + TERMINATION)
    + r")\b)",
    re.I,
)
_TRAILING = " \t,;:."
_CONTENT = re.compile(r"\w")  # a part of only spaces and punctuation is no phrase ("___" is one: a de-identified name)
_BULLET = re.compile(r"^\s*[-#*\u2022]+\s+")


@dataclass(frozen=True)
class Phrase:
    """One phrase of a cleaned note: `part` = [start, end) of the characters it owns (for token
    assignment), `span` = the displayed [start, end) (no outer spaces, no trailing punctuation)."""

    part: tuple[int, int]
    span: tuple[int, int]
    text: str
    assertion: str  # affirmed / negated / hedged (mmnar_core.explain.negation)
    cue: str | None


def _cuts(line: str) -> list[int]:
    cuts = set()
    for match in _CUT_AFTER.finditer(line):
        end = match.end()
        if line[match.start()] == ".":
            word = re.search(r"([\w.]+)\.$", line[:end])
            if word and (word.group(1).lower() in ABBREVIATIONS or len(word.group(1)) == 1):
                continue
        cuts.add(end)
    cuts.update(match.end() for match in _COMMA_CUE.finditer(line))  # the comma stays with the left part
    return sorted(cuts)


def split_phrases(text: str) -> list[Phrase]:
    """The phrases of a cleaned note, in order; parts of only spaces or punctuation are dropped. A section
    label alone on its line ("Chief Complaint:") opens the first phrase of the next line, so the label is
    read (and deleted) with what it introduces: one transformer pass fewer per label."""
    phrases: list[Phrase] = []
    offset = 0
    label: tuple[int, int] | None = None  # (part start, span start) of a pending section label
    lines = text.split("\n")
    for n, line in enumerate(lines):
        bounds = [0, *_cuts(line), len(line)]
        for a, b in zip(bounds, bounds[1:]):
            part = line[a:b]
            body = _BULLET.sub("", part)  # "- item", "# Problem", "* item": the bullet is not shown
            stripped = body.strip().rstrip(_TRAILING)
            if not _CONTENT.search(stripped):
                continue
            lead = len(part) - len(body) + len(body) - len(body.lstrip())
            part_start, start, end = offset + a, offset + a + lead, offset + a + lead + len(stripped)
            if _LABEL.match(line) and n + 1 < len(lines) and not _LABEL.match(lines[n + 1]):
                label = (part_start, start)
                continue
            if label is not None:
                part_start, start, label = label[0], label[1], None
            shown = text[start:end]
            assertion, cue = assertion_of(shown)
            phrases.append(Phrase((part_start, offset + b), (start, end), shown, assertion, cue))
        offset += len(line) + 1
    return phrases


def token_phrase(phrases: list[Phrase], offsets: list[tuple[int, int]]) -> list[int]:
    """Per token (its (start, end) in the cleaned text): the index of the phrase whose part holds its first
    character, -1 for none (a token in a dropped punctuation-only part)."""
    owner: list[int] = []
    k = 0
    for start, _ in offsets:
        while k < len(phrases) and phrases[k].part[1] <= start:
            k += 1
        owner.append(k if k < len(phrases) and phrases[k].part[0] <= start else -1)
    return owner
