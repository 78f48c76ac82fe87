"""The scale-up benchmark's stand-in for full MIMIC-IV is a faithful replica: K copies give K times the cohort."""

import warnings

from mmnar_core.dataset import load_dataset
from mmnar_core.loaders.mimic_iv.build import build
from mmnar_lab.loaders_scaleup import make_scaled_root


def test_replicated_demo_scales_cohort_and_labels_exactly(shared_data, tmp_path):
    rows = make_scaled_root(shared_data / "mimic-iv-demo", tmp_path / "mimic", replicas=2)
    assert rows["hosp/labevents"] == 2 * 107727 and rows["icu/chartevents"] > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build(tmp_path / "mimic", tmp_path / "ds", progress=False)
    dataset = load_dataset(tmp_path / "ds")
    assert len(dataset) == 2 * 95
    assert [int(dataset.labels(o).sum()) for o in ("readmission_30d", "icu_90d", "death_180d")] == [30, 28, 18]
    # synthetic chartevents fill the ICU vitals of patients with an ICU stay in the index admission
    with_icu = dataset.structured["icu_stay"] == 1
    assert (dataset.structured.loc[with_icu, "vital_heart_rate_count"] > 0).all()
    temperatures = dataset.structured["vital_temperature_last"].dropna()
    assert len(temperatures) and temperatures.between(30, 45).all()
