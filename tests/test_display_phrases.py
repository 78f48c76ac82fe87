"""The note-phrase table (mmnar_app.display.phrase_rows): ranked by |change|, each phrase on one line and
shown whole up to PHRASE_CHARS (its cell wraps), a run-on paragraph cut with an ellipsis."""

from mmnar_app.display import PHRASE_CHARS, phrase_rows
from mmnar_core.explain.attributions import IGSummary, PhraseAttribution, TextAttribution


def _note(phrases: list[tuple[str, float]]) -> TextAttribution:
    attributed = [PhraseAttribution(t, 0, len(t), "affirmed", None, 3, {"icu_90d": e}) for t, e in phrases]
    summary = IGSummary({"icu_90d": 0.2}, {"icu_90d": 0.1}, {"icu_90d": 0.0})
    return TextAttribution(
        "discharge_note", "PhraseOcclusion", "risk", "deleted", 0, 30, 1, [], {}, summary, attributed
    )


def test_phrases_ranked_whole_and_a_run_on_paragraph_cut():
    long = "Small consolidation in right upper lobe and ground-glass opacities in both lower lobes were " * 2
    run_on = "word " * 100
    rows = phrase_rows(_note([("Uneventful stay", 0.001), (long, -0.03), (run_on, 0.02)]), "icu_90d", 3)
    assert [r["rank"] for r in rows] == ["1↓", "2↑", "3↑"]
    assert 120 < len(long.strip()) <= PHRASE_CHARS and rows[0]["phrase"] == " ".join(long.split())  # whole
    assert len(rows[1]["phrase"]) == PHRASE_CHARS and rows[1]["phrase"].endswith("…")
    assert rows[0]["change of the risk"] == "-3.0 pts" and rows[2]["stated as"] == "present"
