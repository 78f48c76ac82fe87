"""The MMNAR model: pure nn.Modules and their config. Training is in mmnar_core.training."""

from mmnar_core.model.config import MMNARConfig
from mmnar_core.model.fusion import MMNARFusion, pattern_ids
from mmnar_core.model.network import MMNARModel

__all__ = ["MMNARConfig", "MMNARFusion", "MMNARModel", "pattern_ids"]
