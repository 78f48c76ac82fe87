"""Out-of-distribution warnings: is a patient unlike the training data, per modality and overall, and why.

`DistributionCheck` is fitted on a bundle's training split (`fit_distribution_check`, or the
`mmnar distribution-check` command for an existing bundle), saved in the bundle as
distribution_check.json + distribution_check.safetensors, loaded with `DistributionCheck.from_bundle`,
and gives a `DistributionReport` per patient. See docs/ood.md.

The names below are imported on first use (`mmnar --help` lists this package's command without loading
torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmnar_core.lazy_exports import lazy_getattr

_EXPORTS = {
    "FILES": "mmnar_core.ood.check",
    "JSON_FILE": "mmnar_core.ood.check",
    "TENSOR_FILE": "mmnar_core.ood.check",
    "DistributionCheck": "mmnar_core.ood.check",
    "DistributionCheckError": "mmnar_core.ood.check",
    "fit_distribution_check": "mmnar_core.ood.check",
    "FeatureRange": "mmnar_core.ood.ranges",
    "DetectorResult": "mmnar_core.ood.report",
    "DistributionReport": "mmnar_core.ood.report",
    "FeatureFinding": "mmnar_core.ood.report",
    "ModalityReport": "mmnar_core.ood.report",
    "CheckSettings": "mmnar_core.ood.state",
}

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

if TYPE_CHECKING:
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


__getattr__ = lazy_getattr(__name__, globals(), _EXPORTS)
