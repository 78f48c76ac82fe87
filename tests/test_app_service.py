"""The in-process service: a fast partial explanation completed later equals one complete explanation,
and a partial one never shares the cache key of a complete one."""

import pytest

from mmnar_app.demo_patients import load_demo_patients
from mmnar_app.service import LocalService
from mmnar_core.explain.explanation import ExplanationCache
from mmnar_core.resources import DEMO_BUNDLE


def _content(explanation) -> dict:
    data = explanation.to_dict()
    data.pop("timings")
    return data


def test_partial_then_complete_equals_one_complete_explanation():
    service = LocalService(DEMO_BUNDLE)
    demo = next(d for d in load_demo_patients() if d.label.startswith("Demo 07"))  # structured + report
    record, task = demo.record(), "icu_90d"
    encoded = []
    real_encode = service.predictor.encoder.encode
    service.predictor.encoder.encode = lambda r: encoded.append(r.patient_id) or real_encode(r)
    partial = service.analyse(record, task, modalities=["structured"])
    assert [t.modality for t in partial.texts] == [] and partial.cache_key != service.cache_key(record, task)
    steps = []
    complete = service.complete(partial, record, task, steps.append)
    assert [t.modality for t in complete.texts] == ["radiology_report"] and "radiology_report" in steps
    assert len(encoded) == 1  # the second pass reuses the first pass's embeddings
    assert complete.cache_key == service.cache_key(record, task)
    fresh = LocalService.__new__(LocalService)
    fresh.__dict__.update(service.__dict__, _cache=ExplanationCache(64))
    assert _content(fresh.analyse(record, task)) == _content(complete)
    assert service.analyse(record, task, modalities=["structured"]) is complete  # the complete one is served


@pytest.mark.slow
def test_warm_up_runs_a_full_explanation_and_caches_nothing(caplog):
    from mmnar_app.service import warm_up_record

    service = LocalService(DEMO_BUNDLE)
    record = warm_up_record(service.predictor)
    assert set(record.images) == {"cxr"} and set(record.texts) == {"discharge_note", "radiology_report"}
    assert all(value is None for value in record.structured.values())
    thread = service.start_warm_up()
    thread.join(120)
    assert not thread.is_alive() and len(service._cache) == 0 and not service._lock.locked()
    assert not [r for r in caplog.records if "warm-up" in r.getMessage()]  # it did not fail
    explanation = service.predictor.explain(record, tasks=["icu_90d"])  # the made-up patient is a valid input
    assert {i.modality for i in explanation.images} == {"cxr"} and len(explanation.texts) == 2
