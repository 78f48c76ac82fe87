"""MMNARConfig: every hyperparameter of the model and of its training, with its default, in one place.

Saved as config.json in the bundle, so a bundle rebuilds exactly the network it was trained as.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mmnar_core.patterns import MAX_MODALITIES


@dataclass
class MMNARConfig:
    # data: what the model sees and predicts (filled from the dataset and its embeddings)
    modalities: list[str] = field(default_factory=list)
    input_dims: list[int] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)

    # architecture
    d_model: int = 64  # per member; 4 members of 64 cost about what one 128-wide, 2-layer network did
    n_heads: int = 4
    n_layers: int = 1
    ff_mult: int = 2
    dropout: float = 0.1
    missingness_hidden: int = 32
    use_gating: bool = True
    use_pattern_embedding: bool = True
    n_members: int = 4  # fusion members trained side by side and averaged (a deep ensemble in one module)
    use_wide: bool = True  # a linear path from the standardised inputs and availability flags to the logits
    wide_init: str = "logistic"  # "logistic": start from a tuned L2 logistic regression (C on val); "zero"
    wide_trainable: bool = False  # keep the tuned logistic regression fixed; the members learn the rest
    wide_bins: int = 16  # quantile bins per structured feature in the wide path (a GAM); 0: linear only
    wide_binned: list[str] = field(default_factory=list)  # modalities the wide path bins (the dataset's tabular ones)
    # the GAM start is fit with the image/note embeddings' columns multiplied by each of these scales and
    # validation log loss picks one per task: a scale s penalises those weights 1/s^2 times the structured
    # ones (1,000 noisy embedding dimensions need a stronger penalty than 50 lab values; docs/model.md);
    # scale 1 (one penalty for all, the reference's design) is always tried; 0 leaves the embeddings out
    wide_content_scales: list[float] = field(default_factory=lambda: [1.0, 0.3, 0.1])
    # a scale below 1 is used only when its validation log loss beats scale 1 by more than this many paired SEs
    wide_scale_gate_se: float = 1.0
    # up to this many pairwise interactions of structured features per task join the GAM (a GA2M): the pairs
    # are ranked by a score test at the GAM's fit on train and kept only when validation says so (docs/model.md);
    # none without binned structured modalities (wide_bins 0 or no tabular modality)
    wide_pairs: int = 16
    # quantile bins per feature of a pair (a pair has wide_pair_bins**2 columns); at most 6: the ranking's
    # information matrix grows with its fourth power (256 features at 6 bins: 0.7 GB)
    wide_pair_bins: int = 4
    # the pairs are used only when their validation log loss beats the GAM's by more than this many paired SEs
    # (two, as the rectifier's levels: thousands of pairs were ranked on train before validation sees the top)
    wide_pair_gate_se: float = 2.0
    # read from older config files only: true adds scale 0 to wide_content_scales (docs/model.md)
    wide_choose_content: bool = False
    unseen_pattern_rate: float = 0.05  # share of training rows shown the "unseen pattern" token instead of theirs

    # auxiliary objectives (hide one observed modality, reconstruct it, align by InfoNCE)
    use_reconstruction: bool = True
    use_contrastive: bool = True
    temperature: float = 0.1
    contrastive_weight: float = 0.5  # relative to the reconstruction MSE inside the auxiliary loss
    aux_weight: float = 0.3  # weight of the auxiliary loss in stage 2 at the first epoch
    aux_final_fraction: float = 0.3  # the weight decays linearly to aux_weight * this by the last epoch
    pretrain_epochs: int = 0  # stage 1: auxiliary losses only
    # share of the eligible rows (>= 2 modalities) given the auxiliary terms at each stage-2 step
    aux_fraction: float = 1.0

    # task loss
    task_loss: str = "bce"  # "bce" or "focal"
    focal_gamma: float = 2.0
    class_weighting: bool = False  # BCE pos_weight = negatives / positives on train
    modality_dropout: float = 0.0  # baseline only: drop observed modalities at random (the MAR assumption)

    # optimisation
    # the cosine schedule spans exactly `epochs` (plus pretraining), so a run that goes the distance ends
    # annealed; early stopping (patience) only cuts a run that has stopped improving for that long
    epochs: int = 12
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-2
    warmup_fraction: float = 0.05  # of all optimisation steps; the schedule is stepped per batch
    grad_clip: float = 1.0
    patience: int = 5  # early stopping on the validation split only
    plateau_patience: int = 2  # epochs without a better val loss before the best weights return at a lower rate
    plateau_factor: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.modalities) != len(self.input_dims):
            raise ValueError("config: modalities and input_dims must have the same length")
        if len(self.modalities) > MAX_MODALITIES:
            raise ValueError(f"config: at most {MAX_MODALITIES} modalities")
        if self.d_model % self.n_heads:
            raise ValueError(f"config: d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.task_loss not in ("bce", "focal"):
            raise ValueError(f"config: task_loss {self.task_loss!r} is not accepted (accepted: bce, focal)")
        if not 0 < self.temperature:
            raise ValueError("config: temperature must be positive")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError("config: modality_dropout must be in [0, 1)")
        if self.wide_init not in ("logistic", "zero"):
            raise ValueError(f"config: wide_init {self.wide_init!r} is not accepted (accepted: logistic, zero)")
        if self.wide_bins < 0 or self.wide_bins == 1:
            raise ValueError(f"config: wide_bins must be 0 (linear only) or >= 2 (got {self.wide_bins})")
        if not self.wide_content_scales or any(
            not (isinstance(s, (int, float)) and not isinstance(s, bool) and 0.0 <= s <= 1.0)
            for s in self.wide_content_scales
        ):
            raise ValueError(
                "config: wide_content_scales must be a non-empty list of numbers in [0, 1] "
                f"(got {self.wide_content_scales!r})"
            )
        if self.wide_choose_content:  # the older switch for scale 0
            self.wide_content_scales = sorted({*self.wide_content_scales, 0.0}, reverse=True)
            self.wide_choose_content = False
        for name in ("wide_scale_gate_se", "wide_pair_gate_se"):
            gate = getattr(self, name)
            if isinstance(gate, bool) or not (isinstance(gate, (int, float)) and 0.0 <= gate < math.inf):
                raise ValueError(f"config: {name} must be a number >= 0 (got {gate!r})")
        for name, low, high in (("wide_pairs", 0, 256), ("wide_pair_bins", 1, 6)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"config: {name} must be a whole number from {low} to {high} (got {value!r})")
        stray = [m for m in self.wide_binned if m not in self.modalities]
        if stray:
            raise ValueError(
                f"config: wide_binned names modality(ies) {stray} that are not in modalities {self.modalities}"
            )
        if not 0.0 <= self.unseen_pattern_rate < 1.0:
            raise ValueError("config: unseen_pattern_rate must be in [0, 1)")
        if self.n_members < 1:
            raise ValueError(f"config: n_members must be >= 1 (got {self.n_members})")
        if self.epochs < 1:
            raise ValueError(
                f"config: epochs must be >= 1 (got {self.epochs}): the model is chosen on the "
                "validation loss of a stage-2 epoch"
            )
        if not 0.0 < self.aux_fraction <= 1.0:
            raise ValueError(f"config: aux_fraction must be in (0, 1] (got {self.aux_fraction})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"config: dropout must be in [0, 1) (got {self.dropout})")
        if self.pretrain_epochs < 0:
            raise ValueError(f"config: pretrain_epochs must be >= 0 (got {self.pretrain_epochs})")
        if self.pretrain_epochs and not (self.use_reconstruction or self.use_contrastive):
            raise ValueError(
                "config: pretrain_epochs > 0 trains on the auxiliary losses only, but both are off "
                "(use_reconstruction and use_contrastive are false): set pretrain_epochs to 0 or "
                "turn one of them on"
            )
        if self.patience < 1 or self.batch_size < 1 or self.plateau_patience < 1:
            raise ValueError("config: patience, plateau_patience and batch_size must be >= 1")
        if not 0.0 < self.plateau_factor <= 1.0:
            raise ValueError("config: plateau_factor must be in (0, 1] (1 turns plateau steps off)")

    @property
    def n_modalities(self) -> int:
        return len(self.modalities)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMNARConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config: unknown field(s) {unknown} (accepted: {sorted(known)})")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path) -> MMNARConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: invalid JSON at line {error.lineno}: {error.msg}") from None
        return cls.from_dict(data)
