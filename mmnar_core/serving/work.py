"""What one request costs, known before anything is decoded, so admission and the queue count work, not
requests.

Why: a request count treats a 40-byte /predict and an /explain of a 200,000-character note alike; the
second held the model for 14 minutes (issue 18, case 2). And a 15 kB PNG can decode to 16 million
pixels (case 3). So a request brings two amounts, both read from its parts before decoding:

- `decode_mpixels`: the megapixels its images will decode to, from their headers
  (mmnar_core.serving.image_probe); decoding is done off the worker, `max_parsing` at a time;
- `units` of model work. One unit is about one model pass over the structured data (the reference
  /predict); the rest are multiples of it measured on the demo model (2-core CPU):

    predict / what-if:  1 + 1 per image (the CNN at its input size) + 1 per note window
    explain:            the same + 20 (structured attributions, what-if) + image_steps per image
                        + text_steps per attributed note window (AttributionSettings.max_note_chars)

A note window is ~1,000 characters (256 tokens). The model also passes once more over every decoded pixel
(the distribution check's image statistics, the resize: about as long as decoding them), so that part is
counted in megapixels, not units. The server turns both amounts into seconds with rates it measures as it
serves (mmnar_core.serving.work_budget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mmnar_core.explain.attributions import AttributionSettings

CHARS_PER_WINDOW = 1_000  # 256 tokens of clinical English
EXPLAIN_BASE_UNITS = 20.0  # an explanation without notes or images: structured attributions and the what-if


@dataclass(frozen=True)
class RequestWork:
    """The work one request brings: megapixels to decode, and units of model work."""

    decode_mpixels: float = 0.0
    units: float = 1.0


def work_units(
    kind: str,
    image_mpixels: list[float],
    note_chars: list[int],
    settings: AttributionSettings | None = None,
    attributed: tuple[int, list[int]] | None = None,
) -> float:
    """Units of model work of a request (`kind` 'predict', 'what_if' or 'explain'). `attributed`: (images,
    note lengths) an explanation attributes (its `modalities` field); None: every one given."""
    settings = settings or AttributionSettings()
    cost = 1.0 + len(image_mpixels)
    cost += sum(math.ceil(chars / CHARS_PER_WINDOW) for chars in note_chars)
    if kind == "explain":
        images, notes = attributed if attributed is not None else (len(image_mpixels), note_chars)
        windows = sum(math.ceil(min(chars, settings.max_note_chars) / CHARS_PER_WINDOW) for chars in notes)
        cost += EXPLAIN_BASE_UNITS + settings.image_steps * images + settings.text_steps * windows
    return float(cost)


def request_work(kind: str, parts, schema, max_pixels: int, max_text_chars: int) -> RequestWork:
    """The work of a request from its multipart parts, before anything is decoded: image sizes from their
    headers, note lengths from their bytes. A part that will be refused (a header over max_pixels, a note
    over max_text_chars) counts nothing: its refusal costs nothing."""
    from mmnar_core.schema import ModalityKind
    from mmnar_core.serving.image_probe import declared_pixels

    given = {part.name: part for part in parts}
    wanted = None
    if kind == "explain" and "modalities" in given:
        wanted = {w.strip() for w in given["modalities"].data.decode("utf-8", "replace").split(",")}
    images, notes, attributed_images, attributed_notes = [], [], 0, []
    for name in schema.names(ModalityKind.IMAGE):
        if name in given and given[name].data:
            pixels = declared_pixels(given[name].data, max_pixels)
            images.append(0.0 if pixels is None else pixels / 1e6)
            attributed_images += wanted is None or name in wanted
    for name in schema.names(ModalityKind.TEXT):
        if name in given and given[name].data.strip() and len(given[name].data) <= 4 * max_text_chars:
            notes.append(min(len(given[name].data), max_text_chars))
            if wanted is None or name in wanted:
                attributed_notes.append(notes[-1])
    units = work_units(kind, images, notes, attributed=(attributed_images, attributed_notes))
    return RequestWork(round(sum(images), 6), units)


def _note_chars(note) -> int:
    return len(note) if isinstance(note, str) else len(bytes(note))  # bytes: an upper bound on characters


def _mpixels(image) -> float:
    pixels = getattr(image, "pixels", None)  # DecodedImageBytes: the decoded size; plain bytes: unknown
    return 0.0 if pixels is None else pixels.size / 1e6


def job_cost(kind: str, record, settings: AttributionSettings | None = None) -> float:
    """Units of model work of one parsed request (the same count as before decoding, from the record)."""
    images = [_mpixels(source) for source in record.images.values() if source is not None]
    notes = [_note_chars(note) for note in record.texts.values() if note is not None]
    return work_units(kind, images, notes, settings)
