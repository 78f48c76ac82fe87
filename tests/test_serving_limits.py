"""Work limits, admission and connection limits of the model server (issue 18, cases 2, 3, 11, 12), on a
stand-in predictor (tests/serving_stub.py) whose explanation is many small slices of work, as the real
attribution passes are: a request whose client gives up or whose deadline passes stops within a second;
the queue counts work; a request is refused before its body is read; slow headers and bodies are cut
off; a token in the query string is refused and never logged."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import httpx
import pytest

from mmnar_core.cancel import Cancelled, CancelToken, cancel_scope, check_cancelled
from mmnar_core.schema import PatientRecord
from mmnar_core.serving import ServeConfig
from mmnar_core.serving.batching import Batcher, Job, Overloaded
from mmnar_core.serving.work import job_cost
from mmnar_lab.serving.testing import stand_in_servers


def form(structured: dict | None = None, note: str | None = None) -> list:
    parts = [("structured", (None, json.dumps(structured or {"age": 70}).encode()))]
    if note is not None:
        parts.append(("discharge_note", (None, note.encode())))
    return parts


def raw_request(port: int, head: bytes, body: bytes = b"", read_timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as conn:
        conn.sendall(head + body)
        chunks = []
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


# ------------------------------------------------------------------------------------------------ the token
def test_cancel_token_flag_deadline_and_scope():
    token = CancelToken(deadline_s=0.2)
    with cancel_scope(token):
        check_cancelled()
        time.sleep(0.25)
        with pytest.raises(Cancelled, match="time budget of 0.2 s"):
            check_cancelled()
    check_cancelled()  # no scope: free
    token = CancelToken()
    token.cancel("the client went away")
    with pytest.raises(Cancelled, match="client went away"):
        token.check()


# ------------------------------------------------------------------------------------------------ work-counted queue
def test_queue_counts_work_not_requests():
    gate = threading.Event()

    def handler(jobs):
        gate.wait(5)
        for job in jobs:
            job.future.set_result(job.payload)

    batcher = Batcher(handler, max_batch=1, max_wait_s=0.0, max_queue=100, max_work=100)
    batcher.start()
    try:
        batcher.submit(Job("predict", "running", cost=1))
        time.sleep(0.2)  # the worker holds it at the gate
        batcher.submit(Job("explain", "big", cost=90))
        with pytest.raises(Overloaded) as refused:  # 2 requests waiting, but 90 + 20 units > 100
            batcher.submit(Job("explain", "another", cost=20))
        assert refused.value.work == 90
        batcher.submit(Job("predict", "small", cost=5))  # small work still fits
        assert batcher.stats()["queue_work"] == 95
    finally:
        gate.set()
        batcher.stop()


def test_job_cost_counts_images_note_windows_and_attribution_passes():
    record = PatientRecord("p", {"age": 70}, {"cxr": b"png"}, {"discharge_note": "x" * 199_000})
    assert job_cost("predict", record) == 1 + 1 + 199
    explain = job_cost("explain", record)
    assert explain == 1 + 1 + 199 + 20 + 32 * 1 + 16 * 20  # the note attributed on its first 20,000 characters
    assert job_cost("explain", PatientRecord("p", {"age": 70})) == 1 + 20  # structured attributions, what-if


def test_a_cancelled_or_overdue_job_stops_in_the_worker():
    progress = []

    def handler(jobs):
        for job in jobs:
            try:
                with cancel_scope(job.cancel):
                    for step in range(10_000):
                        check_cancelled()
                        progress.append(step)
                        time.sleep(0.005)
            except Cancelled as stop:
                job.future.set_exception(stop)

    batcher = Batcher(handler, max_batch=1, max_wait_s=0.0)
    batcher.start()
    try:
        job = Job("explain", None, cancel=CancelToken(deadline_s=0.3))
        started = time.monotonic()
        with pytest.raises(Cancelled, match="time budget"):
            batcher.submit(job).result(timeout=5)
        assert time.monotonic() - started < 1.0 and len(progress) < 200
        assert batcher.stats()["cancelled"] == 1
    finally:
        batcher.stop()


# ------------------------------------------------------------------------------------------------ the server
@pytest.fixture
def server():
    with stand_in_servers() as start:
        yield start


def test_an_overdue_explanation_is_stopped_within_a_second(server):
    # the stand-in's work under-estimated on purpose (admission lets it in): the deadline is the backstop
    thread, predictor, state = server(ServeConfig(request_timeout_s=1.0, model_s_per_unit=0.001))
    started = time.monotonic()
    answer = httpx.post(thread.url + "/explain", files=form(), timeout=30)
    assert answer.status_code == 504, answer.text
    assert "its work was stopped" in answer.json()["errors"][0]["problem"]
    assert predictor.finished.wait(1.5), "the worker still runs the explanation after its deadline"
    assert time.monotonic() - started < 2.5
    assert predictor.progress[-1] < 200  # of 2,000 steps: it did not run to its end
    assert httpx.post(thread.url + "/predict", files=form(), timeout=5).status_code == 200  # the model is free


def test_a_client_that_goes_away_stops_its_explanation(server):
    thread, predictor, state = server(ServeConfig(request_timeout_s=60.0))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(thread.url + "/explain", files=form(), timeout=0.5)
    gone = time.monotonic()
    assert predictor.finished.wait(2.0), "the explanation ran on after its client closed the connection"
    assert time.monotonic() - gone < 2.0 and predictor.progress[-1] < 300
    assert state.batcher.stats()["cancelled"] == 1


@pytest.mark.slow
def test_a_long_note_fills_the_work_queue_and_gets_503(server):
    # admission by work estimates the stand-in at 1 ms a unit, so the queue's own work limit is what refuses
    config = ServeConfig(max_queue_work=600, request_timeout_s=30, max_inflight=32, model_s_per_unit=0.001)
    thread, predictor, state = server(config)
    note = "fever and cough " * 12_500  # 200,000 characters: 1 + 200 + 16 x 20 = 521 units
    client = httpx.Client(timeout=30)
    results = []
    first = threading.Thread(target=lambda: results.append(client.post(thread.url + "/explain", files=form(note=note))))
    first.start()
    deadline = time.monotonic() + 10
    while not predictor.progress and time.monotonic() < deadline:
        time.sleep(0.02)
    second = threading.Thread(
        target=lambda: results.append(client.post(thread.url + "/explain", files=form(note=note)))
    )
    second.start()
    time.sleep(0.5)  # queued: 521 units waiting
    third = client.post(thread.url + "/explain", files=form(note=note[:-6] + "again."))
    assert third.status_code == 503, third.text
    assert "units of work" in third.json()["errors"][0]["problem"] and "Retry-After" in third.headers
    assert client.post(thread.url + "/predict", files=form()).status_code in (200, 503)
    state.stop()  # answer the waiting ones
    first.join(10)
    second.join(10)


def test_admission_refuses_before_the_body_is_read(server):
    thread, predictor, state = server(ServeConfig(max_inflight=1, request_timeout_s=30))
    held = socket.create_connection(("127.0.0.1", thread.port))  # admitted, sends its body slowly
    held.sendall(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 1000\r\n\r\n--b"
    )
    time.sleep(0.3)
    started = time.monotonic()
    answer = raw_request(
        thread.port,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nContent-Length: 40000000\r\n\r\n",
    )  # headers only: no body is sent
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    assert b"the body was not read" in answer and b"retry-after" in answer.lower()
    assert time.monotonic() - started < 1.0
    assert state.admission.stats()["refused_before_reading"] == 1
    held.close()


def test_a_body_sent_too_slowly_gets_408(server):
    thread, predictor, state = server(ServeConfig(body_timeout_s=0.5))
    started = time.monotonic()
    answer = raw_request(
        thread.port,
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nContent-Length: 1000\r\n\r\n",
        b"--b",
    )
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within 0.5 s" in answer
    assert time.monotonic() - started < 2.0


def test_idle_and_half_sent_connections_are_closed(server):
    thread, predictor, state = server(ServeConfig(header_timeout_s=0.5, keep_alive_s=0.5))
    idle = socket.create_connection(("127.0.0.1", thread.port))
    half = socket.create_connection(("127.0.0.1", thread.port))
    half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    kept = socket.create_connection(("127.0.0.1", thread.port))
    kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    for conn in (idle, half, kept):
        conn.settimeout(3)
    started = time.monotonic()
    assert idle.recv(100) == b""  # closed by the server
    assert half.recv(100) == b""
    assert kept.recv(4096).startswith(b"HTTP/1.1 200")
    assert kept.recv(100) == b""  # keep-alive ended
    assert time.monotonic() - started < 2.0
    for conn in (idle, half, kept):
        conn.close()


def test_connection_cap_answers_503(server):
    thread, predictor, state = server(ServeConfig(max_connections=3, header_timeout_s=5))
    held = [socket.create_connection(("127.0.0.1", thread.port)) for _ in range(3)]
    time.sleep(0.2)
    answer = raw_request(thread.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 503"), answer[:100]
    for conn in held:
        conn.close()


def test_a_token_in_the_query_string_is_refused_and_never_logged(server, caplog):
    from mmnar_core.serving.transport import HideQueryStrings

    thread, predictor, state = server(ServeConfig())
    secret = "s3cr3t-token-value"
    for path in ("/predict", "/health", "/info"):
        answer = (
            httpx.post(thread.url + path + f"?access_token={secret}", files=form(), timeout=5)
            if path == "/predict"
            else httpx.get(thread.url + path + f"?token={secret}", timeout=5)
        )
        assert answer.status_code == 400, (path, answer.text)
        assert secret not in answer.text and "Authorization header" in answer.text
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        "",
        0,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", f"/info?token={secret}", "1.1", 400),
        None,
    )
    HideQueryStrings().filter(record)
    assert secret not in record.getMessage() and "/info?<hidden>" in record.getMessage()
    assert httpx.get(thread.url + "/health?verbose=1", timeout=5).status_code == 200  # other parameters pass
