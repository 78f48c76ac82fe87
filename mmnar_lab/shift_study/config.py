"""The study's settings in one place, importable without torch: the command line reads the defaults and the
adaptation names from here when `mmnar --help` is built; the study itself (run.py) imports the models."""

from __future__ import annotations

from dataclasses import dataclass, field

ADAPTATION_NAMES = ("none", "global", "modality_offsets", "rectifier_v2")  # run.ADAPTATIONS maps them
REFERENCE_MODELS = (
    "logistic",
    "lightgbm",
    "hgb",
    "structured_only",
    "concat_mask",
    "concat_zero_fill",
    "concat_dropout",
)


@dataclass(frozen=True)
class StudyConfig:
    """Every default of the study in one place (small enough for ~20 min on a 2-core CPU)."""

    n_site_a: int = 4000
    n_site_b: int = 8000
    pools: tuple[int, ...] = (100, 300, 1000, 3000)
    policies: tuple[str, ...] = ("default", "low_imaging", "high_imaging", "mar", "mcar", "reversed")
    judgements: tuple[float, ...] = (0.0, 2.0)
    cohort_seeds: tuple[int, ...] = (0,)
    training_seeds: tuple[int, ...] = (0, 1, 2)
    models: tuple[str, ...] = ("mmnar", "logistic", "lightgbm", "concat_mask", "concat_zero_fill")
    scenario: str = "content_signal"
    n_resamples: int = 400
    model_overrides: dict = field(default_factory=dict)  # MMNARConfig fields for every network (e.g. epochs)

    def __post_init__(self) -> None:
        from mmnar_core.baselines.models import check_model_names
        from mmnar_core.synth.policy import POLICY_NAMES
        from mmnar_core.synth.scm import SCENARIO_NAMES

        if list(self.pools) != sorted(set(self.pools)) or not self.pools or self.pools[0] < 1:
            raise ValueError(f"--pools must be distinct positive sizes in increasing order, got {list(self.pools)}")
        if self.n_site_b - self.pools[-1] < 1000:
            raise ValueError(
                f"site B needs at least 1,000 test patients beyond the largest pool "
                f"({self.pools[-1]}); got --n-site-b {self.n_site_b}"
            )
        if self.n_site_a < 500:
            raise ValueError(f"--n-site-a must be at least 500 (train and validation at site A), got {self.n_site_a}")
        unknown = [p for p in self.policies if p not in POLICY_NAMES]
        if unknown or not self.policies:
            raise ValueError(f"unknown policy(ies) {unknown} (accepted: {', '.join(POLICY_NAMES)})")
        if "default" not in self.policies:
            raise ValueError("--policies must include 'default' (the no-shift case every figure is compared with)")
        if any(not 0 <= j <= 3 for j in self.judgements) or not self.judgements:
            raise ValueError(f"--judgements must be numbers in 0..3, got {list(self.judgements)}")
        if self.scenario not in SCENARIO_NAMES:
            raise ValueError(f"--scenario {self.scenario!r} is not known (accepted: {', '.join(SCENARIO_NAMES)})")
        for name, seeds in (("--cohort-seeds", self.cohort_seeds), ("--training-seeds", self.training_seeds)):
            if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
                raise ValueError(f"{name} must be distinct non-negative integers, got {list(seeds)}")
        check_model_names(list(self.models))
        if "mmnar" not in self.models:
            raise ValueError("--models must include 'mmnar' (every comparison is with it)")
        if not any(m in REFERENCE_MODELS for m in self.models):
            raise ValueError(f"--models needs at least one reference ({', '.join(REFERENCE_MODELS)})")
        if self.n_resamples < 100:
            raise ValueError(f"--resamples must be at least 100, got {self.n_resamples}")


def defaults() -> dict:
    """The default of every setting, without validating (nothing heavy is imported)."""
    from dataclasses import MISSING, fields

    return {f.name: (f.default if f.default is not MISSING else f.default_factory()) for f in fields(StudyConfig)}
