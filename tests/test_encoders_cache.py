"""Embedding cache and the `embed` command: hit, miss, invalidation on encoder change, resume after an
interruption, what training reads, precomputed image embeddings."""

import json

import numpy as np
import pandas as pd
import pytest

from mmnar_core.dataset import load_dataset
from mmnar_core.encoders.cache import EmbeddingCache, content_key, load_embeddings
from mmnar_core.encoders.config import TextEncoderConfig
from mmnar_core.encoders.embed import embed_dataset
from mmnar_core.encoders.image_backbone import save_image_encoder
from mmnar_core.encoders.text_encoder import TextEmbedder

from support.encoders import tiny_image, tiny_text
from support.tiny_dataset import write_tiny


@pytest.fixture()
def tiny(tmp_path):
    return load_dataset(write_tiny(tmp_path / "tiny"))


def test_cache_put_get_flush_reload(tmp_path):
    cache = EmbeddingCache(tmp_path, "enc-a", 3, shard_size=2)
    cache.put(["k1"], np.array([[1, 2, 3]]))
    assert "k1" in cache and not list(cache.dir.glob("shard-*"))  # buffered, not yet written
    cache.put(["k2"], np.array([[4, 5, 6]]))  # reaches shard_size: one shard written
    assert len(list(cache.dir.glob("shard-*.safetensors"))) == 1
    again = EmbeddingCache(tmp_path, "enc-a", 3)
    np.testing.assert_array_equal(again.get(["k2", "k1"]), [[4, 5, 6], [1, 2, 3]])
    assert again.missing(["k1", "k3", "k3"]) == ["k3"]
    with pytest.raises(KeyError):
        again.get(["k3"])
    with pytest.raises(ValueError, match="non-finite"):
        again.put(["k4"], np.array([[np.nan, 0, 0]]))
    with pytest.raises(ValueError, match="differs"):
        EmbeddingCache(tmp_path, "enc-a", 4)
    assert content_key("text", "a") != content_key("image", "a")  # kinds never collide


def test_embed_miss_then_hit_and_training_view(tiny, tmp_path):
    cache = tmp_path / "cache"
    first = embed_dataset(tiny, cache, tiny_image(0), tiny_text(0), progress=False)
    assert first.computed == {"structured": 3, "cxr": 1, "note": 2}  # p1 and p3 share one PNG: one vector
    assert first.reused == {"structured": 0, "cxr": 0, "note": 0}
    second = embed_dataset(tiny, cache, tiny_image(0), tiny_text(0), progress=False)
    assert second.computed == {"structured": 0, "cxr": 0, "note": 0}
    assert second.reused == first.computed
    view = load_embeddings(tiny, cache)
    np.testing.assert_array_equal(view.present["cxr"], [True, False, True])
    np.testing.assert_array_equal(view.present["note"], [False, True, True])
    assert view.vectors["note"].shape == (3, 16) and not view.vectors["note"][0].any()  # absent -> zeros
    expected = tiny_text(0).embed(["Discharged home.", "No effusion."])
    np.testing.assert_allclose(view.vectors["note"][1:], expected, atol=1e-6)
    np.testing.assert_array_equal(view.vectors["cxr"][0], view.vectors["cxr"][2])  # same bytes, same vector
    # tabular: fit on the train split only (p1, age 40): centre 40, state saved beside the vectors
    state = json.loads(view.tabular_state_path("structured").read_text())
    assert state["center"] == {"age": 40.0} and state["fit_info"]["split"] == "train"
    from mmnar_core.encoders.tabular import TabularEncoder

    refit = TabularEncoder.load(view.tabular_state_path("structured"))
    np.testing.assert_array_equal(refit.transform(tiny.structured), view.vectors["structured"])


def test_changed_encoder_invalidates(tiny, tmp_path):
    cache = tmp_path / "cache"
    base = embed_dataset(tiny, cache, tiny_image(0), tiny_text(0), progress=False)
    changed = embed_dataset(tiny, cache, tiny_image(1), tiny_text(1), progress=False)
    assert changed.computed == {"structured": 0, "cxr": 1, "note": 2}
    assert changed.encoders["note"]["encoder_id"] != base.encoders["note"]["encoder_id"]
    assert changed.encoders["cxr"]["encoder_id"] != base.encoders["cxr"]["encoder_id"]
    window = TextEmbedder(
        TextEncoderConfig(window_tokens=32, overlap_tokens=8),
        tokenizer=tiny_text(0).tokenizer,
        model=tiny_text(0).encoder.model,
    )
    assert window.id != tiny_text(0).id  # preprocessing (window size) is part of the identity too
    view = load_embeddings(tiny, cache)  # the index points at the latest encoders
    np.testing.assert_allclose(view.vectors["note"][2], tiny_text(1).embed(["No effusion."])[0], atol=1e-6)


def test_resume_after_interruption(tmp_path):
    """Kill the run after the first stored batch; the re-run computes only what is missing."""
    from mmnar_core.dataset import DatasetWriter

    from support.tiny_dataset import tiny_manifest

    n = 7
    ids = [f"p{i}" for i in range(n)]
    patients = pd.DataFrame(
        {
            "patient_id": ids,
            "group_id": ids,
            "split": ["train"] * 5 + ["val", "test"],
            "avail_structured": True,
            "avail_cxr": False,
            "avail_note": True,
            "label_death": pd.array([0] * n, dtype="Int8"),
        }
    )
    structured = pd.DataFrame({"patient_id": ids, "age": np.arange(n) * 10.0, "sex": "male"})
    text = pd.DataFrame({"patient_id": ids, "note": [f"Note number {i}: stable." for i in range(n)]})
    with DatasetWriter(tmp_path / "ds") as writer:
        dataset = load_dataset(
            writer.finish(
                tiny_manifest(), patients, structured, text, pd.DataFrame(columns=["patient_id", "modality", "path"])
            )
        )

    class Interrupted(Exception):
        pass

    def stop(modality, count):
        raise Interrupted

    embedder = tiny_text(0)
    with pytest.raises(Interrupted):
        embed_dataset(dataset, tmp_path / "cache", None, embedder, batch_size=4, progress=False, on_batch=stop)
    resumed = embed_dataset(dataset, tmp_path / "cache", None, embedder, batch_size=4, progress=False)
    assert resumed.reused["note"] == 2 and resumed.computed["note"] == 5  # batch of 4 // 2 = 2 notes survived
    np.testing.assert_allclose(
        load_embeddings(dataset, tmp_path / "cache").vectors["note"], embedder.embed(text["note"].tolist()), atol=1e-6
    )


def test_missing_index_is_a_clear_error(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m mmnar_core embed"):
        load_embeddings(tiny, tmp_path / "empty-cache")


def test_precomputed_image_embeddings(tiny, tmp_path):
    table = tmp_path / "image_embeddings.parquet"
    pd.DataFrame({"path": ["images/p1.png", "images/p3.png"], "embedding": [[1.0, 2.0], [3.0, 4.0]]}).to_parquet(table)
    report = embed_dataset(tiny, tmp_path / "cache", None, None, precomputed_images=table, progress=False)
    assert report.encoders["cxr"]["kind"] == "precomputed"
    view = load_embeddings(tiny, tmp_path / "cache")
    np.testing.assert_array_equal(view.vectors["cxr"], [[1, 2], [0, 0], [3, 4]])
    pd.DataFrame({"path": ["images/p1.png"], "embedding": [[1.0, 2.0]]}).to_parquet(table)
    with pytest.raises(Exception, match="no embedding for path 'images/p3.png'"):
        embed_dataset(tiny, tmp_path / "cache", None, None, precomputed_images=table, progress=False)


def test_embed_command_end_to_end(tiny, tmp_path, capsys):
    from mmnar_core.cli import main

    weights = save_image_encoder(tiny_image(0).encoder, tmp_path / "img.safetensors")
    cache = tmp_path / "cache"
    argv = ["embed", str(tiny.root), "--cache", str(cache), "--image-encoder", str(weights), "--no-text", "--quiet"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["computed"] == {"structured": 3, "cxr": 1} and out["device"] == "cpu"
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["reused"] == {"structured": 3, "cxr": 1}
    # a broken image in the dataset: one-line error naming the patient, exit code 2
    (tiny.root / "images" / "p3.png").write_bytes(b"")
    assert (
        main(
            [
                "embed",
                str(tiny.root),
                "--cache",
                str(tmp_path / "c2"),
                "--image-encoder",
                str(weights),
                "--no-text",
                "--quiet",
            ]
        )
        == 2
    )
    assert "empty" in capsys.readouterr().err


def test_partial_run_keeps_other_modalities_in_the_index(tiny, tmp_path):
    cache = tmp_path / "cache"
    embed_dataset(tiny, cache, tiny_image(0), tiny_text(0), progress=False)
    images_only = embed_dataset(tiny, cache, tiny_image(1), None, progress=False)  # like --no-text
    assert set(images_only.encoders) == {"structured", "cxr", "note"}
    view = load_embeddings(tiny, cache)
    np.testing.assert_allclose(view.vectors["note"][2], tiny_text(0).embed(["No effusion."])[0], atol=1e-6)
    np.testing.assert_allclose(view.vectors["cxr"][0], tiny_image(1).embed([tiny.root / "images/p1.png"])[0], atol=1e-6)
