"""The Patient page's background second pass (mmnar_app.completion) on the real in-process service: it gives
the explanation a direct `complete` gives, with its steps in order; it hands back the service's refusal; and
a stopped one releases the model without finishing, within the model pass it is in."""

import pytest

from mmnar_app import completion
from mmnar_app.demo_patients import load_demo_patients
from mmnar_app.service import AnalysisRefused, LocalService
from mmnar_core.explain.explanation import ExplanationCache
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.results import ALL_TASKS


def _content(explanation) -> dict:
    data = explanation.to_dict()
    data.pop("timings")
    return data


@pytest.fixture(scope="module")
def service():
    return LocalService(DEMO_BUNDLE)


@pytest.fixture(scope="module")
def patient():
    demo = next(d for d in load_demo_patients() if d.label.startswith("Demo 07"))  # structured + report
    return demo.record()


def _fresh(service: LocalService) -> LocalService:
    """The same loaded model with an empty explanation cache (nothing is served from an earlier test)."""
    fresh = LocalService.__new__(LocalService)
    fresh.__dict__.update(service.__dict__, _cache=ExplanationCache(64))
    return fresh


def test_background_completion_equals_the_direct_one(service, patient):
    svc = _fresh(service)
    partial = svc.analyse(patient, ALL_TASKS, modalities=[])
    assert partial.pending() == ["structured", "radiology_report"]
    job = completion.start(svc, partial, patient, ALL_TASKS)
    seen = []
    complete = completion.wait(job, seen.append)
    assert seen == ["encode", "predict", "structured", "radiology_report"]  # each step once, in order
    assert not job.running and complete.pending() == []
    direct = _fresh(service)
    assert _content(complete) == _content(
        direct.complete(direct.analyse(patient, ALL_TASKS, modalities=[]), patient, ALL_TASKS)
    )
    assert svc.analyse(patient, ALL_TASKS, modalities=[]) is complete  # cached for every session


def test_a_refusal_is_handed_to_the_page(service, patient):
    svc = _fresh(service)
    partial = svc.analyse(patient, ALL_TASKS, modalities=[])
    svc.wait_s = 0.05
    svc._lock.acquire()  # another analysis holds the model
    try:
        job = completion.start(svc, partial, patient, ALL_TASKS)
        with pytest.raises(AnalysisRefused, match="another analysis is running"):
            completion.wait(job)
    finally:
        svc._lock.release()


def test_a_stopped_completion_releases_the_model_unfinished(service, patient):
    svc = _fresh(service)
    partial = svc.analyse(patient, ALL_TASKS, modalities=[])
    svc._lock.acquire()  # the job waits for its turn, so it is stopped before its first step, every time
    job = completion.start(svc, partial, patient, ALL_TASKS)
    job.stop()
    svc._lock.release()
    job.thread.join(60)
    assert not job.running and job.result is None and job.steps == []
    with pytest.raises((AnalysisRefused, RuntimeError), match="stopped"):
        completion.wait(job)
    assert not svc._lock.locked()  # released: the next analysis runs
    assert svc.complete(partial, patient, ALL_TASKS).pending() == []


def test_a_completion_stopped_inside_a_step_ends_there(service):
    """Stopped while its last step (the discharge summary's phrase deletion, ~1 s here) runs: the job's token
    ends it inside that step. A stop that only acted between steps would let this last step finish and
    the job return a complete explanation."""
    import time

    demo = next(d for d in load_demo_patients() if d.label.startswith("Demo 05"))  # structured + discharge note
    record = demo.record()
    svc = _fresh(service)
    partial = svc.analyse(record, ALL_TASKS, modalities=[])
    assert partial.pending()[-1] == "discharge_note"
    job = completion.start(svc, partial, record, ALL_TASKS)
    while "discharge_note" not in job.steps and job.running:
        time.sleep(0.005)
    job.stop()
    job.thread.join(60)
    assert job.steps[-1] == "discharge_note" and job.result is None
    assert isinstance(job.error, AnalysisRefused) and "replaced" in str(job.error)
    assert not svc._lock.locked()
