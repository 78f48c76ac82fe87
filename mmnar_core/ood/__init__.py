"""Out-of-distribution warnings: is a patient unlike the training data, per modality and overall, and why.

`DistributionCheck` is fitted on a bundle's training split (`fit_distribution_check`, or the
`mmnar distribution-check` command for an existing bundle), saved in the bundle as
distribution_check.json + distribution_check.safetensors, loaded with `DistributionCheck.from_bundle`,
and gives a `DistributionReport` per patient. See docs/ood.md."""

from mmnar_core.ood.check import (
    FILES,
    JSON_FILE,
    TENSOR_FILE,
    DistributionCheck,
    DistributionCheckError,
    fit_distribution_check,
)
from mmnar_core.ood.ranges import FeatureRange
from mmnar_core.ood.report import DetectorResult, DistributionReport, FeatureFinding, ModalityReport
from mmnar_core.ood.state import CheckSettings

__all__ = [
    "FILES",
    "JSON_FILE",
    "TENSOR_FILE",
    "CheckSettings",
    "DetectorResult",
    "DistributionCheck",
    "DistributionCheckError",
    "DistributionReport",
    "FeatureFinding",
    "FeatureRange",
    "ModalityReport",
    "fit_distribution_check",
]
