"""Demo image-encoder training: the InfoNCE formula by hand, and a tiny end-to-end run."""

import json
import math

import pytest
import torch

from mmnar_core.encoders.image_train import info_nce


def test_info_nce_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # normalised: (1, 0) and (0.7071, 0.7071)
    t = 0.5
    s = [[1.0, math.sqrt(0.5)], [0.0, math.sqrt(0.5)]]  # s_ik = cos(a_i, b_k)

    def term(row, i):  # -log exp(s_ii / t) / sum_k exp(s_ik / t)
        return -(row[i] / t - math.log(sum(math.exp(v / t) for v in row)))

    a_to_b = (term(s[0], 0) + term(s[1], 1)) / 2
    columns = [[s[0][0], s[1][0]], [s[0][1], s[1][1]]]
    b_to_a = (term(columns[0], 0) + term(columns[1], 1)) / 2
    assert float(info_nce(a, b, t)) == pytest.approx((a_to_b + b_to_a) / 2, rel=1e-6)
    # perfectly aligned, well separated pairs cost almost nothing
    assert float(info_nce(torch.eye(4), torch.eye(4), 0.01)) < 1e-6


@pytest.mark.slow
def test_tiny_training_run_saves_a_loadable_encoder(tmp_path):
    from mmnar_core.cli import main
    from mmnar_core.encoders.image_backbone import load_image_encoder, read_weights

    assert (
        main(["synth", "--n", "200", "--seed", "5", "--out", str(tmp_path / "cohort"), "--workers", "1", "--quiet"])
        == 0
    )
    out = tmp_path / "enc.safetensors"
    assert (
        main(
            [
                "train-image-encoder",
                str(tmp_path / "cohort"),
                "--out",
                str(out),
                "--epochs",
                "1",
                "--input-size",
                "32",
                "--embed-dim",
                "16",
            ]
        )
        == 0
    )
    encoder = load_image_encoder(out)
    assert encoder.config.input_size == 32 and encoder.embed_dim == 16
    info = json.loads(read_weights(out)[1]["info"])
    assert info["train_images"] > 0 and "InfoNCE" in info["objective"] and info["best"]["epoch"] == 1
