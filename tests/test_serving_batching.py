"""Micro-batching and overload: concurrent requests share batches (seen in GET /stats), a full queue gives
503 with Retry-After at once, a slow request gives 504, and batched numbers equal the one-at-a-time
predictor's (bit-identical in 'exact' mode, within float rounding in 'stacked' mode). The gated
predictor stub is used only for the queue mechanics; everything else runs the real demo bundle."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from mmnar_app.demo_patients import load_demo_patients
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.serving import ServeConfig, create_app
from mmnar_core.serving.batching import Batcher, Job, Overloaded
from mmnar_lab.serving.testing import ServerThread, cached_predictor

BUNDLE = DEMO_BUNDLE


@pytest.fixture(scope="module")
def predictor():
    return cached_predictor(BUNDLE)


@pytest.fixture(scope="module")
def demos():
    return {d.label[:7]: d for d in load_demo_patients()}


def request_of(demo, **changes):
    """(data, files, record) for a demo patient with some structured values changed (a distinct patient)."""
    structured = {**demo.structured, **changes}
    data = {"structured": json.dumps(structured), "patient_id": demo.key}
    files = [(m, (f"{m}.png", raw, "image/png")) for m, raw in demo.images.items()]
    files += [(m, (f"{m}.txt", text.encode(), "text/plain")) for m, text in demo.texts.items()]
    record = demo.record()
    record.structured = structured
    return data, files, record


def post_all(url: str, requests: list[tuple[str, dict, list]], stagger: float = 0.0) -> list[httpx.Response]:
    def send(item):
        path, data, files = item
        parts = [(k, (None, v.encode())) for k, v in data.items()] + list(files)  # multipart even without files
        return httpx.post(url + path, files=parts, timeout=60)

    with ThreadPoolExecutor(len(requests)) as pool:
        futures = []
        for item in requests:
            futures.append(pool.submit(send, item))
            time.sleep(stagger)
        return [f.result() for f in futures]


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# ------------------------------------------------------------------------------------------------ the batcher
def test_batcher_queue_bound_cancellation_and_handler_errors():
    gate, seen = threading.Event(), []

    def handler(jobs):
        seen.append([j.payload for j in jobs])
        gate.wait(5)
        for job in jobs:
            if job.payload == "boom":
                raise RuntimeError("boom")
            job.future.set_result(job.payload * 2)

    batcher = Batcher(handler, max_batch=3, max_wait_s=0.05, max_queue=2)
    batcher.start()
    try:
        first = batcher.submit(Job("predict", 1))
        wait_for(lambda: seen)  # the worker holds job 1
        queued = [batcher.submit(Job("predict", n)) for n in (2, 3)]
        started = time.monotonic()
        with pytest.raises(Overloaded) as full:
            batcher.submit(Job("predict", 4))
        assert time.monotonic() - started < 0.1 and full.value.retry_after >= 1  # at once, never blocks
        queued[0].cancel()  # its caller gave up: the worker drops it
        gate.set()
        assert first.result(5) == 2 and queued[1].result(5) == 6
        boom = batcher.submit(Job("predict", "boom"))
        assert isinstance(boom.exception(5), RuntimeError)  # answered, and the worker lives on
        assert batcher.submit(Job("predict", 5)).result(5) == 10
        stats = batcher.stats()
        assert stats["rejected"] == 1 and stats["dropped"] == 1 and stats["failed"] == 1 and stats["worker_running"]
        assert seen[1] == [3]  # the cancelled job never reached the handler
    finally:
        gate.set()
        batcher.stop()


# ------------------------------------------------------------------------------------------------ slow stub
class GatedPredictor:
    """The real demo predictor whose `encode` waits until `gate` is set: a deliberately slow model."""

    def __init__(self, real):
        self._real = real
        self.gate = threading.Event()
        self.encoding = threading.Event()

    def __getattr__(self, name):
        return getattr(self._real, name)

    def encode(self, record):
        self.encoding.set()
        self.gate.wait(30)
        return self._real.encode(record)


def test_concurrent_requests_are_batched_and_a_full_queue_gives_503(predictor, demos):
    stub = GatedPredictor(predictor)
    config = ServeConfig(max_batch=4, max_wait_ms=20, max_queue=3)
    data, files, record = request_of(demos["Demo 06"])
    with ServerThread(create_app(stub, config)) as server, ThreadPoolExecutor(4) as pool:
        stats = lambda: httpx.get(server.url + "/stats").json()  # noqa: E731
        send = lambda path: httpx.post(server.url + path, data=data, files=files, timeout=60)  # noqa: E731
        first = pool.submit(send, "/predict")
        assert stub.encoding.wait(20)  # the worker is busy with the first request
        waiting = [pool.submit(send, path) for path in ("/predict", "/what-if", "/predict")]
        wait_for(lambda: stats()["queue_depth"] == 3)
        started = time.monotonic()
        rejected = send("/predict")
        assert time.monotonic() - started < 5
        assert rejected.status_code == 503 and int(rejected.headers["retry-after"]) >= 1
        error = rejected.json()["errors"][0]
        assert error["status"] == 503 and "busy" in error["problem"] and "queue limit 3" in error["problem"]
        assert httpx.get(server.url + "/health").status_code == 200  # alive while overloaded
        stub.gate.set()
        answers = [first.result(30)] + [f.result(30) for f in waiting]
        assert [a.status_code for a in answers] == [200, 200, 200, 200]
        final = stats()
        assert final["requests_per_batch"] == {"1": 1, "3": 1}  # the three waiting requests ran as one batch
        assert final["rejected"] == 1 and final["largest_batch"] == 3 and final["queue_depth"] == 0
    expected = predictor.predict(record).to_dict()
    for answer in (answers[0], answers[1], answers[3]):
        assert {k: v for k, v in answer.json().items() if k in expected} == expected


def test_request_timeout_gives_504_and_the_server_recovers(predictor, demos):
    stub = GatedPredictor(predictor)
    data, files, _ = request_of(demos["Demo 06"])
    # admission by work told the work is nearly free, so the requests reach the gated worker: the deadline is the backstop
    config = ServeConfig(request_timeout_s=0.5, max_wait_ms=0, decode_s_per_mpixel=1e-4, model_s_per_unit=1e-4)
    with ServerThread(create_app(stub, config)) as server:
        slow = post_all(server.url, [("/predict", data, files), ("/what-if", data, files)], stagger=0.1)
        assert [r.status_code for r in slow] == [504, 504]
        assert "no answer within the request timeout of 0.5 s" in slow[0].json()["errors"][0]["message"]
        stub.gate.set()
        after = httpx.post(server.url + "/predict", data=data, files=files, timeout=60)
        assert after.status_code == 200
        stats = httpx.get(server.url + "/stats").json()
        assert stats["timeouts"] == 2 and stats["dropped"] == 1  # the queued one never ran


# ------------------------------------------------------------------------------------------------ real model
def test_batched_requests_equal_the_one_at_a_time_predictor(predictor, demos):
    """Exact mode: four different patients in one batch -> the very numbers of Predictor.predict / what_if."""
    patients = [request_of(demos["Demo 06"], age=age) for age in (40, 55, 70)] + [request_of(demos["Demo 08"])]
    kinds = ["/predict", "/predict", "/what-if", "/predict"]
    with ServerThread(create_app(predictor, ServeConfig(max_batch=8, max_wait_ms=1500))) as server:
        answers = post_all(server.url, [(k, d, f) for k, (d, f, _) in zip(kinds, patients)])
        stats = httpx.get(server.url + "/stats").json()
    assert [a.status_code for a in answers] == [200] * 4
    assert stats["largest_batch"] >= 2 and stats["batches"] < 4  # batched
    for kind, (_, _, record), answer in zip(kinds, patients, answers):
        expected = (predictor.predict(record) if kind == "/predict" else predictor.what_if(record)).to_dict()
        assert {k: v for k, v in answer.json().items() if k in expected} == expected  # bit-identical


def test_stacked_mode_runs_one_forward_per_batch_within_rounding(predictor, demos):
    patients = [request_of(demos["Demo 06"], age=age) for age in (45, 60, 75)] + [request_of(demos["Demo 08"])]
    config = ServeConfig(max_batch=8, max_wait_ms=1500, batch_mode="stacked")
    with ServerThread(create_app(predictor, config)) as server:
        answers = post_all(server.url, [("/predict", d, f) for d, f, _ in patients])
        stats = httpx.get(server.url + "/stats").json()
    assert stats["mode"] == "stacked" and max(int(k) for k in stats["stacked_forwards"]) >= 2
    for (_, _, record), answer in zip(patients, answers):
        expected = predictor.predict(record).to_dict()
        got = answer.json()
        assert got["pattern"] == expected["pattern"] and got["available"] == expected["available"]
        for mine, theirs in zip(got["risks"], expected["risks"]):
            for key in ("risk", "low", "high", "raw", "calibrated"):
                assert mine[key] == pytest.approx(theirs[key], abs=1e-6)


def test_predict_many_and_encode_many_match_predict(predictor, demos):
    """The batched helpers: same availability and patterns, numbers within float rounding (notes included)."""
    records = [demos[k].record() for k in ("Demo 06", "Demo 07", "Demo 08")]
    many = predictor.predict_many(records)
    vectors = predictor.encode_many(records)
    for record, batched, vector in zip(records, many, vectors):
        single = predictor.predict(record).to_dict()
        reference = predictor.encode(record)
        assert set(vector) == set(reference)
        for name in vector:
            np.testing.assert_allclose(vector[name], reference[name], atol=1e-5)
        batched = batched.to_dict()
        assert batched["pattern"] == single["pattern"] and batched["patient_id"] == single["patient_id"]
        np.testing.assert_allclose(
            [r["risk"] for r in batched["risks"]], [r["risk"] for r in single["risks"]], atol=1e-6
        )
    assert predictor.predict_many([]) == []
    one = predictor.predict_many(records[:1])[0].to_dict()
    assert one == predictor.predict(records[0]).to_dict()  # a batch of one is the single path exactly
