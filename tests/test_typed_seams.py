"""The typed seams (issue 15, item 6): Explanation, Prediction, WhatIfResult, ModelInfo and the bundle's
dataset.json / encoders.json are typed records with one serialisation scheme (`to_dict` / `from_dict`), and
their JSON is exactly what the first, dict-based edition wrote: stored explanations (users' databases) and
the HTTP API keep loading and re-serialise to the same text.

tests/support/seams_7c6adf2.json was written by the code at 7c6adf2 (before the types): three explanations
of demo patients (every kind of attribution, an absent modality with an estimate and one without, a partial
explanation without what-if) and the demo bundle's ModelInfo."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest

from mmnar_core.bundle import DatasetInfo, EncoderInfo, EncoderKind, load_bundle
from mmnar_core.explain.attributions import ImageAttribution, TabularAttribution, TextAttribution
from mmnar_core.explain.explanation import Explanation
from mmnar_core.model_info import ModelInfo, model_info
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.results import AbsentModality, ObtainedEstimate, Prediction, SubsetRisks, TaskRisk, WhatIfResult
from mmnar_core.schema import FeatureSpec, ModalityKind, ModalitySpec, OutcomeSpec

from support.paths import ROOT

HEAD = json.loads((ROOT / "tests" / "support" / "seams_7c6adf2.json").read_text(encoding="utf-8"))


def _text(data) -> str:
    """The JSON text as the server and the store write it (key order kept, no sorting)."""
    return json.dumps(data, allow_nan=False, ensure_ascii=False)


@pytest.mark.parametrize("index", range(len(HEAD["explanations"])))
def test_an_explanation_written_before_the_types_loads_and_writes_the_same_json(index):
    stored = HEAD["explanations"][index]
    explanation = Explanation.from_dict(copy.deepcopy(stored))
    assert _text(explanation.to_dict()) == _text(stored)
    assert explanation.to_json() == _text(stored)
    assert Explanation.from_json(explanation.to_json()) == explanation
    assert isinstance(explanation.prediction, Prediction)
    assert all(isinstance(r, TaskRisk) for r in explanation.prediction.risks)
    assert explanation.what_if is None or isinstance(explanation.what_if, WhatIfResult)
    assert all(
        isinstance(a, TabularAttribution | ImageAttribution | TextAttribution) for a in explanation.attributions()
    )


def test_the_stored_explanations_cover_every_shape_of_the_what_if():
    explanations = [Explanation.from_dict(d) for d in HEAD["explanations"]]
    what_ifs = [e.what_if for e in explanations]
    assert explanations[0].tabular and explanations[0].images and explanations[0].texts
    assert what_ifs[2] is None and explanations[2].pending() == ["structured", "cxr"]  # partial: the report only
    absent = [a for w in what_ifs if w is not None for a in w.absent]
    assert {a.estimate is None for a in absent} == {True, False}
    without = next(a for a in absent if a.estimate is None)
    assert without == AbsentModality("discharge_note", "no reference patient had this modality")
    assert without.to_dict() == {"modality": "discharge_note", "estimate": None, "note": without.note}
    with_one = next(a for a in absent if a.estimate is not None)
    assert isinstance(with_one.estimate, ObtainedEstimate) and with_one.estimate.n_reference == 25
    first = what_ifs[0]
    assert first is not None and all(isinstance(s, SubsetRisks) for s in first.subsets)
    assert set(first.full().modalities) == set(first.available) and first.empty().modalities == []
    assert first.subset(list(reversed(first.available))) == first.full()


def test_result_records_round_trip_through_json_and_keep_their_key_order():
    stored = HEAD["explanations"][1]
    prediction = Prediction.from_dict(stored["prediction"])
    assert list(prediction.to_dict()) == list(stored["prediction"])
    assert list(prediction.risks[0].to_dict()) == list(stored["prediction"]["risks"][0])
    assert Prediction.from_dict(json.loads(_text(prediction.to_dict()))) == prediction
    what_if = WhatIfResult.from_dict(stored["what_if"])
    assert _text(what_if.to_dict()) == _text(stored["what_if"])
    assert WhatIfResult.from_dict(json.loads(_text(what_if.to_dict()))) == what_if
    for entry in stored["what_if"]["absent"]:
        assert list(AbsentModality.from_dict(entry).to_dict()) == list(entry)


def test_a_prediction_stored_before_the_members_spread_loads_with_zero_spread():
    stored = copy.deepcopy(HEAD["explanations"][0])
    for risk in stored["prediction"]["risks"]:
        del risk["model_spread"]
    explanation = Explanation.from_dict(stored)
    assert [r.model_spread for r in explanation.prediction.risks] == [0.0] * len(stored["prediction"]["risks"])


def test_results_load_from_answers_with_more_keys():
    """A newer server may add a key; this client reads the ones it knows."""
    stored = copy.deepcopy(HEAD["explanations"][0])
    stored["prediction"]["new_key"] = 1
    stored["prediction"]["risks"][0]["new_key"] = 2
    stored["what_if"]["new_key"] = 3
    explanation = Explanation.from_dict(stored)
    assert explanation.to_dict() == HEAD["explanations"][0]


def test_a_partial_explanation_completed_keeps_the_typed_parts():
    partial, extra = (Explanation.from_dict(HEAD["explanations"][i]) for i in (0, 2))
    without_note = replace(partial, texts=[])
    assert without_note.pending() == ["radiology_report"]
    done = without_note.completed_with(extra, "key", ["structured", "cxr", "discharge_note", "radiology_report"])
    assert done.prediction is partial.prediction and done.what_if is partial.what_if
    assert [t.modality for t in done.texts] == ["radiology_report"] and done.pending() == []


# ----------------------------------------------------------------------------- model info
def test_model_info_written_before_the_types_loads_and_writes_the_same_json():
    stored = HEAD["model_info"]
    info = ModelInfo.from_dict(copy.deepcopy(stored))
    assert _text(info.to_dict()) == _text(stored)
    assert all(isinstance(m, ModalitySpec) for m in info.modalities)
    assert all(isinstance(f, FeatureSpec) for f in info.features)
    assert all(isinstance(o, OutcomeSpec) for o in info.outcomes)
    assert info.modality_names() == ["structured", "cxr", "discharge_note", "radiology_report"]
    assert ModelInfo.from_dict(json.loads(_text(info.to_dict()))) == info
    with pytest.raises(TypeError, match="no field"):
        ModelInfo.from_dict({**stored, "surprise": 1})


def test_model_info_of_a_bundle_is_its_dataset_json_as_before():
    """What the first edition's model_info returned: dataset.json's modality, feature and outcome dicts as
    written, `accepts_unknown` added to the categories the predictor's encoder takes unseen values of."""
    from mmnar_lab.serving.testing import cached_predictor

    predictor = cached_predictor(DEMO_BUNDLE, "cpu")
    dataset = predictor.bundle.dataset
    open_names = {f.name for f in predictor.features if f.accepts_unknown}
    info = model_info(predictor).to_dict()
    assert info["modalities"] == dataset["modalities"] and info["outcomes"] == dataset["outcomes"]
    assert info["features"] == [
        {**f, "accepts_unknown": True} if f["name"] in open_names else f for f in dataset["features"]
    ]
    assert info["synthetic"] is True and info["dataset_name"] == dataset["name"]
    assert info["pattern_counts_train"] == dataset["pattern_counts_train"]


# ----------------------------------------------------------------------------- the bundle's JSON files
def test_the_bundles_dataset_and_encoders_files_have_typed_views():
    bundle = load_bundle(DEMO_BUNDLE)
    dataset = bundle.dataset_info
    assert isinstance(dataset, DatasetInfo) and dataset.to_dict() == bundle.dataset
    assert _text(DatasetInfo.from_dict(bundle.dataset).to_dict()) == _text(bundle.dataset)
    assert [m.kind for m in dataset.modalities] == [
        ModalityKind.TABULAR,
        ModalityKind.IMAGE,
        ModalityKind.TEXT,
        ModalityKind.TEXT,
    ]
    assert dataset.synthetic and dataset.split_counts == bundle.dataset["split_counts"]
    encoders = bundle.encoder_info
    assert {m: e.kind for m, e in encoders.items()} == {
        "structured": EncoderKind.TABULAR,
        "cxr": EncoderKind.IMAGE,
        "discharge_note": EncoderKind.TEXT,
        "radiology_report": EncoderKind.TEXT,
    }
    assert {m: e.to_dict() for m, e in encoders.items()} == bundle.encoders


def test_encoder_and_dataset_entries_read_what_older_bundles_hold():
    assert EncoderInfo.from_dict({"encoder_id": "precomputed-1", "kind": "precomputed", "dim": 8}).kind is (
        EncoderKind.PRECOMPUTED
    )
    with pytest.raises(ValueError, match="encoder kind 'audio' is not accepted"):
        EncoderInfo.from_dict({"encoder_id": "x", "kind": "audio"})
    assert DatasetInfo.from_dict({}) == DatasetInfo()  # a bundle saved with an empty dataset.json
    assert DatasetInfo.from_dict({"name": "d", "more": [1]}).to_dict()["more"] == [1]
