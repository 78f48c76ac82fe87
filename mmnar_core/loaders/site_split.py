"""Train / val / test by hospital: test on hospitals the model never saw (an external-site evaluation).

Rule (deterministic, documented in docs/new_site.md):
1. Hospitals that share a patient (the same person treated at two of them) are joined into one block,
   so that no person and no hospital is in two splits.
2. Blocks are ordered by sha256(f"{seed}:hospital:{smallest hospital id of the block}") (ties by id): a
   hash rather than a shuffle, so a hospital's place does not depend on the others in the file.
3. Walking that order, a block goes to test while test holds fewer than TEST of all stays, then to val
   while val holds fewer than VAL, and every later block to train. Test and val thus hold at least their
   share and at most one block more (the demo's largest hospital has 40 of 1,700 stays).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

HOSPITAL_FRACTIONS = {"test": 0.25, "val": 0.15}  # train: the rest (~0.60)
SPLIT_BY = ("patient", "hospital")


class SiteSplitError(ValueError):
    """The hospitals cannot be split as asked (too few, or one block holds almost every stay)."""


def hospital_blocks(hospitals: Sequence, persons: Sequence) -> dict[str, list[str]]:
    """{block key (smallest hospital id): [hospital ids]}: hospitals joined when a person visited both."""
    parent: dict[str, str] = {}

    def find(h: str) -> str:
        while parent[h] != h:
            parent[h] = parent[parent[h]]
            h = parent[h]
        return h

    frame = pd.DataFrame({"hospital": [str(h) for h in hospitals], "person": [str(p) for p in persons]})
    for h in frame["hospital"].unique():
        parent[h] = h
    for seen in frame.groupby("person")["hospital"].unique():
        for other in seen[1:]:
            a, b = sorted((find(seen[0]), find(other)), key=_order)
            parent[b] = a
    blocks: dict[str, list[str]] = {}
    for h in sorted(parent, key=_order):
        blocks.setdefault(find(h), []).append(h)
    return {min(members, key=_order): members for members in blocks.values()}


def _order(hospital: str) -> tuple:
    """Numeric ids in numeric order (eICU's are integers), anything else after them as text."""
    return (0, int(hospital), "") if hospital.lstrip("-").isdigit() else (1, 0, hospital)


def _hash(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:hospital:{key}".encode()).digest()[:8], "big")


def split_by_hospital(
    hospitals: Sequence, persons: Sequence, seed: int = 0, fractions: dict[str, float] = HOSPITAL_FRACTIONS
) -> tuple[np.ndarray, dict]:
    """(split of every row, the scheme to record in the manifest). Rows are stays; `persons` their person ids."""
    if len(hospitals) != len(persons):
        raise ValueError("hospitals and persons must be aligned row by row")
    hospital_text = pd.Series([None if pd.isna(h) else str(h) for h in hospitals], dtype=object)
    if hospital_text.isna().any():
        raise SiteSplitError(
            f"{int(hospital_text.isna().sum())} stay(s) have no hospital id; a hospital split needs one on every stay"
        )
    blocks = hospital_blocks(hospital_text, persons)
    if len(blocks) < 3:
        raise SiteSplitError(f"a hospital split needs at least 3 separable hospitals; these stays have {len(blocks)}")
    stays = hospital_text.value_counts()
    total = len(hospital_text)
    where: dict[str, str] = {}
    held = {"test": 0, "val": 0, "train": 0}
    for key in sorted(blocks, key=lambda k: (_hash(seed, k), _order(k))):
        size = int(sum(stays[h] for h in blocks[key]))
        split = next((s for s in ("test", "val") if held[s] < fractions[s] * total), "train")
        held[split] += size
        for h in blocks[key]:
            where[h] = split
    if min(held.values()) == 0:
        raise SiteSplitError(
            f"the hospitals cannot fill train, val and test (stays per split {held}); one block of "
            "hospitals linked by shared patients holds too many stays"
        )
    splits = hospital_text.map(where).to_numpy(dtype=object)
    assert_site_disjoint(splits, hospital_text.to_numpy(), np.asarray([str(p) for p in persons], dtype=object))
    scheme = {
        "by": "hospital",
        "column": "hospitalid",
        "seed": seed,
        "rule": "hospitals sharing a patient form one block; blocks ordered by sha256('{seed}:hospital:{smallest id}'); "
        "test takes blocks while it holds < test fraction of stays, then val while < val fraction, then train",
        "fractions": {
            "test": fractions["test"],
            "val": fractions["val"],
            "train": round(1 - sum(fractions.values()), 6),
        },
        "stays": {s: held[s] for s in ("train", "val", "test")},
        "hospitals": {s: sorted((h for h, v in where.items() if v == s), key=_order) for s in ("train", "val", "test")},
        "linked_hospitals": [members for members in blocks.values() if len(members) > 1],
    }
    return splits, scheme


def assert_site_disjoint(splits: np.ndarray, hospitals: np.ndarray, persons: np.ndarray) -> None:
    """No hospital and no person in two splits (raises AssertionError naming one that is)."""
    frame = pd.DataFrame({"split": splits, "hospital": hospitals, "person": persons})
    for column in ("hospital", "person"):
        spread = frame.groupby(column)["split"].nunique()
        if (spread > 1).any():
            raise AssertionError(f"{column} {spread[spread > 1].index[0]!r} is in more than one split")
