"""Work limits of one explanation (issue 18, case 2): a note longer than AttributionSettings.max_note_chars
is attributed on its first characters with a visible note, and every attribution pass (each of Captum's
internal batches ends in RiskHead) stops with Cancelled once its CancelToken is cancelled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mmnar_core.calibration.calibrated import CalibratedModel
from mmnar_core.cancel import Cancelled, CancelToken, cancel_scope
from mmnar_core.explain.attributions import AttributionError, AttributionSettings, RiskHead, attributed_part


def test_a_long_note_is_attributed_on_its_first_characters_with_a_note():
    limit = AttributionSettings().max_note_chars
    assert limit == 20_000
    short = "cough " * 100
    assert attributed_part(short, limit, "discharge_note") == (short, None)
    long = ("fever " * 40_000).encode()  # 240,000 characters, as bytes (an uploaded .txt)
    part, note = attributed_part(long, limit, "discharge_note")
    assert part == long.decode()[:limit]
    assert "240,000 characters" in note and "first 20,000" in note and "discharge_note" in note
    with pytest.raises(AttributionError, match="max_note_chars"):
        AttributionSettings(max_note_chars=0)


class CountingModel(nn.Module):
    """The fused model's interface: (inputs, availability) -> (B, T) logits; counts its forwards."""

    def __init__(self, token: CancelToken, cancel_after: int):
        super().__init__()
        self.linear = nn.Linear(4, 1)
        self.calls, self.token, self.cancel_after = 0, token, cancel_after

    def forward(self, inputs, availability):
        self.calls += 1
        if self.calls == self.cancel_after:
            self.token.cancel("the client went away")
        return self.linear(inputs[0])


def head_with(model: nn.Module) -> RiskHead:
    """The model through a calibrated map with temperature 1 and no site correction."""
    calibrated = CalibratedModel(model, ["task"], [1.0], {}, n_modalities=1)
    return RiskHead(calibrated, [torch.zeros(1, 4)], np.ones(1, dtype=bool))


def test_captum_stops_at_the_next_internal_batch_once_cancelled():
    from captum.attr import IntegratedGradients

    token = CancelToken()
    model = CountingModel(token, cancel_after=3)
    head = head_with(model)
    ig = IntegratedGradients(lambda v: head({0: v}))
    with cancel_scope(token), pytest.raises(Cancelled, match="client went away"):
        ig.attribute(torch.ones(1, 4), baselines=torch.zeros(1, 4), target=0, n_steps=64, internal_batch_size=4)
    assert model.calls == 3  # 16 internal batches planned; the 4th never ran
    with cancel_scope(None):  # outside a cancelled scope the same head runs to its end
        attr = IntegratedGradients(lambda v: head({0: v})).attribute(
            torch.ones(1, 4), baselines=torch.zeros(1, 4), target=0, n_steps=8, internal_batch_size=4
        )
    assert np.isfinite(attr.detach().numpy()).all()
