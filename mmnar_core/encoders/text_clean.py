"""An explicit, tested note cleaner: check the input, unify de-identification marks, drop
administrative header and signature lines, normalise whitespace.

Why: the same clinical content written by different sites (MIMIC-III `[** **]`, MIMIC-IV `___`, IU
`XXXX`) should give the same tokens, and header lines full of blanks only dilute the pooled embedding.
Clinical content (negations, hedges, sections) is never removed.
"""

from __future__ import annotations

import re
import unicodedata

from mmnar_core.encoders.config import TextCleanerConfig, TextEncoderConfig
from mmnar_core.encoders.errors import EmptyTextError, TextEncodingError, TextInputError, TextTooLongError

_DEFAULT_LIMIT = TextEncoderConfig().max_chars

# [**Name**], [** 2150-1-1 **] (MIMIC-III), two or more underscores (MIMIC-IV), XXX.. (IU Open-i)
DEID_MARK = re.compile(r"\[\*\*.*?\*\*\]|_{2,}|\bX{3,}\b", re.DOTALL)
HEADER_LINE = re.compile(
    r"^(name|unit no|admission date|discharge date|date of birth|attending|mrn|medical record number|"
    r"account number)\s*:",
    re.IGNORECASE,
)
SIGNATURE_LINE = re.compile(
    r"^(electronically signed by|signed electronically by|dictated by|transcribed by|completed by|"
    r"i have personally reviewed the images)\b",
    re.IGNORECASE,
)
RULE_LINE = re.compile(r"^[\s=\-_*#~.]{3,}$")  # "======" or "-----" separators
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def decode_note(raw: str | bytes, max_chars: int = _DEFAULT_LIMIT, where: str = "note") -> str:
    """Check type, encoding and length before any work; the error says what is accepted."""
    if isinstance(raw, (bytes, bytearray)):
        data = bytes(raw)
        try:
            raw = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise TextEncodingError(
                f"{where}: byte {error.start} (0x{data[error.start]:02x}) is not valid UTF-8; accepted: UTF-8 text "
                "(re-save the note as UTF-8)"
            ) from None
    if not isinstance(raw, str):
        raise TextInputError(f"{where}: expected text (str or UTF-8 bytes), got {type(raw).__name__}")
    if len(raw) > max_chars:
        raise TextTooLongError(
            f"{where}: {len(raw):,} characters is longer than the limit of {max_chars:,} "
            "(accepted: one clinical note; a discharge summary is typically under 30,000 characters)"
        )
    return raw


def clean_note(
    raw: str | bytes,
    config: TextCleanerConfig = TextCleanerConfig(),
    max_chars: int = _DEFAULT_LIMIT,
    where: str = "note",
) -> str:
    """Cleaned text, or EmptyTextError when nothing clinical is left."""
    text = decode_note(raw, max_chars, where)
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = CONTROL.sub(" ", text.replace("\t", " "))
    text = DEID_MARK.sub(config.placeholder, text)
    mark = re.escape(config.placeholder)
    text = re.sub(rf"{mark}(?:[ ,./-]*{mark})+", config.placeholder, text)  # "___ ___, ___" -> "___"
    lines = []
    for line in text.split("\n"):
        line = re.sub(r" {2,}", " ", line).strip()
        if not line or RULE_LINE.match(line):
            continue
        if config.drop_header and HEADER_LINE.match(line):
            continue
        if config.drop_signatures and SIGNATURE_LINE.match(line):
            continue
        lines.append(line)
    cleaned = "\n".join(lines)
    if not cleaned.replace(config.placeholder, "").strip(" \n.,:;-"):
        raise EmptyTextError(
            f"{where}: the note is empty after cleaning (it held only whitespace, de-identification marks or "
            "header lines); accepted: a note with clinical text"
        )
    return cleaned
