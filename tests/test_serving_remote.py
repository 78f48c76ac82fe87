"""The app's remote mode: RemoteService (mmnar_app.remote) against a model server started here with uvicorn
gives the very numbers of the in-process LocalService (risks, what-if, Shapley, attributions), names the
URL and the server's message when something is wrong, and drives the Streamlit patient page."""

from __future__ import annotations

import re

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from mmnar_app.demo_patients import load_demo_patients
from mmnar_app.display import percent
from mmnar_app.remote import RemoteService, RemoteServiceError
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.serving import ServeConfig, create_app
from mmnar_lab.serving.testing import ServerThread, cached_predictor

from support.paths import ROOT

BUNDLE = DEMO_BUNDLE


@pytest.fixture(scope="module")
def predictor():
    return cached_predictor(BUNDLE)


@pytest.fixture(scope="module")
def server(predictor):
    with ServerThread(create_app(predictor, ServeConfig())) as running:
        yield running


@pytest.fixture(scope="module")
def demos():
    return {d.label[:7]: d for d in load_demo_patients()}


def without_timings(explanation) -> dict:
    return {k: v for k, v in explanation.to_dict().items() if k != "timings"}


@pytest.mark.slow
def test_remote_and_in_process_explanations_are_identical(server, demos):
    from mmnar_app.service import LocalService

    local = LocalService(BUNDLE)  # its own model, loaded in this process as the app does
    remote = RemoteService(server.url)
    assert remote.info == local.info
    for label, task in (("Demo 06", "icu_90d"), ("Demo 07", "death_180d")):  # X-ray; radiology report
        record = demos[label].record()
        steps = []
        mine, theirs = local.analyse(record, task), remote.analyse(record, task, progress=steps.append)
        assert steps == ["encode"]
        assert without_timings(theirs) == without_timings(mine)  # every number, bit for bit
        assert (
            theirs.prediction.risks
            and theirs.what_if is not None
            and theirs.what_if.shapley
            and (theirs.images or theirs.texts)
        )
        assert theirs.tabular[0].features == mine.tabular[0].features
        requests = remote.stats()["requests"]
        assert remote.analyse(record, task) is theirs and remote.stats()["requests"] == requests  # cached here
    record = demos["Demo 06"].record()
    prediction = remote.predict(record)
    assert {k: v for k, v in prediction.items() if k not in ("input_hash", "input_notes")} == local.predictor.predict(
        record
    ).to_dict()
    what_if = remote.what_if(record)
    assert what_if["shapley"] == local.predictor.what_if(record).to_dict()["shapley"]
    remote.close()


@pytest.mark.slow
def test_remote_two_passes_equal_one_complete_explanation(server, demos):
    """The page's fast first answer (everything but the notes) and its completion come from the server too;
    together they equal one complete in-process explanation, number for number."""
    from mmnar_app.service import LocalService

    local, remote = LocalService(BUNDLE), RemoteService(server.url)
    record, task = demos["Demo 01"].record(), "icu_90d"  # all four modalities
    partial = remote.analyse(record, task, modalities=["structured", "cxr"])
    assert [t.modality for t in partial.texts] == [] and partial.pending() == ["discharge_note", "radiology_report"]
    steps = []
    complete = remote.complete(partial, record, task, steps.append)
    assert steps == ["discharge_note"] and complete.pending() == []
    assert complete.cache_key == remote.cache_key(record, task) == local.cache_key(record, task)
    assert without_timings(complete) == without_timings(local.analyse(record, task))
    requests = remote.stats()["requests"]
    assert remote.analyse(record, task, modalities=["structured"]) is complete  # the complete one is served
    assert remote.stats()["requests"] == requests
    remote.close()


def test_remote_errors_name_the_url_and_the_server_message(server, demos):
    with pytest.raises(RemoteServiceError) as unreachable:
        RemoteService("http://127.0.0.1:9")
    assert "cannot reach the model server at http://127.0.0.1:9" in str(unreachable.value)
    assert unreachable.value.status is None
    with pytest.raises(RemoteServiceError, match="is not an http"):
        RemoteService("localhost:8765")

    remote = RemoteService(server.url)
    record = demos["Demo 06"].record()
    record.images = {"cxr": b"%PDF-1.4 not an x-ray"}
    with pytest.raises(RemoteServiceError) as refused:
        remote.analyse(record, "icu_90d")
    message = str(refused.value)
    assert refused.value.status == 415 and server.url in message and "POST" in message
    assert "this is not a PNG, JPEG or DICOM image" in message and "PDF document" in message
    assert refused.value.errors[0]["field"] == "cxr.bin"

    with pytest.raises(RemoteServiceError) as unknown:
        remote.analyse(demos["Demo 06"].record(), "mortality")
    assert unknown.value.status == 422 and "one of: readmission_30d, icu_90d, death_180d" in str(unknown.value)

    def failing_loader():
        raise RuntimeError("no weights here")

    with ServerThread(create_app(failing_loader)) as broken:
        assert httpx.get(broken.url + "/health").status_code == 200
        ready = httpx.get(broken.url + "/ready")
        for _ in range(100):
            if ready.json()["error"]:
                break
            ready = httpx.get(broken.url + "/ready")
        assert ready.status_code == 503 and "no weights here" in ready.json()["error"]
        with pytest.raises(RemoteServiceError) as not_loaded:
            RemoteService(broken.url, retries=0)
        assert not_loaded.value.status == 503 and "could not be loaded" in str(not_loaded.value)


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MMNAR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MMNAR_USER", "dr-remote")
    monkeypatch.delenv("MMNAR_DATABASE_URL", raising=False)
    return monkeypatch


@pytest.mark.slow
def test_streamlit_patient_page_in_remote_mode(server, predictor, demos, app_env):
    app_env.setenv("MMNAR_INFERENCE_URL", server.url)
    before = httpx.get(server.url + "/stats").json()["by_kind"].get("explain", 0)
    app = AppTest.from_file(str(ROOT / "app" / "pages" / "1_Patient.py"), default_timeout=120)
    app.run()
    assert not app.exception, app.exception
    box = app.selectbox(key="patient_choice")
    box.set_value(next(o for o in box.options if o.startswith("Demo 03"))).run()  # structured + X-ray + summary
    app.button(key="analyse").click().run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    shown = {m.label: m.value for m in app.metric}
    expected = predictor.predict(demos["Demo 03"].record()).to_dict()["risks"]
    assert list(shown.values()) == [percent(r["risk"]) for r in expected]
    assert app.image  # the X-ray with its heatmap, from the server's attributions
    # two passes, both on the server: risks, what-if and the X-ray first, then the note's words (then a rerun)
    assert any("Discharge summary: the phrases that moved the risk most" in m.value for m in app.markdown)
    assert not any("being computed" in i.value for i in app.info)
    assert httpx.get(server.url + "/stats").json()["by_kind"].get("explain", 0) == before + 2  # computed by the server

    app_env.setenv("MMNAR_INFERENCE_URL", "http://127.0.0.1:9")
    down = AppTest.from_file(str(ROOT / "app" / "pages" / "1_Patient.py"), default_timeout=60)
    down.run()
    assert not down.exception, down.exception
    message = re.sub(r"\\(.)", r"\1", down.error[0].value)  # escaped so that it shows as plain text
    assert "model server is not available" in message and "http://127.0.0.1:9" in message
