"""`embed --shard I/N`: N processes (e.g. one per GPU under torchrun) split the images and notes, fill one shared
cache, and a final unsharded run computes nothing and writes the index; the vectors equal a one-process run."""

import numpy as np
import pytest

from mmnar_core.dataset import load_dataset
from mmnar_core.encoders.cache import load_embeddings
from mmnar_core.encoders.command import parse_shard
from mmnar_core.encoders.embed import embed_dataset

from support.encoders import tiny_image, tiny_text
from support.tiny_dataset import write_tiny


def test_shards_fill_the_cache_and_the_final_run_only_indexes(tmp_path):
    tiny = load_dataset(write_tiny(tmp_path / "tiny"))
    whole = embed_dataset(tiny, tmp_path / "one", tiny_image(0), tiny_text(0), progress=False)

    shared = tmp_path / "shared"
    first = embed_dataset(tiny, shared, tiny_image(0), tiny_text(0), progress=False, shard=(0, 2))
    second = embed_dataset(tiny, shared, tiny_image(0), tiny_text(0), progress=False, shard=(1, 2))
    assert first.index_dir is None and second.index_dir is None  # no index before every shard is done
    assert "structured" in first.computed and "structured" not in second.computed  # tabular: shard 0 only
    # notes of p2, p3: one each; images of p1, p3 (the same PNG): one row each, the shared bytes embedded by both
    assert first.computed["note"] + second.computed["note"] == whole.computed["note"] == 2
    assert first.computed["note"] == 1 and second.computed["note"] == 1
    with pytest.raises(FileNotFoundError):
        load_embeddings(tiny, shared)

    final = embed_dataset(tiny, shared, tiny_image(0), tiny_text(0), progress=False)
    assert final.computed == {"structured": 0, "cxr": 0, "note": 0}
    assert final.index_dir is not None
    sharded, reference = load_embeddings(tiny, shared), load_embeddings(tiny, tmp_path / "one")
    for modality in reference.vectors:
        np.testing.assert_allclose(sharded.vectors[modality], reference.vectors[modality], atol=1e-6)
        np.testing.assert_array_equal(sharded.present[modality], reference.present[modality])

    with pytest.raises(ValueError):
        embed_dataset(tiny, shared, shard=(2, 2))


def test_parse_shard():
    assert parse_shard(None) is None
    assert parse_shard("1/4") == (1, 4)
    assert parse_shard("auto", {"RANK": "3", "WORLD_SIZE": "8"}) == (3, 8)
    assert parse_shard("auto", {}) is None  # not under torchrun: the whole dataset
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            parse_shard(bad)
