"""The one and only mapping between availability vectors and missingness-pattern ids.

Bit m of the pattern id is 1 when modality m (in the dataset's modality order) is present:
pattern = sum_m delta_m * 2**m. Everything (dataset tables, model, rectifier, app) uses these functions,
so a pattern id means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_MODALITIES = 30


class PatternError(ValueError):
    """An availability vector or pattern id that cannot be encoded or decoded."""


def _check_count(n_modalities: int) -> None:
    if not isinstance(n_modalities, (int, np.integer)) or not 1 <= n_modalities <= MAX_MODALITIES:
        raise PatternError(f"number of modalities must be an integer in 1..{MAX_MODALITIES}, got {n_modalities!r}")


def encode_pattern(availability: Sequence[bool] | np.ndarray) -> int | np.ndarray:
    """Availability vector(s) -> pattern id(s).

    A 1-D vector of length M gives an int; an (N, M) array gives an int64 array of N ids.
    Values must be booleans or 0/1.
    """
    array = np.asarray(availability)
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise PatternError(f"availability must be a vector of length M or an (N, M) array, got shape {array.shape}")
    _check_count(array.shape[-1])
    if array.dtype != bool:
        if not np.isin(array, (0, 1)).all():
            raise PatternError("availability values must be booleans or 0/1")
    weights = np.left_shift(np.int64(1), np.arange(array.shape[-1], dtype=np.int64))
    ids = (array.astype(np.int64) * weights).sum(axis=-1)
    return int(ids) if array.ndim == 1 else ids


def decode_pattern(pattern_id: int | Sequence[int] | np.ndarray, n_modalities: int) -> tuple[bool, ...] | np.ndarray:
    """Pattern id(s) -> availability vector(s) over `n_modalities` modalities.

    An int gives a tuple of M booleans; an array of N ids gives an (N, M) boolean array.
    """
    _check_count(n_modalities)
    ids = np.asarray(pattern_id)
    if not np.issubdtype(ids.dtype, np.integer):
        raise PatternError(f"pattern ids must be integers, got {ids.dtype}")
    if ((ids < 0) | (ids >= (1 << n_modalities))).any():
        raise PatternError(f"pattern ids must be in 0..{(1 << n_modalities) - 1} for {n_modalities} modalities")
    bits = ((ids[..., None] >> np.arange(n_modalities, dtype=np.int64)) & 1).astype(bool)
    return tuple(bool(b) for b in bits) if ids.ndim == 0 else bits


def n_patterns(n_modalities: int) -> int:
    _check_count(n_modalities)
    return 1 << n_modalities


def pattern_label(pattern_id: int, modality_names: Sequence[str]) -> str:
    """Readable name of a pattern, e.g. 'structured+cxr' ('none' when nothing is present)."""
    bits = decode_pattern(int(pattern_id), len(modality_names))
    present = [name for name, bit in zip(modality_names, bits) if bit]
    return "+".join(present) if present else "none"


def modalities_present(pattern_id: int | np.ndarray, n_modalities: int) -> int | np.ndarray:
    """How many modalities a pattern has (the middle level of the rectifier's shrinkage)."""
    bits = decode_pattern(pattern_id, n_modalities)
    return sum(bits) if isinstance(bits, tuple) else bits.sum(axis=-1)
