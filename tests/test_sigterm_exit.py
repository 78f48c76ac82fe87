"""SIGTERM is a normal stop (issue 18, case 13): the model server and `python -m mmnar_core` commands exit
with status 0, also while the model is still loading (was -15: uvicorn re-raises the signal after its
graceful shutdown, and a command had no handler at all)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from support.paths import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], tmp_path) -> subprocess.Popen:
    return subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        },
    )


def wait_health(port: int, process: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError("the server did not answer /health")


def terminate(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


@pytest.mark.slow
def test_server_exits_0_on_sigterm_while_the_model_loads(tmp_path):
    port = free_port()
    script = tmp_path / "serve_slow.py"
    script.write_text(
        textwrap.dedent(f"""
        import time
        from mmnar_core.serving import ServeConfig, create_app
        from mmnar_core.serving.server import serve_app

        def slow_load():
            time.sleep(3)
            raise RuntimeError("no model in this test")

        config = ServeConfig(port={port}, log_level="warning")
        serve_app(create_app(slow_load, config), config)
    """)
    )
    process = start([sys.executable, str(script)], tmp_path)
    assert wait_health(port, process)["loading"] is True
    code, err = terminate(process)
    assert code == 0, err[-2000:]


def test_serve_command_exits_0_on_sigterm(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{}")  # loads and fails in the background; the server stays up
    port = free_port()
    process = start(
        [sys.executable, "-m", "mmnar_core", "serve", str(bundle), "--port", str(port), "--log-level", "warning"],
        tmp_path,
    )
    wait_health(port, process)
    code, err = terminate(process)
    assert code == 0, err[-2000:]


@pytest.mark.slow
def test_a_command_exits_0_on_sigterm_while_it_works(tmp_path):
    process = start(
        [
            sys.executable,
            "-m",
            "mmnar_core",
            "synth",
            "--n",
            "200000",
            "--seed",
            "1",
            "--out",
            str(tmp_path / "data"),
            "--quiet",
        ],
        tmp_path,
    )
    time.sleep(4)  # importing torch, then simulating
    assert process.poll() is None, "the command ended before the signal; give it more work"
    code, err = terminate(process)
    assert code == 0, err[-2000:]
    assert "SIGTERM" in err
