"""Captum attributions within each modality (mmnar_core.explain.attributions), the serialisable
Explanation, span mapping back to the original note, and faithfulness metrics on a tiny synthetic cohort.

The slow tests share one small bundle built with the real encoders (synth -> embed -> train, about a
minute on 2 CPU cores). Faithfulness thresholds are lowered for CI (documented at the test): a tiny
cohort and a model trained for seconds cannot reach the issue's 0.8 goals; the test checks the metrics
are computed, well-formed and not worse than chance where chance is defined.
"""

import json
import math

import numpy as np
import pytest
import torch

from mmnar_core.encoders.runtime import native_bf16  # noqa: E402
from mmnar_core.encoders.text_clean import clean_note
from mmnar_core.explain.attributions import AttributionSettings, HeatMap, input_to_image, to_image_geometry
from mmnar_core.explain.text_spans import WORD, clean_with_offsets, word_map
from mmnar_lab.explain.faithfulness import chance_hit_rate

from support.bundles import build_synthetic_bundle

# risk units: the note transformer runs in bfloat16 where the CPU computes it natively (8 mantissa bits)
BF16_NOTES = native_bf16(torch.device("cpu"))
TEXT_VALUE_TOLERANCE = 1e-3 if BF16_NOTES else 2e-5
TEXT_DELTA_TOLERANCE = 3e-3 if BF16_NOTES else 1e-3

UNICODE_NOTE = (
    "Name:  [**Known lastname 123**]   Unit No: ___\r\n"
    "Hx:\tCafe\u0301  patient, naïve to Ωmega-3;  e\u0301 \u00a0 ___ ___, ___ pleural\u00a0effusion 😀 noted.\n"
    "==========\n"
    "Impression: 한국어 ﬁbrosis (ligature) Zürich\u2019s XXXX dose.\r\n"
    "Electronically signed by Dr. X\n"
)


# ----------------------------------------------------------------------------- fast unit tests
def test_clean_with_offsets_matches_cleaner_and_maps_words_to_original_text():
    tracked = clean_with_offsets(UNICODE_NOTE)
    assert tracked.text == clean_note(UNICODE_NOTE)
    assert len(tracked.starts) == len(tracked.ends) == len(tracked.text)
    assert all(0 <= a <= b <= len(UNICODE_NOTE) for a, b in zip(tracked.starts, tracked.ends))
    assert all(a1 <= a2 for a1, a2 in zip(tracked.starts, tracked.starts[1:]))  # monotone
    mapped = {}
    for match in WORD.finditer(tracked.text):
        a, b = match.span()
        mapped.setdefault(match.group(), []).append(UNICODE_NOTE[tracked.starts[a] : tracked.ends[b - 1]])
    assert mapped["naïve"] == ["naïve"]
    assert mapped["Café"] == ["Cafe\u0301"]  # NFC-composed in the cleaned text, original code points kept
    assert mapped["é"] == ["e\u0301"]
    assert mapped["한국어"] == ["한국어"]
    assert mapped["Zürich\u2019s"] == ["Zürich\u2019s"]
    assert mapped["pleural"] == ["pleural"] and mapped["effusion"] == ["effusion"]
    # placeholders map to the whole de-identification mark(s) they replaced
    assert "___ ___, ___" in mapped["___"] and "XXXX" in mapped["___"]
    # dropped header and signature lines contribute nothing
    assert "Known" not in mapped and "Electronically" not in mapped


@pytest.mark.slow
def test_word_map_assigns_tokens_to_words_with_original_spans():
    from mmnar_core.encoders.text_encoder import load_text_model
    from mmnar_core.explain.text_spans import token_offsets

    tokenizer, _ = load_text_model(None)
    tracked = clean_with_offsets(UNICODE_NOTE)
    offsets = token_offsets(tokenizer, tracked.text)
    words = word_map(tracked, UNICODE_NOTE, offsets)
    assert len(words.token_word) == len(offsets)
    assert len(words.words) == len(words.spans) == len(words.clean_spans)
    for text, (a, b) in zip(words.words, words.spans):
        assert UNICODE_NOTE[a:b] == text
    # every word-piece of "effusion" belongs to the same word; punctuation belongs to none
    effusion = words.words.index("effusion")
    pieces = [i for i, w in enumerate(words.token_word) if w == effusion]
    assert len(pieces) >= 1
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(tracked.text, add_special_tokens=False)["input_ids"])
    assert all(words.token_word[i] == -1 for i, t in enumerate(tokens) if t in {";", ",", "."})


def test_heatmap_roundtrip_is_exact_and_geometry_removes_padding():
    array = np.random.default_rng(0).normal(size=(30, 40)) * 1e-6  # tiny values survive the float16 scaling
    heat = HeatMap.from_array(array)
    again = HeatMap.from_dict(json.loads(json.dumps(heat.to_dict())))
    assert again == heat
    np.testing.assert_allclose(heat.array(), array, rtol=2e-3, atol=2e-3 * np.abs(array).max())
    # a wide image padded to a square: the band inside the image maps to the full height
    maps = torch.zeros(1, 16, 16)
    maps[0, 4:12, :] = 1.0  # the image occupies rows 4..11 of the padded square (H=50, W=100)
    out = to_image_geometry(maps, 50, 100)
    assert out.shape == (1, 50, 100)
    assert out[0, 5:45].min() > 0.99
    assert input_to_image(8, 0, 16, 50, 100)[0] == pytest.approx(25, abs=4)
    capped = to_image_geometry(maps, 500, 1000, max_side=100)
    assert capped.shape == (1, 50, 100)


def test_chance_hit_rate():
    assert chance_hit_rate(100, 0) == 0.0
    assert chance_hit_rate(5, 1) == 1.0
    assert chance_hit_rate(100, 10) == pytest.approx(1 - math.comb(90, 10) / math.comb(100, 10))


def test_settings_validate():
    from mmnar_core.explain.attributions import AttributionError

    with pytest.raises(AttributionError, match="accepted: probability, logit"):
        AttributionSettings(output="odds")
    with pytest.raises(AttributionError, match="text_steps"):
        AttributionSettings(text_steps=0)


# ----------------------------------------------------------------------------- end to end on a bundle
TINY = {"epochs": 12, "d_model": 32, "n_heads": 2, "n_layers": 1, "batch_size": 32, "pretrain_epochs": 1}
FAST = AttributionSettings(tabular_steps=32, image_steps=16, text_steps=8)  # faithfulness test only
# the completeness test needs a converged integral: 32 note steps. At the default 16, on a CPU without native
# bfloat16 (the fp32 path), one note's delta was 44% of its small gap (-0.0037 of -0.0084; at 32 steps 0.0006,
# at 64 0.0005); at 8 it reached 67%. Words (Layer IG) are attributed as well as phrases (occlusion, the
# default) so both are checked
CHECKED = AttributionSettings(tabular_steps=32, image_steps=16, text_steps=32, text_words=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from mmnar_core.dataset import load_dataset
    from mmnar_core.predictor import Predictor

    root = build_synthetic_bundle(tmp_path_factory.mktemp("explain"), n=120, seed=5, config=TINY, resamples=20)
    predictor = Predictor.load(root / "bundle", device="cpu")
    dataset = load_dataset(root / "data")
    return predictor, dataset


def _full_patient(dataset):
    available = dataset.availability()
    rows = np.flatnonzero(available.all(axis=1))
    assert len(rows), "the tiny cohort should hold a patient with all four modalities"
    return dataset.record(dataset.patients["patient_id"].iloc[int(rows[0])])


@pytest.fixture(scope="module")
def explained(built):
    predictor, dataset = built
    record = _full_patient(dataset)
    task = predictor.config.tasks[1]
    return record, predictor.explain(record, tasks=[task], settings=CHECKED)


@pytest.mark.slow
def test_explanation_shapes_and_values(built, explained):
    predictor, _ = built
    record, explanation = explained
    task = explanation.tasks[0]
    risk = next(r for r in explanation.prediction.risks if r.task == task).risk
    names = {f.name for f in predictor.features}
    (tab,) = explanation.tabular
    assert {f.feature for f in tab.features} == names
    for f in tab.features:
        assert f.value == record.structured.get(f.feature)
        assert f.missing == (f.value is None)
        assert set(f.attribution) == {task}
    units = {f.name: f.unit for f in predictor.features}
    assert all(f.unit == units[f.feature] for f in tab.features)
    (image,) = explanation.images
    assert image.image_shape == list(predictor.encoder.image.decode(record.images["cxr"]).shape)
    assert image.integrated_gradients[task].shape == tuple(image.image_shape)
    assert image.gradcam[task].shape == tuple(image.image_shape)
    assert 0 <= image.peak[task][0] < image.image_shape[0] and 0 <= image.peak[task][1] < image.image_shape[1]
    assert {t.modality for t in explanation.texts} == {"discharge_note", "radiology_report"}
    for text in explanation.texts:
        note = record.texts[text.modality]
        assert text.n_tokens > 0 and len(text.words) > 0 and len(text.phrases) > 0
        for word in text.words:
            assert note[word.start : word.end] == word.text
        for phrase in text.phrases:
            assert note[phrase.start : phrase.end] == phrase.text
            assert phrase.assertion in {"affirmed", "negated", "hedged"} and set(phrase.attribution) == {task}
        assert text.method.startswith("PhraseOcclusion") and "LayerIntegratedGradients" in text.method
    # every modality's IG starts from the patient's own risk: the output is the rectified calibrated risk
    for item in (*explanation.tabular, *explanation.images):
        assert item.summary.value[task] == pytest.approx(risk, abs=2e-5)
    # the bfloat16 note path (text_precision "auto") moves a risk near 0.1 by up to ~1e-3
    for item in explanation.texts:
        assert item.summary.value[task] == pytest.approx(risk, abs=TEXT_VALUE_TOLERANCE)
        assert item.phrase_summary.value[task] == pytest.approx(risk, abs=TEXT_VALUE_TOLERANCE)
        assert item.output == "probability"


@pytest.mark.slow
def test_integrated_gradients_completeness(explained):
    _, explanation = explained
    task = explanation.tasks[0]
    (tab,) = explanation.tabular
    gap = tab.summary.value[task] - tab.summary.baseline_value[task]
    total = sum(f.attribution[task] for f in tab.features)
    # Captum's delta is exactly sum(attr) - gap; it must also be small on the smooth tabular path
    assert total - gap == pytest.approx(tab.summary.delta[task], abs=1e-6)
    # and small: at most 10% of the gap (32 steps in these tests; the default is 64)
    assert abs(tab.summary.delta[task]) <= 0.1 * abs(gap) + 2e-4
    (image,) = explanation.images
    gap = image.summary.value[task] - image.summary.baseline_value[task]
    assert abs(image.summary.delta[task]) <= 0.1 * abs(gap) + 1e-3  # risk units: 0.1 point
    for text in explanation.texts:
        gap = text.summary.value[task] - text.summary.baseline_value[task]
        total = sum(w.attribution[task] for w in text.words) + text.other[task]
        assert total - gap == pytest.approx(text.summary.delta[task], abs=1e-5)
        assert abs(text.summary.delta[task]) <= 0.1 * abs(gap) + TEXT_DELTA_TOLERANCE
        # phrases: the summary's delta is what one-at-a-time deletion does not add up to (reported, not bounded)
        phrase_gap = text.phrase_summary.value[task] - text.phrase_summary.baseline_value[task]
        phrase_total = sum(p.attribution[task] for p in text.phrases)
        assert phrase_total - phrase_gap == pytest.approx(text.phrase_summary.delta[task], abs=1e-5)


@pytest.mark.slow
def test_image_ig_heatmap_sums_to_the_gap_in_model_input_space(built):
    predictor, dataset = built
    from mmnar_core.explain.attributions import attribute_record

    record = _full_patient(dataset)
    vectors = predictor.encode(record)
    result = attribute_record(predictor.attribution_target(vectors), record, [predictor.config.tasks[0]], FAST, ["cxr"])
    (image,) = result.images
    case = result.cases["cxr"]
    task = predictor.config.tasks[0]
    gap = image.summary.value[task] - image.summary.baseline_value[task]
    assert float(case.ig.sum()) - gap == pytest.approx(image.summary.delta[task], abs=1e-5)


@pytest.mark.slow
def test_explanation_json_roundtrip_is_exact_and_hash_is_canonical(built, explained):
    from mmnar_core.explain.explanation import Explanation, input_hash

    record, explanation = explained
    text = explanation.to_json()
    again = Explanation.from_json(text)
    assert again == explanation
    assert again.to_dict() == explanation.to_dict()
    assert json.loads(again.to_json()) == json.loads(text)
    assert explanation.input_hash == input_hash(record)
    changed = type(record)(record.patient_id, dict(record.structured), dict(record.images), dict(record.texts))
    assert input_hash(changed) == explanation.input_hash  # labels are not inputs
    numeric = next(k for k, v in changed.structured.items() if isinstance(v, float))
    changed.structured[numeric] = changed.structured[numeric] + 1.0
    assert input_hash(changed) != explanation.input_hash


@pytest.mark.slow
def test_explain_rejects_unknown_task(built):
    from mmnar_core.explain.attributions import AttributionError

    predictor, dataset = built
    with pytest.raises(AttributionError, match="accepted"):
        predictor.explain(_full_patient(dataset), tasks=["nope"])


@pytest.mark.slow
def test_explain_patient_with_structured_only(built):
    predictor, dataset = built
    available = dataset.availability()
    rows = np.flatnonzero(available[:, 0] & ~available[:, 1:].any(axis=1))
    if not len(rows):
        pytest.skip("no structured-only patient in this cohort")
    record = dataset.record(dataset.patients["patient_id"].iloc[int(rows[0])])
    explanation = predictor.explain(record, settings=FAST)
    assert len(explanation.tabular) == 1 and not explanation.images and not explanation.texts
    assert explanation.what_if is not None and explanation.what_if.available == ["structured"]


@pytest.mark.slow
def test_faithfulness_metrics_on_a_small_cohort(built):
    """CI thresholds (lowered, documented): the issue's goals are >= 0.8 for pointing and signal words
    on a well-trained model; here a 120-patient cohort and a seconds-long training give a weak model, so
    the test checks the figures are computed over the right patients, lie in [0, 1], and that the text
    hit rate is not below the rate of 10 words drawn at random minus a margin."""
    from mmnar_lab.explain.faithfulness import evaluate_faithfulness

    predictor, dataset = built
    task = predictor.config.tasks[1]
    figures = evaluate_faithfulness(predictor, dataset, "all", [task], max_patients=10, settings=FAST)
    assert figures["n_patients"] == 10
    pointing = figures["pointing_game_ig"][task]
    if pointing["n"]:
        assert 0.0 <= pointing["rate"] <= 1.0
    for modality, per in figures["signal_word_top10"].items():
        assert 0.0 <= per[task]["rate"] <= 1.0
        assert per[task]["rate"] >= figures["signal_word_top10_chance"][modality] - 0.35
    assert "structured" in figures["deletion"]
    for per in figures["deletion"].values():
        d = per[task]
        assert d["mean_abs_change_top"] >= 0 and d["mean_abs_change_random"] >= 0
    structured = figures["deletion"]["structured"][task]
    assert structured["mean_abs_change_top"] >= 0.5 * structured["mean_abs_change_random"]
    json.dumps(figures)


@pytest.mark.slow
def test_text_precision_bf16_keeps_the_top_words(built):
    """The note transformer in bfloat16 (the default where the CPU/GPU computes it natively) gives the
    same top words as float32, with completeness still holding for its own forward."""
    from mmnar_core.encoders.runtime import native_bf16
    from mmnar_core.explain.attributions import AttributionError, attribute_record

    predictor, dataset = built
    record = _full_patient(dataset)
    vectors = predictor.encode(record)
    task = predictor.config.tasks[1]
    runs = {}
    for precision in ("fp32", "bf16"):
        settings = AttributionSettings(
            tabular_steps=8, image_steps=8, text_steps=16, text_precision=precision, text_words=True
        )
        (text, *_) = attribute_record(
            predictor.attribution_target(vectors), record, [task], settings, ["discharge_note"]
        ).texts
        runs[precision] = text
    assert runs["fp32"].method == "PhraseOcclusion+LayerIntegratedGradients"
    assert (
        runs["bf16"].method
        == "PhraseOcclusion (transformer in bfloat16)+LayerIntegratedGradients (transformer in bfloat16)"
    )
    scores = {p: np.array([w.attribution[task] for w in t.words]) for p, t in runs.items()}
    top = {p: set(np.argsort(-np.abs(s))[:10]) for p, s in scores.items()}
    assert len(top["fp32"] & top["bf16"]) >= 8
    assert np.corrcoef(scores["fp32"], scores["bf16"])[0, 1] > 0.98
    text = runs["bf16"]
    gap = text.summary.value[task] - text.summary.baseline_value[task]
    total = sum(w.attribution[task] for w in text.words) + text.other[task]
    assert total - gap == pytest.approx(text.summary.delta[task], abs=1e-5)
    with pytest.raises(AttributionError, match="text_precision 'fp16' is not accepted"):
        AttributionSettings(text_precision="fp16")
    assert native_bf16(torch.device("meta")) is False


def _with_references(predictor, target):
    """The target with training patients as structured baselines (what Predictor.attribution_target passes
    once wired; until then added here from the bundle's reference set)."""
    from dataclasses import replace

    from mmnar_core.explain.attributions import tabular_references_from

    if target.tabular_references or predictor.reference is None:
        return target
    reference = predictor.reference
    return replace(
        target,
        tabular_references=tabular_references_from(reference.inputs, reference.availability, predictor.modalities),
    )


@pytest.mark.slow
def test_all_outcomes_in_one_run_equal_one_outcome_runs(built):
    """Every outcome is attributed from the same passes (phrase occlusion, one IG path batch per structured
    baseline, one image IG batch): the attributions of a task do not depend on which other tasks were asked
    for, and a phrase's value is exactly the risk change when it is deleted (sign: + raises the risk)."""
    from mmnar_core.explain.attributions import attribute_record

    predictor, dataset = built
    record = _full_patient(dataset)
    vectors = predictor.encode(record)
    settings = AttributionSettings(tabular_steps=8, image_steps=8, image_gradcam=False)
    target = _with_references(predictor, predictor.attribution_target(vectors))
    assert target.tabular_references["structured"].shape[1] == target.inputs[0].shape[1]
    every = attribute_record(target, record, None, settings)
    tasks = predictor.config.tasks
    assert [t.modality for t in every.texts] == ["discharge_note", "radiology_report"]
    for task in tasks:
        alone = attribute_record(target, record, [task], settings)
        assert every.tabular[0].method == "ExpectedGradients"
        for a, b in zip(every.texts, alone.texts):
            assert [p.text for p in a.phrases] == [p.text for p in b.phrases]
            np.testing.assert_allclose(
                [p.attribution[task] for p in a.phrases], [p.attribution[task] for p in b.phrases], atol=1e-6
            )
        np.testing.assert_allclose(
            [f.attribution[task] for f in every.tabular[0].features],
            [f.attribution[task] for f in alone.tabular[0].features],
            atol=1e-6,
        )
        np.testing.assert_allclose(
            every.images[0].integrated_gradients[task].array(),
            alone.images[0].integrated_gradients[task].array(),
            atol=1e-6,
        )


def test_older_saved_text_attributions_still_load():
    """A TextAttribution saved before phrases existed (no phrases / phrase_method / phrase_summary, words
    without `negated`) loads with the new fields at their defaults."""
    from mmnar_core.explain.attributions import TextAttribution

    old = {
        "modality": "discharge_note",
        "method": "LayerIntegratedGradients",
        "output": "probability",
        "baseline": "[PAD]",
        "n_steps": 16,
        "n_tokens": 3,
        "n_windows": 1,
        "words": [{"text": "effusion", "start": 0, "end": 8, "attribution": {"icu": 0.1}}],
        "other": {"icu": 0.0},
        "summary": {"value": {"icu": 0.2}, "baseline_value": {"icu": 0.1}, "delta": {"icu": 0.0}},
    }
    text = TextAttribution.from_dict(old)
    assert text.phrases == [] and text.phrase_summary is None and text.words[0].negated is False
    again = TextAttribution.from_dict(text.to_dict())
    assert again == text


@pytest.mark.slow
def test_phrase_scores_from_shared_layer_ig_match_the_word_ig(built):
    """phrase_scores="integrated_gradients": one forward per step for every outcome; a phrase's score is the
    sum of its tokens' Layer IG, so it matches the per-task Captum word IG summed over the phrase (the phrase
    also holds its punctuation tokens, hence a correlation, not equality), and completeness holds."""
    from mmnar_core.explain.attributions import attribute_record

    predictor, dataset = built
    record = _full_patient(dataset)
    vectors = predictor.encode(record)
    settings = AttributionSettings(
        tabular_steps=4,
        image_steps=4,
        image_gradcam=False,
        text_steps=8,
        text_precision="fp32",
        text_words=True,
        phrase_scores="integrated_gradients",
    )
    result = attribute_record(predictor.attribution_target(vectors), record, None, settings, ["discharge_note"])
    (text,) = result.texts
    assert text.phrase_method == "PhraseLayerIntegratedGradients"
    for task in predictor.config.tasks:
        phrases = np.array([p.attribution[task] for p in text.phrases])
        from_words = np.array(
            [
                sum(w.attribution[task] for w in text.words if p.start <= w.start and w.end <= p.end)
                for p in text.phrases
            ]
        )
        assert np.corrcoef(phrases, from_words)[0, 1] > 0.95
        summary = text.phrase_summary
        gap = summary.value[task] - summary.baseline_value[task]
        assert summary.value[task] == pytest.approx(text.summary.value[task], abs=1e-5)
        # the same IG as Captum's per-task Layer IG (same steps and baseline): same convergence delta, same total
        assert summary.delta[task] == pytest.approx(text.summary.delta[task], abs=1e-4)
        words_total = sum(w.attribution[task] for w in text.words) + text.other[task]
        assert phrases.sum() == pytest.approx(words_total, abs=1e-4)
        assert phrases.sum() - gap == pytest.approx(summary.delta[task], abs=1e-4)
