"""The what-if scenario table (mmnar_app.display.scenario_rows): several modality subsets side by side, read
from the subsets and estimates already computed, each risk in % and its change from the risk as recorded in
percentage points."""

from __future__ import annotations

import itertools

from mmnar_app.display import scenario_rows
from mmnar_core.results import AbsentModality, ObtainedEstimate, SubsetRisks, WhatIfResult

TASKS = ["readmission_30d", "death_180d"]
PRESENT = ["structured", "cxr", "discharge_note", "radiology_report"]
WEIGHTS = {"structured": 0.10, "cxr": 0.04, "discharge_note": 0.02, "radiology_report": 0.01}


def risk(modalities, task: str) -> float:
    """A planted risk: 5 % plus each modality's weight (doubled for death), so every subset differs."""
    return 0.05 + sum(WEIGHTS[m] for m in modalities) * (2 if task == "death_180d" else 1)


def what_if(present=PRESENT, absent=()) -> WhatIfResult:
    subsets = [
        SubsetRisks(list(s), 0, {t: risk(s, t) for t in TASKS})
        for n in range(len(present) + 1)
        for s in itertools.combinations(present, n)
    ]
    shapley = {m: {t: 0.0 for t in TASKS} for m in present}
    estimates = [
        AbsentModality(
            m,
            "ok",
            ObtainedEstimate(
                current={t: risk(present, t) for t in TASKS},
                mean={t: risk(present, t) + 0.031 for t in TASKS},
                p10={t: risk(present, t) for t in TASKS},
                p90={t: risk(present, t) + 0.06 for t in TASKS},
                n_reference=100,
                n_candidates=50,
            ),
        )
        for m in absent
    ]
    return WhatIfResult("p", TASKS, list(present), subsets, shapley, estimates)


def test_every_scenario_with_its_risks_and_changes():
    rows = scenario_rows(what_if(), text_modalities=["discharge_note", "radiology_report"])
    table = {r["scenario"]: r for r in rows}
    assert list(table) == [
        "As recorded (Structured EHR + Chest X-ray + Discharge summary + Radiology report)",
        "Without the Structured EHR",
        "Without the Chest X-ray",
        "Without the Discharge summary",
        "Without the Radiology report",
        "Without the notes",
        "Structured EHR only",
    ]
    recorded = table[rows[0]["scenario"]]
    assert recorded["Death within 180 days: risk"] == "39.0 %" and recorded["Death within 180 days: change"] == ""
    assert table["Without the Chest X-ray"]["Death within 180 days: change"] == "-8.0 pts"
    assert table["Without the notes"]["Readmission within 30 days: risk"] == "19.0 %"
    assert table["Without the notes"]["Readmission within 30 days: change"] == "-3.0 pts"
    assert table["Structured EHR only"]["Death within 180 days: change"] == "-14.0 pts"


def test_absent_modalities_obtained_and_no_duplicate_rows():
    rows = scenario_rows(what_if(["structured", "discharge_note"], absent=["cxr"]), text_modalities=["discharge_note"])
    labels = [r["scenario"] for r in rows]
    # one note only: no separate 'without the notes'; 'structured only' is 'without the discharge summary'
    assert labels == [
        "As recorded (Structured EHR + Discharge summary)",
        "Without the Structured EHR",
        "Without the Discharge summary",
        "With the Chest X-ray obtained (estimate)",
    ]
    assert rows[-1]["Readmission within 30 days: change"] == "+3.1 pts"
