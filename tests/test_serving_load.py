"""The load tool's arithmetic and its correctness check, on inputs small enough to work out by hand. No server
and no real load: the traffic loops run against an in-memory httpx transport."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from mmnar_lab.serving import loadtest
from mmnar_lab.serving.loadtest import (
    Outcome,
    Payload,
    check_answers,
    extract_risks,
    percentile,
    status_counts,
    summarize,
)


def test_percentile_matches_hand_values_and_numpy():
    values = [0.4, 0.1, 0.3, 0.2, 0.5]  # sorted: 0.1 .. 0.5
    assert percentile(values, 50) == pytest.approx(0.3)
    assert percentile(values, 0) == pytest.approx(0.1)
    assert percentile(values, 100) == pytest.approx(0.5)
    # (5 - 1) * 0.95 = 3.8 -> 0.4 + 0.8 * (0.5 - 0.4) = 0.48
    assert percentile(values, 95) == pytest.approx(0.48)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    rng = np.random.default_rng(0).random(101).tolist()
    for q in (50, 95, 99):
        assert percentile(rng, q) == pytest.approx(float(np.percentile(rng, q)))


def test_summary_counts_statuses_and_throughput():
    outcomes = (
        [Outcome(200, 0.1)] * 6
        + [Outcome(200, 0.3)] * 2
        + [Outcome(503, 0.001, retry_after="1")] * 3
        + [Outcome(503, 0.001)]
        + [Outcome(504, 2.0)]
        + [Outcome("timeout", 60.0)]
        + [Outcome(500, 0.2)]
        + [Outcome("error", 0.0)]
    )
    summary = summarize(outcomes, elapsed_s=4.0)
    assert summary["requests"] == 16
    assert summary["ok"] == 8
    assert summary["throughput_rps"] == 2.0  # 8 answers of 200 in 4 s
    assert summary["answered_rps"] == 4.0
    assert summary["status"] == {"200": 8, "500": 1, "503": 4, "504": 1, "error": 1, "timeout": 1}
    assert summary["rejected_503"] == 4 and summary["rejected_503_with_retry_after"] == 3
    assert summary["gateway_timeout_504"] == 1 and summary["client_timeouts"] == 1
    assert summary["other_errors"] == 3  # 500, timeout, connection error
    # latency of the 200s only: six 100 ms, two 300 ms
    assert summary["latency_ms"]["p50"] == 100.0
    assert summary["latency_ms"]["p95"] == 300.0
    assert summary["latency_ms"]["max"] == 300.0
    assert status_counts([]) == {}
    assert summarize([], 1.0)["latency_ms"]["p50"] is None


PREDICTION = {
    "patient_id": "demo01",
    "pattern": 15,
    "risks": [{"task": "a", "risk": 0.25, "low": 0.2, "high": 0.3}, {"task": "b", "risk": 0.5}],
}


def test_extract_risks_from_predict_and_explain_answers():
    assert extract_risks(PREDICTION) == {"a": 0.25, "b": 0.5}
    assert extract_risks({"prediction": PREDICTION, "what_if": None}) == {"a": 0.25, "b": 0.5}
    assert extract_risks({"detail": "busy"}) is None
    assert extract_risks([1, 2]) is None


def test_check_answers_detects_a_wrong_answer():
    expected = {0: {"a": 0.25, "b": 0.5}, 1: {"a": 0.1, "b": 0.2}}
    right = Outcome(200, 0.1, patient=0, body=PREDICTION)
    swapped = Outcome(200, 0.1, patient=1, body=PREDICTION)  # patient 0's answer returned for patient 1
    nudged = Outcome(
        200, 0.1, patient=0, body={"risks": [{"task": "a", "risk": 0.25 + 1e-3}, {"task": "b", "risk": 0.5}]}
    )
    missing_task = Outcome(200, 0.1, patient=0, body={"risks": [{"task": "a", "risk": 0.25}]})
    no_risks = Outcome(200, 0.1, patient=0, body={})
    unsampled = Outcome(200, 0.1, patient=0)  # no body kept: not checked
    assert check_answers([right, unsampled], expected) == {
        "checked": 1,
        "wrong": 0,
        "atol": loadtest.RISK_ATOL,
        "examples": [],
    }
    report = check_answers([right, swapped, nudged, missing_task, no_risks], expected)
    assert report["checked"] == 5 and report["wrong"] == 4
    assert {e["patient"] for e in report["examples"]} == {0, 1}
    # a difference within the tolerance is not wrong
    close = Outcome(
        200, 0.1, patient=0, body={"risks": [{"task": "a", "risk": 0.25 + 1e-9}, {"task": "b", "risk": 0.5}]}
    )
    assert check_answers([close], expected)["wrong"] == 0


def test_only_loopback_targets_are_accepted():
    for url in ("http://127.0.0.1:8765", "http://localhost:1/x", "http://127.3.2.1", "http://[::1]:80"):
        assert loadtest.require_loopback(url) == url
    for url in ("http://192.168.1.5:8765", "http://10.0.0.1", "http://example.org", "http://0.0.0.0:80", "nohost"):
        with pytest.raises(ValueError):
            loadtest.require_loopback(url)
    with pytest.raises(SystemExit):
        loadtest.main(["--url", "http://10.1.2.3:8765", "--no-check", "--seconds", "0.1"])


def _fake_server(reject_every: int = 0):
    """An in-memory server: each patient's own prediction, every `reject_every`-th request a 503."""
    calls = {"n": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if reject_every and calls["n"] % reject_every == 0:
            return httpx.Response(503, headers={"Retry-After": "2"}, json={"detail": "busy"})
        body = request.content.decode("latin-1")
        pid = "p1" if 'name="patient_id"\r\n\r\np1' in body else "p0"
        return httpx.Response(
            200, json={"patient_id": pid, "risks": [{"task": "a", "risk": 0.1 if pid == "p0" else 0.9}]}
        )

    return httpx.MockTransport(handler), calls


def test_closed_loop_is_bounded_and_checks_answers():
    payloads = [
        Payload("p0", {"patient_id": "p0", "structured": "{}"}),
        Payload("p1", {"patient_id": "p1", "structured": "{}"}, {"cxr": ("cxr.png", b"\x89PNG", "image/png")}),
    ]
    transport, calls = _fake_server(reject_every=4)
    outcomes, elapsed = asyncio.run(
        loadtest.closed_loop(
            "http://127.0.0.1:9/predict",
            payloads,
            concurrency=3,
            seconds=30,
            max_requests=20,
            sample_every=1,
            transport=transport,
        )
    )
    assert len(outcomes) == 20 == calls["n"]  # the count bound stops it long before 30 s
    summary = summarize(outcomes, elapsed)
    assert summary["status"] == {"200": 15, "503": 5}
    assert summary["rejected_503_with_retry_after"] == 5
    assert check_answers(outcomes, {0: {"a": 0.1}, 1: {"a": 0.9}})["wrong"] == 0
    assert check_answers(outcomes, {0: {"a": 0.9}, 1: {"a": 0.9}})["wrong"] > 0  # p0's answers are now wrong


def test_open_loop_sends_on_schedule():
    payloads = [Payload("p0", {"patient_id": "p0"})]
    transport, calls = _fake_server()
    outcomes, elapsed, not_sent = asyncio.run(
        loadtest.open_loop("http://127.0.0.1:9/predict", payloads, rate=200.0, seconds=0.1, transport=transport)
    )
    assert len(outcomes) == 20 and not_sent == 0 and calls["n"] == 20
    assert elapsed >= 0.09  # 20 requests 5 ms apart


def test_explain_traffic_visits_every_patient_task_pair_once():
    seen = []

    async def handler(request: httpx.Request) -> httpx.Response:
        body = request.content.decode("latin-1")
        pid = body.split('name="patient_id"\r\n\r\n')[1].split("\r\n")[0]
        task = body.split('name="task"\r\n\r\n')[1].split("\r\n")[0]
        seen.append((pid, task))
        return httpx.Response(200, json={"prediction": {"risks": [{"task": "a", "risk": 0.5}]}})

    payloads = [Payload("p0", {"patient_id": "p0"}), Payload("p1", {"patient_id": "p1"})]
    outcomes, _ = asyncio.run(
        loadtest.closed_loop(
            "http://127.0.0.1:9/explain",
            payloads,
            1,
            30,
            "explain",
            ["a", "b"],
            max_requests=4,
            sample_every=1,
            transport=httpx.MockTransport(handler),
        )
    )
    assert seen == [("p0", "a"), ("p1", "a"), ("p0", "b"), ("p1", "b")]
    report = check_answers(outcomes, {0: {"a": 0.5}, 1: {"a": 0.5}})  # an explanation's `prediction` is checked
    assert (report["checked"], report["wrong"]) == (4, 0)
