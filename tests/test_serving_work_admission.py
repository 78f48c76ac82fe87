"""Admission by work (issue 18, cases 2 and 3): the work a request brings is read from its headers
(megapixels from the image header, note length) before anything is decoded, and a request that cannot be
answered before its deadline is answered at once: 503 + Retry-After when the work ahead of it is the
reason, 413 when its own work alone is too much for the timeout. On the stand-in predictor (the real
request parsing and image decoding)."""

from __future__ import annotations

import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from mmnar_core.schema import PatientRecord
from mmnar_core.serving import ServeConfig
from mmnar_core.serving.batching import Job
from mmnar_core.serving.image_probe import declared_pixels
from mmnar_core.serving.parsing import ParsedRequest, Part, Schema
from mmnar_core.serving.work import RequestWork, request_work, work_units
from mmnar_core.serving.work_budget import HEADROOM, WorkBudget
from mmnar_lab.dicom import deflated_zero_dicom, dicom_bytes
from mmnar_lab.serving.stand_in import StubPredictor
from mmnar_lab.serving.testing import stand_in_servers


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width), np.uint8), mode="L").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def form(note: str | None = None, image: bytes | None = None) -> list:
    parts = [("structured", (None, json.dumps({"age": 70}).encode()))]
    if note is not None:
        parts.append(("discharge_note", (None, note.encode())))
    if image is not None:
        parts.append(("cxr", ("x.png", image, "image/png")))
    return parts


# ------------------------------------------------------------------------------------------------ the header probe
def test_pixels_are_read_from_headers_without_decoding(monkeypatch):
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("the probe decoded pixels")

    large = png(10_000, 8_000)  # 80 MB decoded, a few kB on the wire
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert declared_pixels(large, 10**8) == 80_000_000
    jpeg = io.BytesIO()
    monkeypatch.undo()
    Image.fromarray(np.zeros((30, 50, 3), np.uint8)).save(jpeg, format="JPEG")
    assert declared_pixels(jpeg.getvalue(), 10**6) == 1_500
    assert declared_pixels(dicom_bytes(np.zeros((20, 30), np.uint16)), 10**6) == 600
    assert declared_pixels(dicom_bytes(np.zeros((3, 20, 30), np.uint16)), 10**6) == 600  # the first frame is decoded


def test_unknown_or_refused_headers_count_nothing():
    assert declared_pixels(deflated_zero_dicom(100, 100, frames=2), 10**9) is None  # would need inflating
    assert declared_pixels(png(200, 200), 1_000) is None  # over max_pixels: refused from the header anyway
    assert declared_pixels(b"not an image at all", 10**6) is None
    assert declared_pixels(png(200, 200)[:20], 10**6) is None  # a header cut short


# ------------------------------------------------------------------------------------------------ the work count
def test_request_work_counts_header_pixels_note_windows_and_what_is_attributed():
    schema = Schema.of(StubPredictor())
    image = png(4000, 2500)  # a few kB that decode to 10 megapixels
    note = ("fever and cough " * 1_300).encode()  # 20,800 characters: 21 windows, 20 attributed
    parts = [Part("structured", b'{"age": 70}'), Part("cxr", image, "x.png"), Part("discharge_note", note)]
    predict = request_work("predict", parts, schema, 40_000_000, 200_000)
    assert predict == RequestWork(10.0, 1 + 1 + 21)
    explain = request_work("explain", parts, schema, 40_000_000, 200_000)
    assert explain.units == predict.units + 20 + 32 + 16 * 20
    without_note = request_work("explain", [*parts, Part("modalities", b"structured,cxr")], schema, 40_000_000, 200_000)
    assert without_note.units == predict.units + 20 + 32  # the note is read, not attributed
    assert work_units("predict", [], []) == 1.0


# ------------------------------------------------------------------------------------------------ the budget
def job(cost: float, image: bytes | None = None) -> Job:
    record = PatientRecord("p", {"age": 70}, {"cxr": image} if image else {})
    return Job("predict", ParsedRequest(record, None), cost=cost)


def test_the_budget_admits_what_fits_and_answers_the_rest_at_once():
    budget = WorkBudget(decode_slots=2, s_per_mpixel=0.05, s_per_unit=0.1)
    big = RequestWork(decode_mpixels=16, units=2)  # 0.8 s decoding + 0.8 s the model's pass over the pixels + 0.2 s
    assert budget.admit(big, 3.0).admitted  # 1.8 s <= 0.8 x 3 s
    second = budget.admit(big, 3.0)  # ahead: 0.4 s decoding (two slots) + 0.8 + 0.2 s in the model; its own 1.8 s
    assert second.status == 503 and second.retry_after == 2 and second.estimate_s == pytest.approx(3.2)
    assert budget.admit(RequestWork(0, 1), 3.0).admitted  # a small request still fits behind it
    alone = WorkBudget(2, 0.1, 0.1).admit(RequestWork(0, 541), 2.0)  # an explanation of a 199,000-character note
    assert alone.status == 413 and alone.retry_after == 0
    assert WorkBudget(2, 0.1, 0.1).admit(RequestWork(0, 10), 1.0 / HEADROOM).admitted  # exactly fits, alone
    budget.decoded(big, 1.6)  # measured 0.1 s per megapixel: later estimates use it
    budget.done(big)
    budget.done(RequestWork(0, 1))
    stats = budget.stats()
    assert stats["decode_s_per_mpixel"] == pytest.approx(0.1)
    assert stats["work_backlog_units"] == stats["work_backlog_mpixels"] == stats["work_model_mpixels"] == 0
    budget.observe_model(2.0, [job(4.0)])
    assert budget.stats()["model_s_per_unit"] == pytest.approx(0.5)  # the first measurement replaces the prior
    budget.observe_model(1.0, [job(4.0), job(6.0)])
    assert budget.stats()["model_s_per_unit"] == pytest.approx(0.7 * 0.5 + 0.3 * 0.1)
    budget.observe_model(100.0, [job(1.0, image=b"png")])  # with an image: the pixels' time is not a unit's
    assert budget.stats()["model_s_per_unit"] == pytest.approx(0.7 * 0.5 + 0.3 * 0.1)


def test_a_slow_spell_cannot_lock_requests_out():
    """A stalled batch measured 10 s a unit: later requests that fit at the prior's rate are still served
    when nothing is ahead (a 413 'too much work' would stop every measurement that could correct it), and
    refused with 503, not 413, when something is."""
    budget = WorkBudget(decode_slots=2, s_per_mpixel=0.05, s_per_unit=0.1)
    budget.observe_model(10.0, [job(1.0)])
    assert budget.admit(RequestWork(0, 5), 2.0).admitted  # 50 s at the measured rate, 0.5 s at the prior
    assert budget.admit(RequestWork(0, 5), 2.0).status == 503
    assert budget.admit(RequestWork(0, 50), 2.0).status == 413  # 5 s even at the prior


# ------------------------------------------------------------------------------------------------ the server
@pytest.fixture
def server():
    with stand_in_servers() as start:
        yield start


def test_an_image_flood_is_refused_by_its_pixels_before_decoding(server):
    """12 requests at once, each a 15 kB PNG declaring 16 megapixels (about 1 s to decode here, and as
    long again for the model's pass over them), a 6 s timeout: the first fits; those that arrive while it
    is served are answered 503 at once with Retry-After, nothing decoded for them. Counting requests (the
    old admission) let all 12 in to wait for the two decoding slots, and those at the end of the line got
    504 at their deadline."""
    config = ServeConfig(request_timeout_s=6.0, decode_s_per_mpixel=0.1, model_s_per_unit=0.2)
    thread, _, state = server(config)
    image = png(4000, 4000)

    def send(_):
        answer = httpx.post(thread.url + "/predict", files=form(image=image), timeout=30)
        return answer.status_code, answer.headers.get("retry-after"), answer.text

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(send, range(12)))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 1 and statuses.count(503) >= 6, statuses
    for status, retry, text in answers:
        if status == 503:
            assert retry and int(retry) >= 1 and "nothing was decoded" in text
    stats = httpx.get(thread.url + "/stats", timeout=5).json()
    assert stats["refused_busy_by_work"] == statuses.count(503)
    assert stats["work_backlog_units"] == 0 and stats["work_backlog_mpixels"] == 0
    # the same 12 requests without images bring little work: all are served
    with ThreadPoolExecutor(12) as pool:
        small = list(
            pool.map(lambda _: httpx.post(thread.url + "/predict", files=form(), timeout=30).status_code, range(12))
        )
    assert small == [200] * 12


def test_an_explanation_too_long_for_the_timeout_is_refused_at_once(server):
    """A 199,000-character note on a server with a 2 s timeout: 413 at once, the model never started (the
    request would otherwise run to its deadline and get a 504); the same request without the note's
    attributions fits and is served."""
    thread, predictor, state = server(
        ServeConfig(request_timeout_s=2.0, model_s_per_unit=0.01), StubPredictor(steps=10, step_s=0.01)
    )
    note = ("fever, cough and shortness of breath. " * 6000)[:199_000]
    started = time.monotonic()
    answer = httpx.post(thread.url + "/explain", files=form(note=note), timeout=30)
    assert answer.status_code == 413, answer.text
    # before the 2 s deadline a 504 would wait for (load on a shared machine can slow the answer, not delay it 2 s)
    assert time.monotonic() - started < 2.0 and predictor.progress == []
    problem = answer.json()["errors"][0]
    assert "request timeout of 2 s" in problem["problem"] and "modalities" in problem["accepted"]
    assert httpx.get(thread.url + "/stats", timeout=5).json()["refused_too_much_work"] == 1
    shorter = httpx.post(thread.url + "/explain", files=form(note=note[:20_000]), timeout=30)
    assert shorter.status_code == 413  # 20 attributed windows x 16 steps: still too much for 2 s at 10 ms a unit
    without = httpx.post(
        thread.url + "/explain", files=[*form(note=note[:5_000]), ("modalities", (None, b"structured"))], timeout=30
    )
    assert without.status_code == 200, without.text
