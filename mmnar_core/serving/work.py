"""What one request costs the model worker, in units of work, so the queue counts work, not requests.

Why: a request count treats a 40-byte /predict and an /explain of two 200,000-character notes alike; the
second held the model for 14 minutes (issue 18, case 2). One unit is about one model pass over one input
part: the structured data, an image, or one window of note text (~1,000 characters, 256 tokens). An
explanation adds its attribution passes: the image's Integrated-Gradients steps and the note's Layer-IG
steps over the part of the note that is attributed (AttributionSettings.max_note_chars).

    predict / what-if:  1 + images + note windows
    explain:            the same + image_steps x images + text_steps x attributed note windows
"""

from __future__ import annotations

import math

from mmnar_core.explain.attributions import AttributionSettings

CHARS_PER_WINDOW = 1_000  # 256 tokens of clinical English


def _note_chars(note) -> int:
    if note is None:
        return 0
    return len(note) if isinstance(note, str) else len(bytes(note))  # bytes: an upper bound on characters


def job_cost(kind: str, record, settings: AttributionSettings | None = None) -> float:
    """Units of work of one parsed request (`kind` 'predict', 'what_if' or 'explain')."""
    settings = settings or AttributionSettings()
    images = sum(1 for source in record.images.values() if source is not None)
    notes = [_note_chars(note) for note in record.texts.values() if note is not None]
    cost = 1 + images + sum(math.ceil(chars / CHARS_PER_WINDOW) for chars in notes)
    if kind == "explain":
        attributed = sum(math.ceil(min(chars, settings.max_note_chars) / CHARS_PER_WINDOW) for chars in notes)
        cost += settings.image_steps * images + settings.text_steps * attributed
    return float(cost)
