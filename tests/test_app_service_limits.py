"""The app's analysis under work limits (issue 18, case 2): it stops at its time budget or when cancelled
(at its next step or model pass), and a second user waits a bounded time for the model, then gets a clear
refusal, instead of waiting for whatever the first one started."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from mmnar_app.service import AnalysisRefused, LocalService
from mmnar_core.cancel import CancelToken, cancel_scope, check_cancelled


class SlowPredictor:
    """Stands in for the model: many short passes, each a cancellation point as in the attributions."""

    config = SimpleNamespace(tasks=["icu_90d"])

    def __init__(self):
        self.steps = 0

    def explain(self, record, tasks, progress=None, modalities=None, digest=None, cancel=None, **_):
        with cancel_scope(cancel):
            for _ in range(5_000):
                check_cancelled()
                time.sleep(0.002)
                self.steps += 1
        return SimpleNamespace(input_hash=digest)


def service(budget_s: float = 60.0, wait_s: float = 20.0) -> LocalService:
    svc = LocalService.__new__(LocalService)
    svc.predictor, svc._lock = SlowPredictor(), threading.Lock()
    svc.budget_s, svc.wait_s = budget_s, wait_s
    svc._cache = SimpleNamespace(get=lambda key: None, put=lambda key, value: None)
    svc._cached = lambda digest, task, modalities: (None, "key")
    return svc


@pytest.fixture(autouse=True)
def cheap_hash(monkeypatch):
    import mmnar_core.explain.explanation as explanation

    monkeypatch.setattr(explanation, "input_hash", lambda record: "digest")


def test_an_analysis_stops_at_its_time_budget():
    svc = service(budget_s=0.3)
    started = time.monotonic()
    with pytest.raises(AnalysisRefused, match="time budget of 0.3 s"):
        svc.analyse(object(), "icu_90d")
    assert time.monotonic() - started < 1.0 and svc.predictor.steps < 1_000
    assert not svc._lock.locked()


def test_a_cancelled_analysis_stops_and_frees_the_model():
    svc, token = service(), CancelToken()
    threading.Timer(0.2, token.cancel, args=("the user left the page",)).start()
    with pytest.raises(AnalysisRefused, match="the user left the page"):
        svc.analyse(object(), "icu_90d", cancel=token)
    assert not svc._lock.locked()


def test_a_second_user_is_refused_after_a_bounded_wait():
    svc, token = service(budget_s=60.0, wait_s=0.3), CancelToken()
    stopped = []

    def run_first():
        try:
            svc.analyse(object(), "icu_90d", cancel=token)
        except AnalysisRefused as error:
            stopped.append(str(error))

    first = threading.Thread(target=run_first, daemon=True)
    first.start()
    time.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(AnalysisRefused, match="another analysis is running"):
        svc.analyse(object(), "icu_90d")
    assert 0.25 < time.monotonic() - started < 1.0
    token.cancel("test over")
    first.join(2)
    assert not first.is_alive() and "test over" in stopped[0]
