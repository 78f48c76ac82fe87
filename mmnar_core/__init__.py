"""mmnar_core: multimodal clinical risk prediction under modality missingness not at random.

The library behind the MMNAR clinical risk explorer. Data flows one way: sources (synthetic simulator,
real-format loaders) -> one canonical dataset format -> encoders -> MMNAR model -> calibrated model
(temperatures + site correction) -> bundle -> explanations -> predictor (docs/architecture.md).

The front door (docs/api.md):

    from mmnar_core import Predictor, PatientRecord, DEMO_BUNDLE
    predictor = Predictor.load(DEMO_BUNDLE)
    explanation = predictor.explain(PatientRecord("p1", {"age": 71, "sex": "F"}))

The names below are imported on first use, so `import mmnar_core` (and `mmnar --help`) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmnar_core.lazy_exports import lazy_getattr

__version__ = "0.2.0"

# public name -> module that defines it
_EXPORTS = {
    "Predictor": "mmnar_core.predictor",
    "Prediction": "mmnar_core.results",
    "TaskRisk": "mmnar_core.results",
    "WhatIfResult": "mmnar_core.results",
    "PredictorError": "mmnar_core.predictor",
    "Explanation": "mmnar_core.explain.explanation",
    "AttributionSettings": "mmnar_core.explain.attributions",
    "Bundle": "mmnar_core.bundle",
    "BundleError": "mmnar_core.bundle",
    "load_bundle": "mmnar_core.bundle",
    "CalibratedModel": "mmnar_core.calibration.calibrated",
    "PatientRecord": "mmnar_core.schema",
    "ModelInfo": "mmnar_core.model_info",
    "DEMO_BUNDLE": "mmnar_core.resources",
}

__all__ = [
    "DEMO_BUNDLE",
    "AttributionSettings",
    "Bundle",
    "BundleError",
    "CalibratedModel",
    "Explanation",
    "ModelInfo",
    "PatientRecord",
    "Prediction",
    "Predictor",
    "PredictorError",
    "TaskRisk",
    "WhatIfResult",
    "__version__",
    "load_bundle",
]

if TYPE_CHECKING:  # the type checker sees real imports; at run time they are lazy
    from mmnar_core.bundle import Bundle, BundleError, load_bundle
    from mmnar_core.calibration.calibrated import CalibratedModel
    from mmnar_core.explain.attributions import AttributionSettings
    from mmnar_core.explain.explanation import Explanation
    from mmnar_core.model_info import ModelInfo
    from mmnar_core.predictor import Predictor, PredictorError
    from mmnar_core.resources import DEMO_BUNDLE
    from mmnar_core.results import Prediction, TaskRisk, WhatIfResult
    from mmnar_core.schema import PatientRecord


__getattr__ = lazy_getattr(__name__, globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
