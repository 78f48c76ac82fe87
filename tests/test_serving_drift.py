"""The model server's availability-pattern counts (mmnar_core.serving.pattern_counter, GET /pattern-counts):
each patient served counts once by pattern (the same inputs again do not), nothing about the patient is
kept or returned, the endpoint needs a token of a role allowed to read it, the counts file survives a
restart and refuses another model's counts, and `drift --counts` reads what the server wrote."""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient

from mmnar_core.drift import DriftError, counts_document
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.serving import ServeConfig, create_app
from mmnar_core.serving.auth import TokenStore
from mmnar_core.serving.pattern_counter import PatternCounter
from mmnar_lab.serving.testing import cached_predictor

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

BUNDLE = DEMO_BUNDLE
NAMES = ["structured", "cxr", "discharge_note", "radiology_report"]


def patient(age: int, note: str | None = None) -> list:
    fields = [("structured", (None, json.dumps({"age": age, "sex": "female"}))), ("patient_id", (None, f"P-{age}"))]
    if note:
        fields.append(("discharge_note", (None, note)))
    return fields


@pytest.fixture(scope="module")
def predictor():
    return cached_predictor(BUNDLE)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    path = tmp_path_factory.mktemp("drift-auth") / "tokens.json"
    store = TokenStore.new(path)
    issued = {role: store.add(f"user-{role}", role)[0] for role in ("clinician", "reviewer", "admin")}
    store.save()
    return path, {role: {"Authorization": f"Bearer {token}"} for role, token in issued.items()}


def test_counts_per_pattern_need_auth_and_hold_no_patient_data(predictor, tokens, tmp_path):
    path, headers = tokens
    counts_file = tmp_path / "counts.json"
    config = ServeConfig(auth_token_file=str(path), pattern_counts_file=str(counts_file), pattern_counts_flush_s=0)
    with TestClient(create_app(predictor, config)) as client:
        assert client.get("/pattern-counts").status_code == 401
        assert client.get("/pattern-counts", headers=headers["clinician"]).status_code == 403
        empty = client.get("/pattern-counts", headers=headers["reviewer"]).json()
        assert empty["counts"] == {} and empty["drift"]["verdict"] == "too_few"
        clinician = headers["clinician"]
        for age in (61, 62, 63):  # structured only: pattern 1
            assert client.post("/predict", files=patient(age), headers=clinician).status_code == 200
        assert client.post("/predict", files=patient(61), headers=clinician).status_code == 200  # the same inputs
        assert (
            client.post("/what-if", files=patient(64, "Discharged home, stable."), headers=clinician).status_code == 200
        )
        bad = client.post("/predict", files=[("structured", (None, '{"age": 900}'))], headers=clinician)
        assert bad.status_code == 422  # refused: nobody was analysed
        document = client.get("/pattern-counts", headers=headers["admin"]).json()
    assert document["counts"] == {"1": 3, "5": 1} and document["n"] == 4
    assert document["patterns"] == {"1": "structured", "5": "structured + discharge_note"}
    assert document["model_id"] == predictor.model_id and document["modalities"] == NAMES
    assert document["drift"]["n_local"] == 4 and document["drift"]["verdict"] == "too_few"
    text = json.dumps(document) + counts_file.read_text()
    assert not any(secret in text for secret in ("P-61", "P-64", "Discharged", '"age"'))  # counts only
    assert json.loads(counts_file.read_text())["counts"] == {"1": 3, "5": 1}  # written at shutdown at the latest

    with TestClient(create_app(predictor, config)) as client:  # a restart goes on from the file
        client.post("/predict", files=patient(70), headers=headers["clinician"])
        assert client.get("/pattern-counts", headers=headers["admin"]).json()["counts"] == {"1": 4, "5": 1}


def test_another_models_counts_file_is_refused_and_kept(predictor, tmp_path):
    counts_file = tmp_path / "counts.json"
    original = json.dumps(counts_document("another-model", NAMES, {1: 7}))
    counts_file.write_text(original)
    with TestClient(create_app(predictor, ServeConfig(pattern_counts_file=str(counts_file)))) as client:
        response = client.get("/ready")
        assert response.status_code == 503 and "another-model" in response.json()["error"]
    assert counts_file.read_text() == original  # never overwritten


def test_serve_refuses_a_bad_counts_file_at_start(tmp_path, capsys):
    from mmnar_core.cli import main

    broken = tmp_path / "counts.json"
    broken.write_text("{not json")
    assert main(["serve", str(BUNDLE), "--pattern-counts-file", str(broken)]) == 2
    assert "cannot be read as JSON" in capsys.readouterr().err
    assert main(["serve", str(BUNDLE), "--pattern-counts-file", str(tmp_path / "no" / "c.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_counter_is_thread_safe_and_forgets_old_hashes():
    counter = PatternCounter(recent=2)
    counter.bind("m", NAMES)

    def work(offset: int) -> None:
        for i in range(500):
            counter.add(1 + 4 * (i % 2), f"{offset}-{i}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.counts() == {1: 1000, 5: 1000}
    counter.add(3, "a")
    counter.add(3, "a")  # a repeat: not counted
    counter.add(3, "b")
    counter.add(3, "c")
    counter.add(3, "a")  # forgotten after two others: counted again
    assert counter.counts()[3] == 4


def test_drift_command_reads_the_servers_file(predictor, tmp_path, capsys):
    from mmnar_core.cli import main

    counter = PatternCounter(tmp_path / "counts.json", flush_every_s=0)
    counter.bind(predictor.model_id, NAMES)
    for i in range(150):  # a site where nobody gets an X-ray or a radiology report
        counter.add(1 if i % 3 else 5, str(i))
    counter.flush()
    assert main(["drift", str(BUNDLE), "--counts", str(tmp_path / "counts.json")]) == 0
    assert "verdict: drift: rectify advised" in capsys.readouterr().out
    with pytest.raises(DriftError, match="another-model"):
        PatternCounter(tmp_path / "counts.json").bind("another-model", NAMES)
