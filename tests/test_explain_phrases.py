"""Note phrases (mmnar_core.explain.phrases), their assertion (mmnar_core.explain.negation) and phrase occlusion
(mmnar_core.explain.note_occlusion): every outcome's risk change when one phrase is deleted, from forward passes."""

import numpy as np
import pytest
import torch

from mmnar_core.encoders.text_clean import clean_note
from mmnar_core.explain.negation import AFFIRMED, HEDGED, NEGATED, assertion_of, negated_mask
from mmnar_core.explain.phrases import split_phrases, token_phrase

NOTE = (
    "Chief Complaint:\n"
    "Fevers and chills\n"
    "Brief Hospital Course:\n"
    "# Severe sepsis from a pulmonary source: treated with vancomycin and cefepime.\n"
    "# Dyspnea: BNP not elevated, no signs of volume overload. Sepsis was ruled out. Dr. Smith saw him.\n"
    "FINDINGS:\n"
    "No large pleural effusion. Possible mild cardiomegaly; small effusion not excluded. No change in the "
    "heart size.\n"
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("No large pleural effusion", NEGATED),
        ("no evidence of pneumonia", NEGATED),
        ("sepsis was ruled out", NEGATED),
        ("Patient denies chest pain", NEGATED),
        ("The lungs are clear without focal airspace consolidation", NEGATED),
        ("negative for influenza", NEGATED),
        ("Severe sepsis from a pulmonary source", AFFIRMED),
        ("Heart size is enlarged", AFFIRMED),
        ("No change in the heart size", AFFIRMED),  # pseudo-negation
        ("small effusion not excluded", HEDGED),  # not a negation
        ("Possible mild cardiomegaly", HEDGED),
        ("cannot exclude pneumonia", HEDGED),
        ("heart failure was felt unlikely", HEDGED),
        ("pneumonia was not ruled out", HEDGED),
        ("No", AFFIRMED),  # a cue alone negates nothing
    ],
)
def test_assertion_of_planted_phrases(text, expected):
    assert assertion_of(text)[0] == expected


def test_negation_scope_ends_at_a_termination_term():
    text = "no fever but productive cough"
    words = [(0, 2), (3, 8), (9, 12), (13, 23), (24, 29)]
    assert negated_mask(text, words) == [True, True, False, False, False]


def test_assertion_matches_the_synthetic_ground_truth():
    """The simulator's truth labels every signal phrase affirmed / negated / hedged; the rules must agree on
    the plain negations and affirmations it writes (its 'normal' / 'unremarkable' phrases are negated
    concepts without a negation cue, so they are left out)."""
    cases = {
        "no evidence of pneumonia": NEGATED,
        "sepsis was ruled out": NEGATED,
        "No pleural effusion": NEGATED,
        "without effusion": NEGATED,
        "No focal airspace opacity to suggest pneumonia": NEGATED,
        "no focal consolidation or suspicious pulmonary opacity": NEGATED,
        "no signs of volume overload": NEGATED,
        "Acute on chronic systolic heart failure": AFFIRMED,
        "Severe sepsis from a pulmonary source": AFFIRMED,
        "possible aspiration pneumonitis": HEDGED,
        "density in the right lower lobe, cannot exclude pneumonia": HEDGED,
        "Possible trace right pleural effusion": HEDGED,
    }
    assert {t: assertion_of(t)[0] for t in cases} == cases


def test_phrases_partition_the_note_and_keep_negation_inside():
    text = clean_note(NOTE)
    phrases = split_phrases(text)
    shown = [p.text.replace("\n", " / ") for p in phrases]
    assert "Chief Complaint: / Fevers and chills" in shown  # a label alone on its line opens the next phrase
    assert (
        "Brief Hospital Course: / # Severe sepsis from a pulmonary source: treated with vancomycin and cefepime"
        in shown
    )
    assert "Dyspnea: BNP not elevated" in shown and "no signs of volume overload" in shown
    assert "Sepsis was ruled out" in shown
    assert "Dr. Smith saw him" in shown  # no cut after an abbreviation
    assert "FINDINGS: / No large pleural effusion" in shown
    by_text = {p.text.replace("\n", " / "): p for p in phrases}
    assert by_text["FINDINGS: / No large pleural effusion"].assertion == NEGATED
    assert by_text["no signs of volume overload"].assertion == NEGATED
    assert by_text["Sepsis was ruled out"].assertion == NEGATED
    assert by_text["Possible mild cardiomegaly"].assertion == HEDGED
    assert by_text["No change in the heart size"].assertion == AFFIRMED
    # parts are contiguous, in order, and cover every word character of the note
    covered = np.zeros(len(text), bool)
    for a, b in zip(phrases, phrases[1:]):
        assert a.part[1] <= b.part[0]
    for p in phrases:
        covered[p.part[0] : p.part[1]] = True
        assert p.part[0] <= p.span[0] <= p.span[1] <= p.part[1]
        assert text[p.span[0] : p.span[1]] == p.text
    assert all(covered[i] for i, c in enumerate(text) if c.isalnum())
    offsets = [(m.start(), m.end()) for m in __import__("re").finditer(r"\w+|[^\w\s]", text)]
    owner = token_phrase(phrases, offsets)
    assert all(o >= 0 for (a, _), o in zip(offsets, owner) if text[a].isalnum())
    assert owner == sorted(owner)


# ----------------------------------------------------------------------------- occlusion, with the text model
@pytest.mark.slow
def test_phrase_occlusion_equals_deleting_the_phrase_and_reencoding():
    """Each phrase's effect equals the risk of the note re-encoded (TextEncoder.forward, the encoder's own
    path) with that phrase's tokens deleted from every window, for every output column at once; the
    planted head reads one direction of the embedding, so a phrase that moves it must move the risk."""
    from mmnar_core.encoders.text_encoder import TextEmbedder, Windows
    from mmnar_core.explain.note_occlusion import occlude_phrases
    from mmnar_core.explain.text_spans import token_offsets

    embedder = TextEmbedder()
    encoder = embedder.encoder.eval()
    text = clean_note(NOTE * 12)  # long enough for several overlapping windows
    windows = embedder.windower([text])
    assert windows.input_ids.shape[0] >= 3
    phrases = split_phrases(text)
    owner = np.asarray(token_phrase(phrases, token_offsets(embedder.tokenizer, text)))
    direction = torch.randn(encoder.dim, 3, generator=torch.Generator().manual_seed(0))

    def head(embedding):
        return torch.sigmoid(4 * embedding @ direction)

    occlusion = occlude_phrases(encoder, windows, owner, len(phrases), head, embedder.tokenizer.pad_token_id, False, 5)
    with torch.no_grad():
        full = head(encoder(windows))[0].numpy()
    np.testing.assert_allclose(occlusion.value, full, atol=2e-6)
    slot_phrase = np.where(windows.positions >= 0, owner[windows.positions.clamp_min(0)], -1)
    for p in (0, 7, len(phrases) // 2, len(phrases) - 1):
        keep = [
            (windows.attention_mask[w] > 0) & torch.from_numpy(slot_phrase[w] != p) for w in range(len(slot_phrase))
        ]
        length = max(int(k.sum()) for k in keep)
        ids = torch.zeros((len(keep), length), dtype=torch.long)
        mask = torch.zeros_like(ids)
        weights = torch.zeros((len(keep), length))
        for w, k in enumerate(keep):
            n = int(k.sum())
            ids[w, :n], mask[w, :n], weights[w, :n] = windows.input_ids[w, k], 1, windows.weights[w, k]
        deleted = Windows(ids, mask, weights, torch.zeros_like(ids), windows.owner, 1, windows.n_tokens)
        with torch.no_grad():
            expected = full - head(encoder(deleted))[0].numpy()
        np.testing.assert_allclose(occlusion.effects[p], expected, atol=2e-6)
        assert np.abs(expected).max() > 1e-5  # the planted head sees every phrase
    # every phrase was occluded, each window pass counted
    assert occlusion.effects.shape == (len(phrases), 3)
    assert occlusion.n_passes >= len(phrases) + 2 * windows.input_ids.shape[0]
