"""History's Compare (issue 17, item 5): inputs, availability, risks, the main drivers and what-if of two saved
assessments side by side, with exactly the rows that differ marked; the History page shows them as tables."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from mmnar_app import history

from support.paths import ROOT


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Demo 06 (structured + X-ray), the same with a higher creatinine, and the same without its X-ray."""
    from mmnar_app.report_bench import demo, record_of, save_analysed
    from mmnar_app.service import LocalService
    from mmnar_app.store import open_store
    from mmnar_core.resources import DEMO_BUNDLE

    data = tmp_path_factory.mktemp("data")
    store = open_store(None, data_dir=data)
    service = LocalService(DEMO_BUNDLE)
    six = demo("Demo 06")
    base = save_analysed(store, service, record_of(six), "Demo 06", "baseline", user="dr-test")
    changed = record_of(six)
    changed.structured["creatinine"] = 4.0  # planted: one structured value differs
    worse = save_analysed(store, service, changed, "Demo 06", "creatinine 4.0", user="dr-test")
    bare = save_analysed(store, service, record_of(six, drop=("cxr",)), "Demo 06", "no X-ray", user="dr-test")
    loaded = {i: history._stored(store, store.url, i) for i in (base, worse, bare)}
    return data, loaded, (base, worse, bare)


def _changed(rows):
    return [row for row, flag in zip(rows, history.changed_rows(rows)) if flag]


def test_one_changed_value_is_the_only_input_marked(saved):
    _, loaded, (base, worse, _) = saved
    assert demo_has("creatinine", loaded[base][0])
    rows = history.compare_inputs(loaded[base], loaded[worse])
    changed = _changed(rows)
    assert [r["input"] for r in changed] == ["Creatinine (last)"], changed
    assert changed[0][f"#{worse}"] == "4 mg/dL" and changed[0]["difference"] == "changed"
    assert len(rows) > 20  # every input is listed, not only the differences


def demo_has(feature: str, assessment) -> bool:
    return assessment.inputs["structured"].get(feature) not in (None, 4.0)


def test_removed_xray_marks_availability_file_risks_and_what_if(saved):
    _, loaded, (base, _, bare) = saved
    first, second = loaded[base], loaded[bare]
    inputs = {r["input"]: r for r in _changed(history.compare_inputs(first, second))}
    assert set(inputs) == {"Chest X-ray available", "Chest X-ray file"}
    assert inputs["Chest X-ray available"][f"#{bare}"] == "no"

    risks = history.compare_rows(first, second)
    assert risks[0]["difference"] == "changed" and risks[0][f"#{bare}"] == "EHR"
    pa = next(iter(first[1].values())).prediction.risks
    pb = {r.task: r for r in next(iter(second[1].values())).prediction.risks}
    for row, r in zip(risks[1:], pa):
        assert row["difference"] == f"{100 * (pb[r.task].risk - r.risk):+.1f} pts"
        assert f"({100 * r.low:.1f} % to {100 * r.high:.1f} %)" in row[f"#{base}"]  # the interval, side by side

    what_if = history.compare_what_if(first, second)
    xray = [r for r in what_if if r["modality"] == "Chest X-ray"]
    assert xray and all(r[f"#{bare}"] == "not available" and r["difference"] == "changed" for r in xray)
    assert all(r[f"#{base}"].startswith("without it ") for r in xray)


def test_an_assessment_compared_with_itself_shows_no_difference(saved):
    _, loaded, (base, _, _) = saved
    pair = (loaded[base], loaded[base])
    for _, rows_of, _ in history.COMPARE_SECTIONS:
        rows = rows_of(*pair)
        assert rows and not any(history.changed_rows(rows)), rows_of.__name__


def test_drivers_side_by_side_name_the_ones_only_one_lists(saved):
    _, loaded, (base, worse, _) = saved
    rows = history.compare_drivers(loaded[base], loaded[worse])
    tasks = [r["outcome"] for r in rows if r["outcome"]]
    assert len(tasks) == 3 and {r["rank"] for r in rows} == {1, 2, 3}
    # creatinine 4.0 (far above the training range) becomes a top driver of some outcome of the second
    assert any("Creatinine (last) (4 mg/dL)" in r[f"#{worse}"] for r in rows)
    assert any(f"only #{worse}'s: Creatinine (last)" in r["difference"] for r in rows)


def test_summary_rows_put_risks_first_and_model_only_when_it_varies(saved):
    from datetime import UTC, datetime
    from types import SimpleNamespace

    def row(i, model):
        return SimpleNamespace(
            id=i,
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            patient_label="p",
            user="u",
            pattern="structured+cxr",
            model_id=model,
            summary={"death_180d": 0.1},
            note="",
        )

    one = history.summary_rows([row(1, "m1"), row(2, "m1")], ["death_180d"])
    assert list(one[0])[:3] == ["id", "patient", "Death 180 d"] and "model" not in one[0]
    assert one[0]["available"] == "EHR + X-ray"
    two = history.summary_rows([row(1, "m1"), row(2, "m2")], ["death_180d"])
    assert two[1]["model"] == "m2"


@pytest.mark.slow
def test_history_page_shows_the_compare_sections(saved, monkeypatch):
    data, _, (base, worse, _) = saved
    monkeypatch.setenv("MMNAR_DATA_DIR", str(data))
    monkeypatch.setenv("MMNAR_USER", "dr-test")
    monkeypatch.delenv("MMNAR_DATABASE_URL", raising=False)
    app = AppTest.from_file(str(ROOT / "app" / "pages" / "3_History.py"), default_timeout=180)
    app.run()
    assert not app.exception, app.exception
    app.multiselect(key="h_compare").set_value([base, worse]).run()
    assert not app.exception, app.exception
    titles = [m.value for m in app.markdown if " rows differ" in m.value]
    assert [t.split(" ·")[0] for t in titles] == ["**Risks**", "**Inputs**", "**Main drivers**", "**What-if**"]
    inputs = next(t.value for t in app.table if "input" in t.value.columns)
    assert "Creatinine (last)" in set(inputs["input"])
    app.toggle(key="h_only_changes").set_value(True).run()
    inputs = next(t.value for t in app.table if "input" in t.value.columns)
    assert list(inputs["input"]) == ["Creatinine (last)"]  # only what differs


def test_pattern_filter_matches_part_of_the_pattern_in_either_spelling(saved):
    from mmnar_app.store import open_store

    data, _, (base, worse, bare) = saved
    rows = open_store(None, data_dir=data).list_assessments()
    assert {r.id for r in history.with_pattern(rows, "cxr")} == {base, worse}  # not an exact match
    assert {r.id for r in history.with_pattern(rows, "X-RAY")} == {base, worse}
    assert {r.id for r in history.with_pattern(rows, "")} == {base, worse, bare}
