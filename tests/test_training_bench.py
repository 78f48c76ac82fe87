"""The training benchmark times the config it is asked to: overrides reach the trained model."""

from mmnar_lab.training_bench import bench_training


def test_overrides_change_the_timed_config_and_are_reported():
    small = {"d_model": 16, "n_heads": 2, "epochs": 1, "n_members": 2}
    result = bench_training(n=600, threads=1, overrides=small)
    assert result["overrides"] == small and result["n_members"] == 2 and result["epochs_run"] == 1
    assert result["loop_samples_per_s"] > 0 and 0.5 <= result["planted_test_auroc"] <= 1.0
