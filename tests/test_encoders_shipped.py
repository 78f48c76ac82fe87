"""The shipped demo image encoder: present, small, loadable, and its embedding separates the findings
the simulator draws (checked on a fresh small cohort, cross-validated)."""

import pytest

from mmnar_core.encoders.command import SHIPPED_IMAGE_WEIGHTS
from mmnar_core.encoders.image_backbone import ImageEmbedder, load_image_encoder, read_weights


def test_shipped_weights_are_small_and_self_describing():
    assert SHIPPED_IMAGE_WEIGHTS.is_file(), "mmnar_core/resources/encoders must ship the demo image encoder"
    assert SHIPPED_IMAGE_WEIGHTS.stat().st_size < 8 * 2**20
    _, metadata = read_weights(SHIPPED_IMAGE_WEIGHTS)
    assert "synthetic" in metadata["info"] and metadata["format"] == "mmnar-image-encoder/1"
    encoder = load_image_encoder(SHIPPED_IMAGE_WEIGHTS)
    assert encoder.config.arch == "mobilenet_v3_small" and encoder.embed_dim == 256


@pytest.mark.slow
def test_shipped_encoder_separates_synthetic_findings(tmp_path):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mmnar_core.cli import main
    from mmnar_core.dataset import load_dataset

    assert (
        main(["synth", "--n", "500", "--seed", "123", "--out", str(tmp_path / "cohort"), "--workers", "1", "--quiet"])
        == 0
    )
    dataset = load_dataset(tmp_path / "cohort")
    latent = pd.read_parquet(dataset.root / "truth" / "latent.parquet")
    rows = dataset.images.merge(latent, on="patient_id")
    vectors = ImageEmbedder(load_image_encoder(SHIPPED_IMAGE_WEIGHTS)).embed([dataset.root / p for p in rows["path"]])
    assert len(rows) > 150
    for finding in ("finding_opacity", "finding_effusion", "finding_cardiomegaly"):
        y = rows[finding].to_numpy(dtype=int)
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        scores = cross_val_predict(model, vectors, y, cv=5, method="predict_proba")[:, 1]
        assert roc_auc_score(y, scores) > 0.9, finding
