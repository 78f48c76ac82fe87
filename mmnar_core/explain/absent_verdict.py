"""The one-line verdict on obtaining an absent modality, from the risk now and the 10th-90th percentile range
of the risk if it were obtained. One place, so the app, the server and the exports say the same words.

Narrow: both ends of the range lie within `NARROW_POINTS` percentage points of the current risk; then the
modality would most likely (in 8 of 10 imagined contents) barely change the risk. Otherwise the line says how
far it could move the risk and to where.
"""

from __future__ import annotations

import math

NARROW_POINTS = 2.0  # percentage points, both ways: below this the modality "would most likely" not matter


def percent(risk: float) -> str:
    """A risk as a readable percentage: one decimal, "< 0.1 %" and "> 99.9 %" at the ends."""
    value = 100.0 * risk
    if value < 0.05:
        return "< 0.1 %"
    if value > 99.95:
        return "> 99.9 %"
    return f"{value:.1f} %"


def _points(value: float) -> str:
    """ "1 point", "0.5 points", "7.3 points"."""
    number = f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{number} point" if number == "1" else f"{number} points"


def verdict(current: float, p10: float, p90: float, narrow: float = NARROW_POINTS) -> str:
    """ "obtaining it would most likely change the risk by less than X points" when the 10th-90th percentile
    range of the change lies within `narrow` points both ways (X: the larger end, rounded up to half a point),
    else "obtaining it could move the risk by up to Y points (from A % to B %)", B the farther end, or to a
    range when both ends are beyond `narrow`."""
    down, up = 100.0 * (p10 - current), 100.0 * (p90 - current)
    largest = max(abs(down), abs(up))
    if largest < narrow:
        bound = max(0.5, math.ceil(largest * 2.0) / 2.0)
        return f"obtaining it would most likely change the risk by less than {_points(bound)}"
    if abs(down) >= narrow and abs(up) >= narrow and down < 0 < up:
        where = f"between {percent(p10)} and {percent(p90)}"
    else:
        where = percent(p10 if abs(down) > abs(up) else p90)
    return f"obtaining it could move the risk by up to {_points(largest)} (from {percent(current)} to {where})"
