"""A small rule-based assertion detector (NegEx-style) for note phrases: is a finding affirmed, negated or
hedged?

Why: an attribution on "No large pleural effusion" must not be read as "pleural effusion raises the risk".
The explanation reports note phrases with the negation cue kept inside the phrase and an `assertion`
label, so the app can show a negated finding as what it is. The rules are NegEx's (Chapman et al. 2001),
cut down to clinical-note English:

- a pre-negation cue ("no", "denies", "without", "negative for", "no evidence of", ...) negates from the
  cue to the end of the phrase, or to the first termination term ("but", "however", "although", ...);
- a post-negation cue ("was ruled out", "is negative", "not seen") negates from the start of the phrase to
  the cue;
- pseudo-negations ("no change", "not only", "without difficulty"...) negate nothing;
- hedge cues ("possible", "cannot exclude", "may represent", "unlikely", ...) mark the scope as hedged
  when no negation covers it.

Scopes never cross a phrase: the caller (mmnar_core.explain.phrases) cuts the note into phrases at
sentence and clause boundaries first. Matching is case-insensitive and on whole words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

AFFIRMED, NEGATED, HEDGED = "affirmed", "negated", "hedged"

PRE_NEGATION = (
    "no evidence of",
    "no signs of",
    "no sign of",
    "no history of",
    "negative for",
    "free of",
    "absence of",
    "denies",
    "denied",
    "deny",
    "without",
    "never",
    "not",
    "none",
    "no",
)
POST_NEGATION = (
    "was ruled out",
    "were ruled out",
    "has been ruled out",
    "is ruled out",
    "ruled out",
    "was excluded",
    "were excluded",
    "is negative",
    "was negative",
    "were negative",
    "not seen",
    "resolved",
)
PSEUDO_NEGATION = (
    "no change",
    "no changes",
    "no interval change",
    "no significant change",
    "not only",
    "not necessarily",
    "no increase",
    "without difficulty",
    "not excluded",  # a hedge ("small effusion not excluded"), not a negation
    "cannot be excluded",
    "not be excluded",
    "not ruled out",
    "not been ruled out",
)
PRE_HEDGE = (
    "cannot exclude",
    "can not exclude",
    "could represent",
    "may represent",
    "concerning for",
    "suspicious for",
    "questionable",
    "possible",
    "possibly",
    "probable",
    "likely",
    "suspected",
    "borderline",
    "r/o",
    "rule out",
)
POST_HEDGE = (
    "not excluded",
    "cannot be excluded",
    "not be excluded",
    "not ruled out",
    "not been ruled out",
    "was considered",
    "were considered",
    "unlikely",
    "is possible",
)
TERMINATION = ("but", "however", "although", "though", "except", "aside from", "apart from", "which", "yet")


def _pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    ordered = sorted(terms, key=len, reverse=True)  # the longest cue wins ("no evidence of" over "no")
    return re.compile(
        r"(?<![\w/])(?:" + "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in ordered) + r")(?![\w/])", re.I
    )


_PRE_NEG, _POST_NEG, _PSEUDO = _pattern(PRE_NEGATION), _pattern(POST_NEGATION), _pattern(PSEUDO_NEGATION)
_PRE_HEDGE, _POST_HEDGE, _TERMINATION = _pattern(PRE_HEDGE), _pattern(POST_HEDGE), _pattern(TERMINATION)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Scope:
    """One cue and the part of the phrase it governs, as [start, end) offsets into the phrase text."""

    assertion: str  # NEGATED or HEDGED
    cue: str
    cue_start: int
    cue_end: int
    start: int
    end: int


def _free(span: tuple[int, int], taken: list[tuple[int, int]]) -> bool:
    return all(span[1] <= a or b <= span[0] for a, b in taken)


def _terminated(text: str, start: int, end: int, forward: bool) -> int:
    """The scope end (forward) or start (backward) cut at the first termination term inside [start, end)."""
    hits = [m.span() for m in _TERMINATION.finditer(text, start, end)]
    if not hits:
        return end if forward else start
    return hits[0][0] if forward else hits[-1][1]


def scopes(text: str) -> list[Scope]:
    """Negation and hedge scopes of one phrase (offsets into `text`), pseudo-negations left out."""
    pseudo = [m.span() for m in _PSEUDO.finditer(text)]
    found: list[Scope] = []
    for kind, pre, post in ((NEGATED, _PRE_NEG, _POST_NEG), (HEDGED, _PRE_HEDGE, _POST_HEDGE)):
        taken = list(pseudo) if kind == NEGATED else []
        for match in post.finditer(text):  # post cues first: "ruled out" must not become "not"-less "out"
            if _free(match.span(), taken):
                taken.append(match.span())
                start = _terminated(text, 0, match.start(), forward=False)
                found.append(Scope(kind, match.group(), match.start(), match.end(), start, match.end()))
        for match in pre.finditer(text):
            if _free(match.span(), taken):
                taken.append(match.span())
                end = _terminated(text, match.end(), len(text), forward=True)
                found.append(Scope(kind, match.group(), match.start(), match.end(), match.start(), end))
    return sorted(found, key=lambda s: (s.start, s.end))


def _has_word(text: str, start: int, end: int, cue: tuple[int, int]) -> bool:
    """Does [start, end) hold a word outside the cue itself (a cue alone negates nothing)?"""
    return any(not (cue[0] <= m.start() and m.end() <= cue[1]) for m in _WORD.finditer(text, start, end))


def assertion_of(text: str) -> tuple[str, str | None]:
    """(assertion of the phrase, its first cue or None): negated when a negation scope covers a word of the
    phrase besides the cue, else hedged when a hedge scope does, else affirmed."""
    found = scopes(text)
    for kind in (NEGATED, HEDGED):
        for scope in found:
            if scope.assertion == kind and _has_word(text, scope.start, scope.end, (scope.cue_start, scope.cue_end)):
                return kind, scope.cue
    return AFFIRMED, None


def negated_mask(text: str, spans: list[tuple[int, int]]) -> list[bool]:
    """Per [start, end) span of `text` (e.g. words): does it lie inside a negation scope (cue included)?"""
    negations = [s for s in scopes(text) if s.assertion == NEGATED]
    return [any(s.start <= a and b <= s.end for s in negations) for a, b in spans]
