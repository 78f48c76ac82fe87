"""Post-hoc corrections fit on held-out labelled data: temperature scaling and the pattern rectifier."""

from mmnar_core.calibration.rectifier import PatternRectifier, RectifierError
from mmnar_core.calibration.temperature import TemperatureScaler

__all__ = ["PatternRectifier", "RectifierError", "TemperatureScaler"]
