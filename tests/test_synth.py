import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from mmnar_core.dataset import load_dataset
from mmnar_core.synth import cxr
from mmnar_core.synth.cohort import FEATURES, OUTCOME_NAMES, CohortConfig, build_cohort
from mmnar_core.synth.policy import POLICY_NAMES, decide_availability
from mmnar_core.synth.scm import simulate_latent_and_structured


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return build_cohort(CohortConfig(n=400, seed=3), tmp_path_factory.mktemp("syn") / "a", progress=False, workers=2)


@pytest.fixture(scope="module")
def big_frame():
    """Structural equations only (no images), large enough for rates and model comparisons."""
    return simulate_latent_and_structured(30000, seed=5)


@pytest.mark.slow
def test_same_seed_same_bytes_different_seed_differs(cohort, tmp_path):
    again = build_cohort(CohortConfig(n=400, seed=3), tmp_path / "b", progress=False, workers=1)
    assert (again / "checksums.sha256").read_bytes() == (cohort / "checksums.sha256").read_bytes()
    for relative in ("patients.parquet", "structured.parquet", "text.parquet", "truth/text_spans.parquet"):
        assert (again / relative).read_bytes() == (cohort / relative).read_bytes()
    first_image = sorted((cohort / "images" / "cxr").iterdir())[0]
    assert (again / "images" / "cxr" / first_image.name).read_bytes() == first_image.read_bytes()
    other = build_cohort(CohortConfig(n=400, seed=4), tmp_path / "c", progress=False, workers=2)
    assert load_dataset(other).manifest.content_hash != load_dataset(cohort).manifest.content_hash
    a = pd.read_parquet(cohort / "structured.parquet")
    b = pd.read_parquet(other / "structured.parquet")
    assert not np.allclose(a["heart_rate_max"], b["heart_rate_max"])


def test_dataset_is_valid_and_complete(cohort):
    dataset = load_dataset(cohort, verify="all")
    manifest = dataset.manifest
    assert manifest.modality_names == ["structured", "cxr", "discharge_note", "radiology_report"]
    assert manifest.has_true_probabilities
    assert manifest.provenance["parameters"]["seed"] == 3
    assert set(dataset.patients["split"]) == {"train", "val", "test"}
    assert manifest.split_counts == {"train": 280, "val": 60, "test": 60}
    images = dataset.images
    sizes = {Image.open(cohort / p).size for p in images["path"].head(20)}
    assert sizes == {(224, 224)}
    for feature in FEATURES:
        if feature.valid_range:
            values = dataset.structured[feature.name].dropna()
            assert values.between(*feature.valid_range).all(), feature.name


def test_label_prevalences_realistic(big_frame):
    rates = {name: big_frame[f"label_{name}"].mean() for name in OUTCOME_NAMES}
    assert 0.10 <= rates["readmission_30d"] <= 0.20
    assert 0.15 <= rates["icu_90d"] <= 0.30
    assert 0.05 <= rates["death_180d"] <= 0.12


def test_oracle_auroc_known_and_below_one(big_frame):
    for name in OUTCOME_NAMES:
        auroc = roc_auc_score(big_frame[f"label_{name}"], big_frame[f"true_prob_{name}"])
        assert 0.65 < auroc < 0.92, (name, auroc)


def _availability_auroc(frame, target, columns, seed=0):
    x = frame[columns].to_numpy(dtype=float)
    x = np.where(np.isnan(x), np.nanmedian(x, axis=0), x)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    half = len(x) // 2
    model = LogisticRegression(max_iter=500).fit(x[:half], target[:half])
    return roc_auc_score(target[half:], model.predict_proba(x[half:])[:, 1])


OBSERVED = [
    "age",
    "length_of_stay",
    "prior_admissions_12m",
    "n_medications",
    "heart_rate_max",
    "resp_rate_max",
    "spo2_min",
    "temperature_max",
    "sbp_min",
    "wbc",
    "creatinine",
    "sodium",
    "hemoglobin",
]
LATENT = ["severity", "pneumonia", "heart_failure", "pleural_effusion", "sepsis", "copd"]


def _with_flags(frame):
    frame = frame.copy()
    frame["hypoxic"] = ((frame["spo2_min"] < 92) | (frame["resp_rate_max"] > 24)).astype(float)
    frame["transfer"] = (frame["discharge_disposition"] == "transfer").astype(float)
    frame["log_los"] = np.log(frame["length_of_stay"])
    frame["fever"] = (frame["temperature_max"] > 38).astype(float)
    return frame


@pytest.mark.parametrize("modality", ["cxr", "discharge_note"])
def test_default_policy_is_mnar_and_mcar_is_not(big_frame, modality):
    frame = _with_flags(big_frame)
    observed = OBSERVED + ["hypoxic", "transfer", "log_los", "fever"]
    for policy, expect_mnar in (("default", True), ("mcar", False)):
        avail, _ = decide_availability(big_frame, policy, seed=1)
        target = avail[modality].to_numpy()
        auc_observed = _availability_auroc(frame, target, observed)
        auc_latent = _availability_auroc(frame, target, observed + LATENT)
        if expect_mnar:
            assert auc_latent > auc_observed + 0.015, (policy, auc_observed, auc_latent)
        else:
            assert abs(auc_observed - 0.5) < 0.03 and abs(auc_latent - 0.5) < 0.03, (auc_observed, auc_latent)


def test_mar_depends_on_observed_only(big_frame):
    frame = _with_flags(big_frame)
    avail, _ = decide_availability(big_frame, "mar", seed=1)
    target = avail["cxr"].to_numpy()
    observed = ["hypoxic", "fever", "age"]
    assert _availability_auroc(frame, target, observed + LATENT) < _availability_auroc(frame, target, observed) + 0.005


def test_policies_differ_in_ordering_habits(big_frame):
    rates = {p: decide_availability(big_frame, p, seed=1)[0].mean() for p in POLICY_NAMES}
    assert rates["high_imaging"]["cxr"] > rates["default"]["cxr"] + 0.2 > rates["low_imaging"]["cxr"] + 0.3
    assert abs(rates["mcar"]["cxr"] - rates["default"]["cxr"]) < 0.02
    assert (
        rates["low_imaging"]["discharge_note"]
        < rates["default"]["discharge_note"]
        < rates["high_imaging"]["discharge_note"]
    )
    with pytest.raises(ValueError, match="accepted: default"):
        decide_availability(big_frame, "random", seed=1)


def test_saved_masks_overlap_what_was_drawn(cohort):
    findings = pd.read_parquet(cohort / "truth" / "image_findings.parquet")
    assert set(findings["finding"]) == {"opacity", "effusion", "cardiomegaly"}
    for row in findings.itertuples():
        mask = np.array(Image.open(cohort / row.mask_path)) > 0
        assert mask.sum() == row.mask_pixels > 50
    # re-render with and without each finding: the difference must lie inside its mask
    rng = np.random.default_rng(0)
    for finding, kwargs in (("opacity", dict(opacity=True)), ("effusion", dict(effusion=True))):
        for trial in range(5):
            args = dict(
                opacity=False,
                lobe=["right lower lobe", "left upper lobe"][trial % 2],
                effusion=False,
                side=["left", "right", "bilateral"][trial % 3],
                cardiomegaly=False,
                hyperinflation=False,
            )
            args.update(kwargs)
            spec = cxr.draw_spec(rng, 1000 + trial, severity=float(rng.normal()), **args)
            with_finding, masks = cxr.render(spec)
            without, _ = cxr.render(spec, include=set())
            difference = np.abs(with_finding.astype(float) - without.astype(float))
            inside = difference[masks[finding]].sum() / difference.sum()
            assert inside > 0.9, (finding, trial, inside)
    spec = cxr.draw_spec(rng, 7, 0.0, False, "right lower lobe", False, "left", True, False)
    _, masks = cxr.render(spec)
    normal = cxr.draw_spec(np.random.default_rng(1), 7, 0.0, False, "right lower lobe", False, "left", False, False)
    heart_normal = cxr.render(normal)[1]
    assert "cardiomegaly" in masks and "cardiomegaly" not in heart_normal


def test_findings_follow_latent_state(cohort):
    latent = pd.read_parquet(cohort / "truth" / "latent.parquet").set_index("patient_id")
    findings = pd.read_parquet(cohort / "truth" / "image_findings.parquet")
    for finding in ("opacity", "effusion", "cardiomegaly"):
        drawn = set(findings.loc[findings["finding"] == finding, "patient_id"])
        imaged = set(pd.read_parquet(cohort / "images.parquet")["patient_id"])
        expected = set(latent.index[latent[f"finding_{finding}"]]) & imaged
        assert drawn == expected


def test_signal_spans_point_at_recorded_phrases(cohort):
    spans = pd.read_parquet(cohort / "truth" / "text_spans.parquet")
    text = pd.read_parquet(cohort / "text.parquet").set_index("patient_id")
    assert len(spans) > 400
    for row in spans.itertuples():
        note = text.at[row.patient_id, row.modality]
        assert note[row.start : row.end] == row.phrase
    latent = pd.read_parquet(cohort / "truth" / "latent.parquet").set_index("patient_id")
    reports = spans[(spans["modality"] == "radiology_report") & (spans["concept"] == "opacity")]
    affirmed = reports[reports["assertion"] == "affirmed"]["patient_id"]
    negated = reports[reports["assertion"] == "negated"]["patient_id"]
    assert latent.loc[affirmed, "finding_opacity"].mean() > 0.95
    assert latent.loc[negated, "finding_opacity"].mean() < 0.1
    notes = spans[
        (spans["modality"] == "discharge_note") & (spans["concept"] == "sepsis") & (spans["assertion"] == "affirmed")
    ]
    assert latent.loc[notes["patient_id"], "sepsis"].all()


def test_notes_are_varied_and_realistic(cohort):
    text = pd.read_parquet(cohort / "text.parquet")
    reports = text["radiology_report"].dropna()
    notes = text["discharge_note"].dropna()
    assert reports.nunique() == len(reports)
    for section in (
        r"^EXAM(?:INATION)?: CHEST",
        r"\n(?:INDICATION|HISTORY|CLINICAL HISTORY): ",
        r"\nCOMPARISON: ",
        r"\nFINDINGS:\n",
        r"\nIMPRESSION:\n",
    ):
        assert reports.str.contains(section).all(), section
    assert reports.str.contains(r"\bNo\b|\bno\b").mean() > 0.5  # negations
    for section in ("Chief Complaint:", "Brief Hospital Course:", "Discharge Medications:", "Discharge Diagnosis:"):
        assert notes.str.contains(section, regex=False).all()
    lengths = notes.str.len()
    assert 1200 < lengths.median() < 6000
    first_sentences = reports.str.extract(r"FINDINGS:\s+([^.]+)\.")[0]
    assert first_sentences.nunique() > 20


def test_bad_cli_input_is_a_clear_error(tmp_path, capsys):
    from mmnar_core.cli import main

    assert main(["synth", "--n", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--n must be a positive integer" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["synth", "--n", "5", "--policy", "random", "--out", str(tmp_path / "x")])


def test_content_signal_scenario_hides_conditions_from_structured_data():
    """Scenario v2: the structured data sees the conditions at 0.15 of v1's strength, the X-ray findings
    follow the true conditions as in v1, and the outcomes lean more on the conditions; the default
    scenario is v1 unchanged."""
    from mmnar_core.synth.scm import SCENARIOS, SCMParameters, content_signal_parameters

    assert SCENARIOS["default"][1]() == SCMParameters() and SCMParameters().structured_condition_scale == 1.0
    v1 = simulate_latent_and_structured(20000, seed=9)
    v2 = simulate_latent_and_structured(20000, seed=9, params=content_signal_parameters())
    for frame, expected in ((v1, -4.0), (v2, -0.6)):  # pneumonia's effect on spo2: -4 points in v1, 0.15 x -4 in v2
        design = np.column_stack(
            [
                np.ones(len(frame)),
                frame.severity,
                frame.pneumonia,
                frame.copd,
                frame.pleural_effusion,
                frame.heart_failure,
            ]
        ).astype(float)
        coef = np.linalg.lstsq(design, frame.spo2_min.to_numpy(float), rcond=None)[0]
        assert abs(coef[2] - expected) < 0.3, coef
    assert (
        v2.loc[v2.pneumonia, "finding_opacity"].mean() > 0.85 > 0.05 > v2.loc[~v2.pneumonia, "finding_opacity"].mean()
    )

    def structured_auroc(frame):  # how well the vitals reveal pneumonia (severity still leaks some)
        X = frame[["age", "heart_rate_max", "resp_rate_max", "spo2_min", "temperature_max", "sbp_min"]].to_numpy()
        y = frame.pneumonia.to_numpy()
        fitted = LogisticRegression(max_iter=500).fit(X[:10000], y[:10000])
        return roc_auc_score(y[10000:], fitted.predict_proba(X[10000:])[:, 1])

    v1_auc, v2_auc = structured_auroc(v1), structured_auroc(v2)
    assert v2_auc < v1_auc - 0.1 and v2_auc < 0.8 < 0.9 < roc_auc_score(v2.pneumonia, v2.finding_opacity), (
        v1_auc,
        v2_auc,
    )


def test_content_only_scenario_hides_conditions_entirely():
    """Scenario v3: pneumonia has no effect on any vital (scale 0), yet still drives ICU admission
    strongly; its X-ray finding still follows it."""
    from mmnar_core.synth.scm import SCENARIOS, content_only_parameters

    assert SCENARIOS["content_only"][1]() == content_only_parameters()
    v3 = simulate_latent_and_structured(20000, seed=9, params=content_only_parameters())
    design = np.column_stack(
        [np.ones(len(v3)), v3.severity, v3.pneumonia, v3.copd, v3.pleural_effusion, v3.heart_failure]
    ).astype(float)
    coef = np.linalg.lstsq(design, v3.spo2_min.to_numpy(float), rcond=None)[0]
    assert abs(coef[2]) < 0.2, coef  # v1: -4 points, v2: -0.6
    assert content_only_parameters().icu_90d["pneumonia"] > 1.5
    assert v3.loc[v3.pneumonia, "finding_opacity"].mean() > 0.85


def test_outcome_concepts_follow_the_structural_equations():
    from mmnar_core.synth.scm import SCMParameters, outcome_concepts

    icu = outcome_concepts(SCMParameters().icu_90d)  # severity, sepsis, pneumonia, pleural_effusion, copd
    assert icu == {
        "severity",
        "sepsis",
        "pneumonia",
        "pleural_effusion",
        "copd",
        "opacity",
        "effusion",
        "hyperinflation",
    }
    assert outcome_concepts({"intercept": -1.0, "heart_failure": 0.5, "pneumonia": 0.0}) == {
        "heart_failure",
        "cardiomegaly",
    }


def test_scenario_is_recorded_and_reproducible(tmp_path):
    config = CohortConfig(n=30, seed=4, scenario="content_signal")
    root = build_cohort(config, tmp_path / "v2", progress=False, workers=1)
    provenance = load_dataset(root).manifest.provenance
    assert (
        provenance["command"] == "python -m mmnar_core synth --n 30 --seed 4 --policy default --scenario content_signal"
    )
    assert provenance["parameters"]["scenario"] == "content_signal"
    assert provenance["parameters"]["scm"]["structured_condition_scale"] == 0.15
    assert load_dataset(root).manifest.name == "synthetic-default-content_signal-n30-seed4"
    with pytest.raises(ValueError, match="--scenario 'v3' is not known"):
        CohortConfig(n=30, seed=4, scenario="v3")
