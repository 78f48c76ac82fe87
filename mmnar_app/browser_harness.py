"""Start the app with `streamlit run` on 127.0.0.1 and drive Debian's Chromium with Playwright: shared by
the real-browser test and the app benchmark (never downloads a browser: `executable_path` is the system
Chromium)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# waits poll the page every 100 ms, not on every animation frame (Playwright's default): the whole-page checks
# of `wait_results_complete` on every frame took the browser's CPU from the app it measures, and the
# benchmark reads its times off the page's own clock (mmnar_app.bench), so polling less never makes them later
POLL_MS = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(
    url: str, timeout: float, process: subprocess.Popen | None = None, path: str = "/_stcore/health"
) -> float:
    """Seconds until GET url+path answers 200 (Streamlit's health check by default)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} not healthy after {timeout} s")


@contextmanager
def streamlit_server(
    data_dir: Path,
    log_path: Path,
    extra_env: dict | None = None,
    port: int | None = None,
    extra_args: list[str] | None = None,
):
    """`streamlit run app/Home.py` on a free port with its own data folder; yields (url, process, started_at).

    extra_args: more `streamlit run` options, e.g. ["--secrets.files", "/tmp/x/secrets.toml"]."""
    port = port or free_port()
    env = {**os.environ, "MMNAR_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app" / "Home.py"),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        *(extra_args or []),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, 90, process)
            yield url, process, started
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen, grace_s: float = 10) -> None:
    """Terminate, and kill if it has not exited after `grace_s`."""
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def chromium_page(viewport=(1400, 1000)):
    """A Playwright page in the system Chromium (headless)."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise RuntimeError("Chromium is not installed: apt-get install -y chromium (never `playwright install`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


def wait_for_text(page, text: str, timeout_s: float) -> None:
    page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout_s * 1000)


def wait_idle(page, timeout_s: float = 120) -> None:
    """Until Streamlit has finished the current script run (its 'running' indicator is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector(\"[data-testid='stStatusWidget']\")", timeout=timeout_s * 1000, polling=POLL_MS
    )


RESULTS_TEXT = "Is an absent modality worth obtaining"


def wait_results_complete(page, expected_images: int, expected_notes: int, timeout_s: float = 600) -> None:
    """Until the Patient page's second pass is over: every plotly chart, the X-ray heatmaps and the notes'
    phrases (or words) rendered, nothing 'being computed' and the script idle. Elements seen before this
    may be replaced by the second pass, so locate them again afterwards."""
    page.wait_for_function(
        "([images, notes]) => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 3"
        " && document.querySelectorAll(\"[data-testid='stImage'] img\").length >= images"
        " && [...document.querySelectorAll('p, strong')].filter(e => e.textContent.includes('moved the risk most')).length >= notes"
        " && ![...document.querySelectorAll('p')].some(e => e.textContent.includes('being computed'))"
        " && !document.querySelector(\"[data-testid='stStatusWidget']\")",
        arg=[expected_images, expected_notes],
        timeout=timeout_s * 1000,
        polling=POLL_MS,
    )
