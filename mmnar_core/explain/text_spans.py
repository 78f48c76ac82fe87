"""Map positions in a cleaned note back to character spans of the ORIGINAL note, and tokens to words.

The note cleaner (`mmnar_core.encoders.text_clean.clean_note`) normalises Unicode (NFC), line endings,
tabs and control characters, replaces de-identification marks by a placeholder, collapses spaces and
drops header / signature / rule lines. Attributions are computed on the cleaned text's tokens, but a
clinician must see them on the text they uploaded. `clean_with_offsets` re-runs the same steps while
tracking, for every cleaned character, the half-open span [start, end) of original characters it came
from (a placeholder maps to the whole mark it replaced; a composed character to all the code points it
was composed from). The result is checked against `clean_note` itself; if the cleaner ever changes and
the two disagree, a difflib character alignment is used instead (slower, still monotone).

Offsets index the Python `str` (code points), the convention of JavaScript-free front ends like
Streamlit; bytes input is decoded as UTF-8 first, so offsets index the decoded text.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass

from mmnar_core.encoders.config import TextCleanerConfig, TextEncoderConfig
from mmnar_core.encoders.text_clean import (
    CONTROL,
    DEID_MARK,
    HEADER_LINE,
    RULE_LINE,
    SIGNATURE_LINE,
    clean_note,
    decode_note,
)

# A "word" is a run of word characters, with inner apostrophes ("patient's") kept together. Tokens that
# fall outside every word (punctuation) are reported together as "other".
WORD = re.compile(r"\w+(?:['\u2019]\w+)*")


@dataclass
class Tracked:
    """A string with, per character, the original span [start, end) it came from."""

    text: str
    starts: list[int]
    ends: list[int]

    @classmethod
    def identity(cls, text: str) -> Tracked:
        return cls(text, list(range(len(text))), list(range(1, len(text) + 1)))

    def slice(self, a: int, b: int) -> Tracked:
        return Tracked(self.text[a:b], self.starts[a:b], self.ends[a:b])

    def sub(self, pattern: re.Pattern, repl: str) -> Tracked:
        """Like pattern.sub(repl, text); inserted characters map to the whole span of what they replace."""
        text, starts, ends, pos = [], [], [], 0
        for match in pattern.finditer(self.text):
            a, b = match.span()
            text.append(self.text[pos:a])
            starts += self.starts[pos:a]
            ends += self.ends[pos:a]
            replacement = match.expand(repl)
            if b > a:
                span = (self.starts[a], self.ends[b - 1])
            else:  # zero-width match: anchor at the next (or previous) character
                anchor = self.starts[a] if a < len(self.starts) else (self.ends[-1] if self.ends else 0)
                span = (anchor, anchor)
            text.append(replacement)
            starts += [span[0]] * len(replacement)
            ends += [span[1]] * len(replacement)
            pos = b
        text.append(self.text[pos:])
        starts += self.starts[pos:]
        ends += self.ends[pos:]
        return Tracked("".join(text), starts, ends)

    def strip(self) -> Tracked:
        left = len(self.text) - len(self.text.lstrip())
        right = len(self.text.rstrip())
        return self.slice(left, max(left, right))


def _nfc(tracked: Tracked) -> Tracked:
    """NFC per segment (a starter plus its combining marks), so each output character knows its source."""
    text, starts, ends = [], [], []
    source = tracked.text
    i = 0
    while i < len(source):
        j = i + 1
        while j < len(source) and unicodedata.combining(source[j]):
            j += 1
        segment = source[i:j]
        out = segment if segment.isascii() else unicodedata.normalize("NFC", segment)
        text.append(out)
        starts += [tracked.starts[i]] * len(out)
        ends += [tracked.ends[j - 1]] * len(out)
        if j - i == 1 and len(out) == 1:  # the common case: keep the exact one-character span
            starts[-1], ends[-1] = tracked.starts[i], tracked.ends[i]
        i = j
    return Tracked("".join(text), starts, ends)


def _literal(old: str, new: str) -> tuple[re.Pattern[str], str]:
    return re.compile(re.escape(old)), new.replace("\\", "\\\\")


def clean_with_offsets(
    raw: str | bytes,
    config: TextCleanerConfig = TextCleanerConfig(),
    max_chars: int = TextEncoderConfig().max_chars,
    where: str = "note",
) -> Tracked:
    """The cleaned note (exactly `clean_note`'s output) with the original span of every character."""
    original = decode_note(raw, max_chars, where)
    expected = clean_note(original, config, max_chars, where)  # raises the cleaner's own errors
    tracked = _tracked_clean(original, config)
    if tracked.text != expected:  # the cleaner changed: fall back to a generic alignment
        tracked = _aligned(original, expected)
    return tracked


def _tracked_clean(original: str, config: TextCleanerConfig) -> Tracked:
    t = _nfc(Tracked.identity(original))
    for old, new in (("\r\n", "\n"), ("\r", "\n"), ("\u00a0", " "), ("\t", " ")):
        t = t.sub(*_literal(old, new))
    t = t.sub(CONTROL, " ")
    t = t.sub(DEID_MARK, config.placeholder.replace("\\", "\\\\"))
    mark = re.escape(config.placeholder)
    t = t.sub(re.compile(rf"{mark}(?:[ ,./-]*{mark})+"), config.placeholder.replace("\\", "\\\\"))
    lines: list[Tracked] = []
    pos = 0
    for piece in t.text.split("\n"):
        line = t.slice(pos, pos + len(piece))
        pos += len(piece) + 1
        line = line.sub(re.compile(r" {2,}"), " ").strip()
        if not line.text or RULE_LINE.match(line.text):
            continue
        if config.drop_header and HEADER_LINE.match(line.text):
            continue
        if config.drop_signatures and SIGNATURE_LINE.match(line.text):
            continue
        lines.append(line)
    text: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for k, line in enumerate(lines):
        if k:
            anchor = ends[-1] if ends else 0
            text.append("\n")
            starts.append(anchor)
            ends.append(anchor)
        text.append(line.text)
        starts += line.starts
        ends += line.ends
    return Tracked("".join(text), starts, ends)


def _aligned(original: str, cleaned: str) -> Tracked:
    """Generic fallback: character alignment by difflib; unmatched runs map to the unmatched original gap."""
    matcher = difflib.SequenceMatcher(None, original, cleaned, autojunk=False)
    starts, ends = [0] * len(cleaned), [0] * len(cleaned)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for j in range(j1, j2):
            if tag == "equal":
                starts[j], ends[j] = i1 + (j - j1), i1 + (j - j1) + 1
            else:
                starts[j], ends[j] = i1, max(i1, i2)
    return Tracked(cleaned, starts, ends)


@dataclass
class WordMap:
    """Words of a cleaned note: their spans in the cleaned and in the original text, and which note
    token belongs to which word (-1: a token outside every word, e.g. punctuation)."""

    words: list[str]  # the original text of each word span
    spans: list[tuple[int, int]]  # [start, end) in the original text
    clean_spans: list[tuple[int, int]]
    token_word: list[int]  # per note token (the order of the windows' positions)


def word_map(tracked: Tracked, original: str, offsets: list[tuple[int, int]]) -> WordMap:
    """`offsets` are the tokenizer's (start, end) in the cleaned text, one per note token."""
    clean_spans = [m.span() for m in WORD.finditer(tracked.text)]
    owner = [-1] * (len(tracked.text) + 1)
    for w, (a, b) in enumerate(clean_spans):
        for c in range(a, b):
            owner[c] = w
    token_word = []
    for a, b in offsets:
        word = -1
        for c in range(a, max(a + 1, b)):
            if c < len(tracked.text) and owner[c] >= 0:
                word = owner[c]
                break
        token_word.append(word)
    spans = [(tracked.starts[a], tracked.ends[b - 1]) for a, b in clean_spans]
    return WordMap([original[a:b] for a, b in spans], spans, clean_spans, token_word)


def token_offsets(tokenizer, cleaned: str) -> list[tuple[int, int]]:
    """Character offsets in the cleaned text of each content token (the windows' token order)."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(
            "mapping tokens back to text needs a fast (tokenizers-backed) tokenizer; "
            "load the text model with its tokenizer.json"
        )
    encoded = tokenizer(cleaned, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    return [tuple(o) for o in encoded["offset_mapping"]]
