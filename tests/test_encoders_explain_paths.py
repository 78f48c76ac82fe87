"""The differentiable end-to-end paths run under Captum: pixels -> embedding and tokens -> embedding."""

import numpy as np
import pytest
import torch

from mmnar_core.encoders.image_backbone import ImagePipeline
from mmnar_core.encoders.text_encoder import NoteForward

from support.encoders import tiny_image, tiny_text


def test_integrated_gradients_on_raw_pixels_is_complete():
    from captum.attr import IntegratedGradients, LayerGradCam

    pipeline = ImagePipeline(tiny_image(0).encoder).eval()
    pixels = torch.rand(1, 1, 40, 30)
    baseline = torch.zeros_like(pixels)
    ig = IntegratedGradients(pipeline)
    attributions, delta = ig.attribute(pixels, baselines=baseline, target=3, n_steps=64, return_convergence_delta=True)
    assert attributions.shape == pixels.shape
    with torch.no_grad():
        gap = float(pipeline(pixels)[0, 3] - pipeline(baseline)[0, 3])
    # completeness: attributions sum to f(x) - f(baseline), up to the integration error Captum reports
    assert float(attributions.sum()) == pytest.approx(gap, abs=abs(float(delta)) + 1e-4)
    cam = LayerGradCam(pipeline, pipeline.encoder.gradcam_layer).attribute(pixels, target=3)
    assert cam.shape[0] == 1 and cam.shape[1] == 1


def test_layer_integrated_gradients_on_token_embeddings():
    from captum.attr import LayerIntegratedGradients

    embedder = tiny_text(0)
    note = "Large right pleural effusion. " * 12  # several 64-token windows
    windows = embedder.windower([embedder.clean(note)])
    assert len(windows.owner) > 1
    forward = NoteForward(embedder.encoder, windows.input_ids.shape[1]).eval()
    ids, mask, weights = NoteForward.flatten(windows)
    with torch.no_grad():  # the flattened path gives exactly the embedder's vector
        np.testing.assert_allclose(forward(ids, mask, weights)[0].numpy(), embedder.embed([note])[0], atol=1e-6)
    pad = torch.full_like(ids, embedder.tokenizer.pad_token_id)
    lig = LayerIntegratedGradients(forward, embedder.encoder.model.get_input_embeddings())
    attributions, delta = lig.attribute(
        ids, baselines=pad, additional_forward_args=(mask, weights), target=0, n_steps=32, return_convergence_delta=True
    )
    assert attributions.shape == (*ids.shape, 16)
    slot_scores = attributions.sum(-1)[0]
    tokens = NoteForward.token_scores(windows, slot_scores)
    assert tokens.shape == (windows.n_tokens[0],)
    # folding onto tokens keeps the content part of the total; specials and padding hold the rest
    content = slot_scores.reshape(windows.positions.shape)[windows.positions >= 0].sum()
    assert float(tokens.sum()) == pytest.approx(float(content), rel=1e-5, abs=1e-6)
    assert abs(float(delta)) < 0.05
