"""The app's process (`streamlit run app/Home.py`) exits with status 0 on SIGTERM, idle and while a session
has the model loading and warming up (issue 18, case 13: a daemon thread inside torch at interpreter exit
aborted with status 134, "terminate called without an active exception")."""

from __future__ import annotations

import signal
import time

import pytest

from mmnar_app.browser_harness import chromium_page, streamlit_server


def terminate(process, timeout: float = 60) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout)


@pytest.mark.slow
def test_the_app_exits_0_on_sigterm_when_idle(tmp_path):
    log = tmp_path / "streamlit.log"
    with streamlit_server(tmp_path / "data", log) as (_, process, _):
        code = terminate(process)
    assert code == 0, log.read_text()[-2000:]


@pytest.mark.slow
def test_the_app_exits_0_on_sigterm_while_the_model_loads(tmp_path):
    log = tmp_path / "streamlit.log"
    with streamlit_server(tmp_path / "data", log) as (url, process, _):
        page_context = chromium_page()  # no Chromium fails the test, as every browser test does
        page = page_context.__enter__()
        try:
            page.goto(url)  # the session runs Home.py, which starts loading and warming up the model
            page.wait_for_selector("[data-testid='stStatusWidget']", timeout=60_000)  # the script is running
            time.sleep(1.0)  # inside the model load or the warm-up
            code = terminate(process)
        finally:
            page_context.__exit__(None, None, None)
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert "terminate called" not in text
