import numpy as np
import pytest

from mmnar_core.patterns import (
    PatternError,
    decode_pattern,
    encode_pattern,
    modalities_present,
    n_patterns,
    pattern_label,
)


def test_hand_computed_ids():
    # bit m is modality m: (structured, cxr, discharge_note, radiology_report)
    assert encode_pattern([1, 0, 0, 0]) == 1
    assert encode_pattern([1, 1, 0, 0]) == 3
    assert encode_pattern([1, 0, 1, 1]) == 13
    assert encode_pattern([0, 0, 0, 0]) == 0
    assert encode_pattern([True, True, True, True]) == 15
    assert decode_pattern(13, 4) == (True, False, True, True)
    assert decode_pattern(0, 2) == (False, False)


@pytest.mark.parametrize("m", range(1, 7))
def test_round_trip_every_pattern(m):
    ids = np.arange(n_patterns(m))
    bits = decode_pattern(ids, m)
    assert bits.shape == (2**m, m)
    assert np.array_equal(encode_pattern(bits), ids)
    for pattern_id in range(2**m):
        assert encode_pattern(decode_pattern(pattern_id, m)) == pattern_id
    # all availability vectors are distinct
    assert len({tuple(row) for row in bits}) == 2**m


def test_vectorised_matches_scalar():
    rng = np.random.default_rng(0)
    bits = rng.random((50, 5)) < 0.5
    ids = encode_pattern(bits)
    assert ids.dtype == np.int64
    assert [encode_pattern(row) for row in bits] == ids.tolist()


def test_labels_and_counts():
    names = ["structured", "cxr", "discharge_note", "radiology_report"]
    assert pattern_label(13, names) == "structured+discharge_note+radiology_report"
    assert pattern_label(0, names) == "none"
    assert modalities_present(13, 4) == 3
    assert modalities_present(np.array([0, 15, 3]), 4).tolist() == [0, 4, 2]


@pytest.mark.parametrize(
    "bad",
    [[2, 0], [0.5, 1], [], [[]], [[[1]]]],
)
def test_bad_availability_rejected(bad):
    with pytest.raises(PatternError):
        encode_pattern(bad)


def test_bad_ids_rejected():
    with pytest.raises(PatternError, match="0..15"):
        decode_pattern(16, 4)
    with pytest.raises(PatternError):
        decode_pattern(-1, 4)
    with pytest.raises(PatternError, match="integers"):
        decode_pattern(np.array([1.5]), 4)
    with pytest.raises(PatternError, match="1..30"):
        decode_pattern(0, 0)
