"""`python -m mmnar_core serve`: the real command in a subprocess (health at once, ready once loaded, the
same numbers as the in-process predictor), and a clear exit for a path that is not a bundle."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from mmnar_app.demo_patients import load_demo_patients
from mmnar_core.cli import main
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_lab.serving.testing import cached_predictor

from support.paths import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_serve_command_end_to_end(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        "-m",
        "mmnar_core",
        "serve",
        str(DEMO_BUNDLE),
        "--port",
        str(port),
        "--threads",
        "1",
        "--max-batch",
        "4",
        "--max-wait-ms",
        "5",
        "--log-level",
        "warning",
    ]
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not become ready"
            try:
                ready = httpx.get(url + "/ready", timeout=5)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            assert httpx.get(url + "/health").status_code == 200
            if ready.status_code == 200:
                break
            assert ready.status_code == 503 and ready.headers["retry-after"]
            time.sleep(0.1)
        demo = next(d for d in load_demo_patients() if d.label.startswith("Demo 06"))
        answer = httpx.post(
            url + "/predict",
            data={"structured": json.dumps(demo.structured), "patient_id": demo.key},
            files=[("cxr", ("cxr.png", demo.images["cxr"], "image/png"))],
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        stats = httpx.get(url + "/stats").json()
        assert stats["max_batch"] == 4 and stats["requests"] == 1
    finally:
        process.terminate()
        process.wait(20)
        log.close()
    expected = cached_predictor(DEMO_BUNDLE).predict(demo.record()).to_dict()
    assert {k: v for k, v in answer.json().items() if k in expected} == expected


def test_serve_command_refuses_a_path_that_is_not_a_bundle(tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert "is not a model bundle (no bundle.json)" in capsys.readouterr().err
