"""Clean exit (issue 18, item 13): background threads (the app's warm-up, the model server's loader) are
stopped or joined before the interpreter ends, so a process exits with status 0, not 134 ("terminate
called without an active exception") from a daemon thread still inside torch."""

import subprocess
import sys
import textwrap

import pytest

from support.paths import ROOT


def run_python(code: str, tmp_path, timeout: int = 300) -> subprocess.CompletedProcess:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "MMNAR_DATA_DIR": str(tmp_path / "data"),
            "MMNAR_USER": "dr-test",
        },
    )


@pytest.mark.slow
def test_a_process_that_ran_the_home_page_exits_with_status_0(tmp_path):
    result = run_python(
        f"""
        from streamlit.testing.v1 import AppTest
        app = AppTest.from_file({str(ROOT / "app" / "Home.py")!r}, default_timeout=180)
        app.run()
        print("ran", len(app.exception))
    """,
        tmp_path,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert "ran 0" in result.stdout, result.stdout


def test_warm_up_is_stopped_between_steps_at_exit(tmp_path):
    result = run_python(
        """
        import threading, time, torch
        from mmnar_app.service import LocalService
        import mmnar_app.service as service_module

        class SlowPredictor:  # stands in for a model: many torch steps, each reported to progress
            config = type("C", (), {"tasks": ["a"]})
            def explain(self, record, tasks, settings, progress):
                for step in range(10_000):
                    progress(f"step {step}")
                    torch.randn(64, 64) @ torch.randn(64, 64)
                    time.sleep(0.001)
                    print("step", step, flush=True)

        service_module.warm_up_record = lambda predictor: None
        service = LocalService.__new__(LocalService)
        service.predictor, service._lock = SlowPredictor(), threading.Lock()
        service._warm_up_thread = service._warm_up_stop = None
        thread = service.start_warm_up()
        time.sleep(0.5)
        print("main ends; warm-up alive:", thread.is_alive(), flush=True)
    """,
        tmp_path,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    lines = result.stdout.splitlines()
    assert "main ends; warm-up alive: True" in lines
    assert lines[-1].startswith("step ") and int(lines[-1].split()[1]) < 9_999  # stopped, not run to its end


@pytest.mark.slow
def test_model_server_joins_its_loader_before_exit(tmp_path):
    result = run_python(
        """
        import time, torch
        from mmnar_core.serving.config import ServeConfig
        from mmnar_core.serving.server import ServeState

        def slow_factory():
            for _ in range(20):
                torch.randn(128, 128) @ torch.randn(128, 128)
                time.sleep(0.05)
            print("loader finished", flush=True)
            raise RuntimeError("no model in this test")

        ServeState(slow_factory, ServeConfig()).start()
        print("main ends", flush=True)
    """,
        tmp_path,
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])
    assert result.stdout.splitlines() == ["main ends", "loader finished"], result.stdout
