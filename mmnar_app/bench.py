"""App benchmark in a real browser (Debian's Chromium via Playwright) against `streamlit run`:
cold start to the first rendered page, and the time from clicking Analyse to every chart of the patient
page rendered for demo patients (first time: computed; again: served from the explanation cache, timed to
the page's last DOM change), plus the server's memory. `python -m mmnar_app.bench [--patients N]`; registered as bench "app"."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from mmnar_app.browser_harness import RESULTS_TEXT, chromium_page, streamlit_server, wait_results_complete

_WATCH_DOM = """() => {
    if (!window.__mmnarObserver) {
        window.__mmnarObserver = new MutationObserver(() => { window.__mmnarLastMutation = performance.now(); });
        window.__mmnarObserver.observe(document.body, {subtree: true, childList: true, attributes: true,
                                                       characterData: true});
    }
    window.__mmnarLastMutation = performance.now();
    return performance.now();
}"""


def _settled_after(page, start_ms: float, quiet_ms: float = 500, limit_s: float = 15) -> float | None:
    """Seconds from `start_ms` (page clock) to the last change of the page, once nothing has changed for
    `quiet_ms`; None if the page never goes quiet within `limit_s`. Measures a cached re-analysis, whose
    run can be over before Streamlit shows its running indicator (waiting for that indicator cost a
    fixed 2 s timeout in the earlier figure)."""
    deadline = time.perf_counter() + limit_s
    while time.perf_counter() < deadline:
        now, last = page.evaluate("() => [performance.now(), window.__mmnarLastMutation]")
        if now - last >= quiet_ms:
            return (last - start_ms) / 1000
        time.sleep(0.05)
    return None


def _charts_rendered(page, expected_images: int, expected_notes: int, clicked: float) -> tuple[float, float]:
    """Seconds from the click to the first screen of results (risks, what-if, Shapley: the notes' words may
    still be computing) and to every chart rendered, notes highlighted and the page idle."""
    try:  # the run starts: Streamlit shows its running indicator (a cached run may be over before we look)
        page.locator("[data-testid='stStatusWidget']").wait_for(state="visible", timeout=2_000)
    except Exception:
        pass
    page.get_by_text(RESULTS_TEXT).first.wait_for(state="visible", timeout=600_000)
    first = time.perf_counter() - clicked
    wait_results_complete(page, expected_images, expected_notes)
    return first, time.perf_counter() - clicked


def _choose(page, label: str) -> None:
    page.locator("[data-testid='stSelectbox'] input").first.click()
    page.keyboard.type(label)
    page.keyboard.press("Enter")
    page.get_by_text("Available now").first.wait_for(state="visible", timeout=60_000)
    time.sleep(0.5)  # let the rerun that loads the patient finish


def bench_app(patients: int = 5) -> dict:
    import psutil

    from mmnar_app.demo_patients import load_demo_patients

    demos = load_demo_patients()[:patients]
    figures: dict = {"patients": len(demos)}
    with tempfile.TemporaryDirectory(prefix="mmnar-bench-app-") as scratch:
        scratch = Path(scratch)
        with streamlit_server(scratch / "data", scratch / "streamlit.log") as (url, process, started):
            figures["server_healthy_s"] = round(time.perf_counter() - started, 2)
            with chromium_page() as page:
                page.goto(url)
                page.get_by_text("Start here").first.wait_for(state="visible", timeout=120_000)
                figures["cold_start_to_first_page_s"] = round(time.perf_counter() - started, 2)
                page.goto(f"{url}/Patient")
                page.get_by_text("Available now").first.wait_for(state="visible", timeout=120_000)
                screen, first, again = [], [], []
                for demo in demos:
                    _choose(page, demo.label)
                    for times in (first, again):
                        page_clock = page.evaluate(_WATCH_DOM)
                        clicked = time.perf_counter()
                        page.get_by_role("button", name="Analyse").click()
                        shown, done = _charts_rendered(page, 1 if demo.images else 0, len(demo.texts), clicked)
                        if times is first:
                            screen.append(shown)
                            times.append(done)
                        else:
                            settled = _settled_after(page, page_clock)
                            times.append(done if settled is None else settled)
                figures["modalities_per_patient"] = [1 + len(d.images) + len(d.texts) for d in demos]
                figures["analyse_to_first_results_s"] = [round(t, 2) for t in screen]
                figures["analyse_to_first_results_p50_s"] = round(float(np.percentile(screen, 50)), 2)
                figures["analyse_to_all_charts_s"] = [round(t, 2) for t in first]
                figures["analyse_to_all_charts_p50_s"] = round(float(np.percentile(first, 50)), 2)
                figures["analyse_to_all_charts_max_s"] = round(max(first), 2)
                figures["cached_reanalyse_p50_s"] = round(float(np.percentile(again, 50)), 2)
            server = psutil.Process(process.pid)
            figures["server_rss_mb"] = round(sum(p.memory_info().rss for p in [server, *server.children(True)]) / 2**20)
    return figures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=5)
    print(json.dumps(bench_app(parser.parse_args().patients), indent=2))
