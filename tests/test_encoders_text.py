"""Note cleaner, overlapping-window chunking and pooling, and the MiniLM text encoder."""

import numpy as np
import pandas as pd
import pytest
import torch

from mmnar_core.encoders.config import TextCleanerConfig, TextEncoderConfig
from mmnar_core.encoders.errors import (
    EmptyTextError,
    EncoderStateError,
    TextEncodingError,
    TextInputError,
    TextTooLongError,
)
from mmnar_core.encoders.text_clean import clean_note
from mmnar_core.encoders.text_encoder import TextEmbedder, default_model_path, window_starts

FILLER = (
    "The patient was admitted with shortness of breath and treated with diuretics. "
    "Vital signs remained stable overnight and oxygen was weaned to room air. "
)


@pytest.fixture(scope="module")
def embedder():
    return TextEmbedder()


# ---- cleaner ------------------------------------------------------------------------------------------


def test_cleaner_exact_output():
    raw = (
        " \r\nName:  ___                     Unit No:   ___\r\n \r\n"
        "Admission Date:  ___              Discharge Date:   ___\n"
        "Service: MEDICINE\n\n"
        "Chief Complaint:\tDyspnea\x07\n"
        "Seen by Dr. [**First Name (Titles) 123**] [**Last Name (Titles) **] on [**2150-1-2**].\n"
        "=========\n"
        "There are no XXXX of a pleural effusion. Heart size normal.\n"
        "Attending: ___.\n"
        "Electronically signed by Dr. Someone on 2150-01-03\n"
    )
    assert clean_note(raw) == (
        "Service: MEDICINE\n"
        "Chief Complaint: Dyspnea\n"
        "Seen by Dr. ___ on ___.\n"
        "There are no ___ of a pleural effusion. Heart size normal."
    )


def test_cleaner_keeps_header_when_asked_and_custom_placeholder():
    config = TextCleanerConfig(placeholder="[deid]", drop_header=False, drop_signatures=False)
    assert (
        clean_note("Name: ___\nNo acute process.\nDictated by ___", config)
        == "Name: [deid]\nNo acute process.\nDictated by [deid]"
    )


def test_cleaner_keeps_clinical_negations_and_hedges():
    text = "No pneumothorax.\nPossible early right lower lobe pneumonia, cannot exclude aspiration."
    assert clean_note(text) == text


def test_non_utf8_bytes():
    with pytest.raises(TextEncodingError, match=r"byte 4 \(0xe9\) is not valid UTF-8.*accepted: UTF-8"):
        clean_note("caf\u00e9 ok".encode("latin-1").replace(b"caf", b"cafe"))
    assert clean_note("caf\u00e9 ok".encode("utf-8")) == "caf\u00e9 ok"


@pytest.mark.parametrize("raw", ["", "   \n\t ", "Name: ___\nUnit No: ___", "[**Known lastname 1**] ___ XXXX"])
def test_empty_notes(raw):
    with pytest.raises(EmptyTextError, match="empty after cleaning"):
        clean_note(raw)


def test_one_megabyte_note():
    with pytest.raises(TextTooLongError, match="1,048,576 characters is longer than the limit of 200,000"):
        clean_note("a" * 2**20)


def test_wrong_type_note():
    with pytest.raises(TextInputError, match="expected text"):
        clean_note(3.5)


# ---- chunking -----------------------------------------------------------------------------------------


def test_window_starts_hand_computed():
    assert window_starts(3, 4, 1) == [0]
    assert window_starts(4, 4, 1) == [0]
    assert window_starts(10, 4, 1) == [0, 3, 6]  # stride 3; 6 + 4 reaches the end
    assert window_starts(11, 4, 1) == [0, 3, 6, 7]  # last window aligned to the end, no short tail
    assert window_starts(8, 4, 0) == [0, 4]


def test_long_note_chunking_covers_every_token(embedder):
    config = TextEncoderConfig(window_tokens=32, overlap_tokens=8)
    small = TextEmbedder(config, tokenizer=embedder.tokenizer, model=embedder.encoder.model)
    note = FILLER * 12
    windows = small.windower([note, "Short note."])
    n = windows.n_tokens[0]
    assert n > 300
    full_ids = embedder.tokenizer(note, add_special_tokens=False)["input_ids"]
    first = windows.owner == 0
    seen = np.zeros(n, dtype=int)
    for w in np.flatnonzero(first.numpy()):
        positions = windows.positions[w][windows.attention_mask[w].bool()]
        ids = windows.input_ids[w][windows.attention_mask[w].bool()]
        assert len(ids) <= 32
        assert ids[0] == embedder.tokenizer.cls_token_id and ids[-1] == embedder.tokenizer.sep_token_id
        content = positions[positions >= 0]
        assert torch.equal(ids[1:-1], torch.tensor(full_ids)[content])  # the right tokens in the right slots
        seen[content.numpy()] += 1
    assert seen.min() >= 1  # every token is seen by a window
    # pooling weights count every token once: content tokens sum to n, the two special slots to 2
    assert float(windows.weights[first].sum()) == pytest.approx(n + 2, abs=1e-4)
    assert float(windows.weights[windows.owner == 1].sum()) == pytest.approx(windows.n_tokens[1] + 2)


def test_overlap_config_checked():
    with pytest.raises(EncoderStateError, match="overlap_tokens"):
        TextEncoderConfig(window_tokens=32, overlap_tokens=20)


# ---- encoder ------------------------------------------------------------------------------------------


def test_short_notes_equal_sentence_transformers(embedder):
    from sentence_transformers import SentenceTransformer

    notes = ["No acute cardiopulmonary process.", "Small left pleural effusion. Heart size mildly enlarged."]
    reference = SentenceTransformer(default_model_path(), device="cpu").encode(notes)
    np.testing.assert_allclose(embedder.embed_clean(notes), reference, atol=1e-5)


def test_long_note_pooling_matches_hand_computation(embedder):
    """Independent reference: run each window alone, average each token's vectors over the windows that
    saw it, average the [CLS] and [SEP] vectors over windows, then mean over n + 2 slots."""
    config = TextEncoderConfig(window_tokens=32, overlap_tokens=8, batch_windows=3)
    small = TextEmbedder(config, tokenizer=embedder.tokenizer, model=embedder.encoder.model)
    note = FILLER * 3
    ids = embedder.tokenizer(note, add_special_tokens=False)["input_ids"]
    n, content = len(ids), 30
    sums, counts = np.zeros((n, 384)), np.zeros(n)
    cls_sep = np.zeros((2, 384))
    starts = window_starts(n, content, 8)
    with torch.no_grad():
        for start in starts:
            chunk = [embedder.tokenizer.cls_token_id, *ids[start : start + content], embedder.tokenizer.sep_token_id]
            states = embedder.encoder.model(input_ids=torch.tensor([chunk])).last_hidden_state[0].numpy()
            sums[start : start + len(chunk) - 2] += states[1:-1]
            counts[start : start + len(chunk) - 2] += 1
            cls_sep += states[[0, -1]] / len(starts)
    pooled = ((sums / counts[:, None]).sum(0) + cls_sep.sum(0)) / (n + 2)
    expected = pooled / np.linalg.norm(pooled)
    np.testing.assert_allclose(small.embed([note])[0], expected, atol=1e-5)


def test_no_silent_truncation(embedder):
    base = FILLER * 20  # well past one 256-token window
    a, b = embedder.embed([base + "Large right pleural effusion.", base + "Lungs are clear."])
    assert np.abs(a - b).max() > 1e-3  # the last sentence, past token 256, changes the vector


def test_determinism_and_batch_independence(embedder):
    notes = [FILLER * 8, "Mild cardiomegaly.", FILLER]
    first = embedder.embed(notes)
    np.testing.assert_array_equal(first, embedder.embed(notes))
    np.testing.assert_allclose(embedder.embed(notes[:1])[0], first[0], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)


def test_text_path_is_differentiable(embedder):
    windows = embedder.windower(["Right lower lobe opacity."])
    encoder = embedder.encoder
    word_embeddings = encoder.model.get_input_embeddings()
    captured = {}
    handle = word_embeddings.register_forward_hook(lambda m, i, o: captured.setdefault("out", o.retain_grad() or o))
    try:
        with torch.enable_grad():
            encoder(windows).sum().backward()
    finally:
        handle.remove()
        encoder.model.zero_grad(set_to_none=True)
    grad = captured["out"].grad
    assert grad is not None and grad.shape[:2] == windows.input_ids.shape and grad.abs().sum() > 0


def test_model_folder_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        TextEmbedder(TextEncoderConfig(model_path=str(tmp_path / "no-model")))


@pytest.mark.slow
def test_real_iu_reports_encode(embedder, shared_data):
    reports = pd.read_csv(shared_data / "iu-xray-reports" / "indiana_reports.csv")
    text = (reports["findings"].fillna("") + "\n" + reports["impression"].fillna("")).str.strip()
    sample = text[text.str.len() > 0].iloc[::40].tolist()
    assert len(sample) >= 90
    vectors = embedder.embed(sample)
    assert vectors.shape == (len(sample), 384) and np.isfinite(vectors).all()


@pytest.mark.slow
def test_real_covid_clinical_notes_encode(embedder, shared_data):
    metadata = pd.read_csv(shared_data / "covid-cxr-notes" / "metadata.csv")
    notes = metadata["clinical_notes"].dropna().drop_duplicates().iloc[::5].tolist()
    assert len(notes) >= 30
    vectors = embedder.embed(notes)
    assert vectors.shape == (len(notes), 384) and np.isfinite(vectors).all()
