"""Tabular encoder: hand-computed robust scaling, indicators, one-hot (with the <unknown> level of unseen
categories and their counts), train-only fit, exact state round trip, states saved before <unknown>."""

import json

import numpy as np
import pandas as pd
import pytest

from mmnar_core.encoders.config import TabularEncoderConfig
from mmnar_core.encoders.errors import EncoderStateError, TabularInputError
from mmnar_core.encoders.tabular import IQR_TO_SD, TabularEncoder
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.schema import FeatureSpec

FEATURES = [
    FeatureSpec("age", "numeric", "structured", unit="years"),
    FeatureSpec("sex", "categorical", "structured", categories=("female", "male")),
    FeatureSpec("smoker", "binary", "structured"),
]


def frame(age, sex, smoker):
    return pd.DataFrame({"age": age, "sex": sex, "smoker": smoker})


TRAIN = frame([1.0, 2.0, 3.0, 4.0, 5.0], ["male", "female", None, "male", "male"], [0, 1, None, 1, 0])


def test_hand_computed_transform():
    encoder = TabularEncoder(FEATURES).fit(TRAIN)
    # median 3, IQR 4 - 2 = 2, scale 2 / 1.349
    assert encoder.center["age"] == 3.0 and encoder.scale["age"] == pytest.approx(2 / IQR_TO_SD)
    assert encoder.output_names == [
        "age",
        "age:missing",
        "sex=female",
        "sex=male",
        "sex=<unknown>",
        "sex=<missing>",
        "smoker",
        "smoker:missing",
    ]
    out = encoder.transform(frame([5.0, None, 1000.0, 3.0], ["female", None, "male", "other"], [1, None, 0, 1]))
    expected = np.array(
        [
            [2 * IQR_TO_SD / 2, 0, 1, 0, 0, 0, 1, 0],  # (5 - 3) / (2 / 1.349) = 1.349
            [0, 1, 0, 0, 0, 1, 0, 1],  # missing -> 0 with indicator 1
            [5.0, 0, 0, 1, 0, 0, 0, 0],  # (1000 - 3) * 1.349 / 2 = 672.5 -> clipped to 5
            [0, 0, 0, 0, 1, 0, 1, 0],  # 'other' was never a category: the <unknown> column, not an error
        ],
        dtype=np.float32,
    )
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32 and encoder.dim == 8


def test_unknown_counts_per_feature_and_value():
    features = FEATURES + [FeatureSpec("unit", "categorical", "structured", categories=("icu", "ward"))]
    encoder = TabularEncoder(features).fit(TRAIN.assign(unit="icu"))
    new_site = frame([1.0] * 6, ["male", "other", "x", "other", None, "female"], [0] * 6).assign(
        unit=["icu", "ward", "ward", "icu", None, "ward"]
    )
    assert encoder.unknown_counts(new_site) == {"sex": {"other": 2, "x": 1}}  # most frequent first; unit: none unseen
    assert list(encoder.unknown_counts(new_site)["sex"]) == ["other", "x"]
    assert encoder.unknown_counts(TRAIN.assign(unit="icu")) == {}
    # the counts agree with the <unknown> column of the same rows
    column = encoder.output_names.index("sex=<unknown>")
    assert encoder.transform(new_site)[:, column].sum() == 3


def test_constant_and_never_observed_features():
    features = [FeatureSpec("flat", "numeric", "structured"), FeatureSpec("never", "numeric", "structured")]
    encoder = TabularEncoder(features).fit(pd.DataFrame({"flat": [2.0, 2.0, 2.0], "never": [None, None, None]}))
    assert encoder.scale["flat"] == 1.0 and encoder.center["never"] == 0.0 and encoder.scale["never"] == 1.0
    np.testing.assert_array_equal(encoder.transform(pd.DataFrame({"flat": [3.0], "never": [7.0]})), [[1, 0, 5, 0]])


def test_no_indicators_option():
    encoder = TabularEncoder(FEATURES[:1], TabularEncoderConfig(missing_indicators=False, clip=1.0)).fit(TRAIN)
    np.testing.assert_allclose(encoder.transform(frame([None, 100.0], [None, None], [None, None])), [[0.0], [1.0]])


def test_bad_values_name_the_feature():
    encoder = TabularEncoder(FEATURES).fit(TRAIN)
    with pytest.raises(TabularInputError, match="'age': 'old' is not a number"):
        encoder.transform(frame(["old"], ["male"], [0]))
    with pytest.raises(TabularInputError, match="binary feature 'smoker': value 2.0"):
        encoder.transform(frame([1.0], ["male"], [2]))
    with pytest.raises(TabularInputError, match=r"missing feature column\(s\) \['smoker'\]"):
        encoder.transform(TRAIN[["age", "sex"]])
    with pytest.raises(TabularInputError, match="unknown feature"):
        encoder.transform_record({"age": 3, "weight": 70})
    refusing = TabularEncoder(FEATURES, TabularEncoderConfig(unknown_category="error")).fit(TRAIN)
    with pytest.raises(TabularInputError, match=r"'sex': 'other' is not a category \(accepted: \['female', 'male'\]\)"):
        refusing.transform(frame([1.0], ["other"], [0]))
    ignoring = TabularEncoder(FEATURES, TabularEncoderConfig(unknown_category="ignore")).fit(TRAIN)
    np.testing.assert_array_equal(ignoring.transform(frame([3.0], ["other"], [0]))[0, 2:5], [0, 0, 0])
    with pytest.raises(EncoderStateError, match="unknown_category 'drop'"):
        TabularEncoderConfig(unknown_category="drop")


@pytest.mark.parametrize("mode", ["error", "ignore"])
def test_states_saved_before_the_unknown_level_load_and_behave_as_before(tmp_path, mode):
    """A state written by the previous version (no <unknown> column) keeps its columns and its rule."""
    old = {
        "format": "mmnar-tabular-encoder/1",
        "config": {"clip": 5.0, "missing_indicators": True, "unknown_category": mode},
        "features": [f.to_dict() for f in FEATURES],
        "center": {"age": 3.0},
        "scale": {"age": 2.0},
        "fit_info": {"rows": 5},
        "output_names": ["age", "age:missing", "sex=female", "sex=male", "sex=<missing>", "smoker", "smoker:missing"],
    }
    path = tmp_path / "tabular_state.json"
    path.write_text(json.dumps(old))
    loaded = TabularEncoder.load(path)
    assert loaded.output_names == old["output_names"] and loaded.dim == 7 and not loaded.unknown_level
    np.testing.assert_array_equal(loaded.transform(frame([5.0], ["male"], [1])), [[1, 0, 0, 1, 0, 1, 0]])
    assert loaded.unknown_counts(frame([5.0], ["other"], [1])) == {"sex": {"other": 1}}
    assert loaded.state_dict() == old  # saved again unchanged: its fingerprint (encoder id) stays the same
    if mode == "error":
        with pytest.raises(TabularInputError, match="'other' is not a category"):
            loaded.transform(frame([5.0], ["other"], [1]))
    else:
        np.testing.assert_array_equal(loaded.transform(frame([5.0], ["other"], [1])), [[1, 0, 0, 0, 0, 1, 0]])


def test_unfitted_encoder_refuses():
    with pytest.raises(EncoderStateError, match="not fitted"):
        TabularEncoder(FEATURES).transform(TRAIN)
    with pytest.raises(EncoderStateError, match="unfitted"):
        TabularEncoder(FEATURES).save("/tmp/never-written.json")


def test_state_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    train = frame(rng.normal(60, 15, 200), rng.choice(["female", "male"], 200), rng.integers(0, 2, 200).astype(float))
    encoder = TabularEncoder(FEATURES).fit(train, {"split": "train"})
    path = encoder.save(tmp_path / "tabular_state.json")
    loaded = TabularEncoder.load(path)
    assert loaded.center == encoder.center and loaded.scale == encoder.scale  # bit-exact floats via JSON
    assert loaded.fit_info == {"rows": 200, "split": "train"}
    np.testing.assert_array_equal(loaded.transform(train), encoder.transform(train))
    np.testing.assert_array_equal(
        loaded.transform_record({"age": 71.5, "sex": None}), encoder.transform(frame([71.5], [None], [None]))[0]
    )
    state = json.loads(path.read_text())
    state["output_names"] = state["output_names"][:-1]
    path.write_text(json.dumps(state))
    with pytest.raises(EncoderStateError, match="output_names"):
        TabularEncoder.load(path)
    path.write_text("{not json")
    with pytest.raises(EncoderStateError, match="not valid JSON"):
        TabularEncoder.load(path)


def test_fit_uses_only_the_rows_given():
    """The embed command passes the training split only; statistics must not see other rows."""
    encoder = TabularEncoder(FEATURES[:1]).fit(pd.DataFrame({"age": [10.0, 20.0, 30.0]}))
    assert encoder.center["age"] == 20.0
    assert encoder.fit_info["rows"] == 3


def test_the_shipped_demo_state_loads_with_its_encoder_id_unchanged():
    """The demo bundle's state must keep its id when loaded and saved again, or the bundle stops loading;
    it was fitted with the <unknown> level, so the app accepts a category it has not seen (with a note)."""

    from mmnar_core.encoders.runtime import fingerprint

    (path,) = (DEMO_BUNDLE / "encoders").glob("tabular-*/tabular_state.json")
    loaded = TabularEncoder.load(path)
    assert loaded.config.unknown_category == "unknown" and any("<unknown>" in n for n in loaded.output_names)
    assert fingerprint("tabular", loaded.state_dict()) == path.parent.name
    assert loaded.state_dict() == json.loads(path.read_text())
