"""Out-of-distribution warnings (issue 16, item 2) on a hand-made cohort whose training ranges can be computed
by hand: 101 training patients with creatinine 0.0, 0.1, ..., 10.0 mg/dL, X-ray and note embeddings drawn
around one direction each, small noisy X-ray images; the test patients carry a planted creatinine of
50 mg/dL that a check fitted on more than the training split would take into its range."""

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mmnar_core.dataset import DatasetWriter, Manifest, load_dataset
from mmnar_core.encoders.cache import EmbeddingCache, EmbeddingSet, write_index
from mmnar_core.ood import (
    FILES,
    JSON_FILE,
    TENSOR_FILE,
    DistributionCheck,
    DistributionCheckError,
    DistributionReport,
)
from mmnar_core.schema import FeatureSpec, ModalityKind, ModalitySpec, OutcomeSpec

N_TRAIN, N_TEST, DIM = 101, 39, 8
ENCODERS = {
    "structured": {"encoder_id": "tabular-test", "kind": "tabular", "dim": 3},
    "cxr": {"encoder_id": "image-test", "kind": "image", "dim": DIM},
    "note": {"encoder_id": "text-test", "kind": "text", "dim": DIM},
}


def xray(seed: int, size: tuple[int, int] = (48, 48)) -> np.ndarray:
    """A small noisy 'X-ray' like the training ones: two dark fields on a grey body, grain everywhere."""
    rng = np.random.default_rng(seed)
    height, width = size
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = 0.6 - 0.3 * (
        np.exp(-((x - 0.3) ** 2 + (y - 0.5) ** 2) / 0.03) + np.exp(-((x - 0.7) ** 2 + (y - 0.5) ** 2) / 0.03)
    )
    return np.clip(image + rng.normal(0, 0.06, image.shape), 0, 1).astype(np.float32)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def around(direction: int, n: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.normal(0, 0.15, (n, DIM))
    vectors[:, direction] += 1.0
    return vectors.astype(np.float32)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("ood")
    n = N_TRAIN + N_TEST
    ids = [f"p{i:03d}" for i in range(n)]
    train = np.arange(n) < N_TRAIN
    has_cxr = ~train | (np.arange(n) % 2 == 0)
    creatinine = np.where(train, np.arange(n) / 10, 50.0)  # the test split's planted value
    sex = np.where(np.arange(n) % 2 == 0, "female", "male")
    manifest = Manifest(
        name="ood-fixture",
        modalities=[
            ModalitySpec("structured", ModalityKind.TABULAR),
            ModalitySpec("cxr", ModalityKind.IMAGE),
            ModalitySpec("note", ModalityKind.TEXT),
        ],
        features=[
            FeatureSpec("creatinine", "numeric", "structured", unit="mg/dL", description="Creatinine (last)"),
            FeatureSpec("sex", "categorical", "structured", categories=("female", "male")),
        ],
        outcomes=[OutcomeSpec("death", "In-hospital death", "died before discharge")],
        provenance={"source": "hand-made test fixture"},
    )
    patients = pd.DataFrame(
        {
            "patient_id": ids,
            "group_id": ids,
            "split": np.where(train, "train", "test"),
            "avail_structured": True,
            "avail_cxr": has_cxr,
            "avail_note": True,
            "label_death": pd.array([i % 3 == 0 for i in range(n)], dtype="Int8"),
        }
    )
    structured = pd.DataFrame({"patient_id": ids, "creatinine": creatinine, "sex": sex})
    text = pd.DataFrame({"patient_id": ids, "note": [f"Note of patient {i}." for i in range(n)]})
    with DatasetWriter(root / "data") as writer:
        images = pd.DataFrame(
            [
                {"patient_id": pid, "modality": "cxr", "path": writer.write_bytes(f"images/{pid}.png", png(xray(i)))}
                for i, pid in enumerate(ids)
                if has_cxr[i]
            ]
        )
        writer.finish(manifest, patients, structured, text, images)
    dataset = load_dataset(root / "data")
    rng = np.random.default_rng(0)
    vectors = {
        "structured": np.stack([creatinine / 5 - 1, (sex == "male").astype(float), rng.normal(0, 1, n)], 1).astype(
            np.float32
        ),
        "cxr": around(0, n, rng) * has_cxr[:, None],
        "note": around(1, n, rng),
    }
    present = {"structured": np.ones(n, bool), "cxr": has_cxr, "note": np.ones(n, bool)}
    embeddings = EmbeddingSet(np.array(ids), vectors, present, ENCODERS, root / "cache")
    check = DistributionCheck().fit(dataset, embeddings)
    return {"root": root, "dataset": dataset, "embeddings": embeddings, "check": check}


def patient(cohort, row: int) -> tuple[dict, dict, dict]:
    """(structured values, embeddings, images) of one fixture patient, as the predictor would pass them."""
    dataset, embeddings = cohort["dataset"], cohort["embeddings"]
    values = {f: dataset.structured[f].iloc[row] for f in ("creatinine", "sex")}
    vectors = {m: embeddings.vectors[m][row] for m in ENCODERS if embeddings.present[m][row]}
    images = {"cxr": xray(row)} if embeddings.present["cxr"][row] else {}
    return values, vectors, images


def test_reference_ranges_are_the_training_quantiles(cohort):
    check = cohort["check"]
    found = check.feature_range("creatinine")
    expected = {"min": 0.0, "p1": 0.1, "p2.5": 0.25, "p50": 5.0, "p97.5": 9.75, "p99": 9.9, "max": 10.0}
    assert found.quantiles == pytest.approx(expected)  # the test split's 50 mg/dL is in none of them
    assert found.n == N_TRAIN and found.unit == "mg/dL"
    # left out in turn, the patients with creatinine 0.0 and 10.0 would fall outside: 2 of 101
    assert check.fits_["structured"].range_false_alarms == pytest.approx(2 / N_TRAIN)
    low, high, unit = check.reference_range("creatinine")
    assert (low, high, unit) == (pytest.approx(0.25), pytest.approx(9.75), "mg/dL")
    assert check.reference_range("sex") is None
    assert check.feature_range("sex").categories == {"female": 51, "male": 50}
    with pytest.raises(KeyError, match="lactate"):
        check.reference_range("lactate")


def test_an_out_of_range_value_is_named_with_its_training_range(cohort):
    check = cohort["check"]
    _, vectors, _ = patient(cohort, 10)
    report = check.check({"creatinine": 14.2, "sex": "female"}, vectors)
    structured = report.modality("structured")
    assert report.flagged and structured.flagged
    assert [f.feature for f in structured.findings] == ["creatinine"]
    assert structured.findings[0].problem == "above"
    assert "Creatinine: 14.2 mg/dL is above every training value (0-10 mg/dL)" in structured.reasons
    unseen = check.check({"creatinine": 9.9, "sex": "other"}, vectors).modality("structured")
    assert [(f.feature, f.problem) for f in unseen.findings] == [("sex", "unseen_category")]
    inside = check.check({"creatinine": 9.9, "sex": "female"}, vectors).modality("structured")
    assert inside.findings == [] and not inside.detectors[0].flagged


def test_a_planted_far_embedding_is_flagged_and_a_training_one_is_not(cohort):
    check = cohort["check"]
    values, vectors, images = patient(cohort, 4)  # a training patient with every modality
    assert not check.check(values, vectors, images).flagged
    far = dict(vectors, note=np.eye(DIM, dtype=np.float32)[5])
    report = check.check(values, far, images)
    note = report.modality("note")
    assert report.flagged and report.flagged_modalities == ["note"]
    assert note.score > note.threshold and note.percentile == 100.0
    assert note.reasons == [
        "The note looks unlike the training notes to the model's encoder: more unusual than every training note."
    ]
    assert "the note" in report.summary


def test_the_threshold_flags_about_one_percent_of_fresh_patients_like_the_training_ones(cohort):
    check = cohort["check"]
    fresh = around(1, 2000, np.random.default_rng(7))
    flagged = np.mean([check.check({}, {"note": v}).flagged for v in fresh])
    assert flagged <= 0.05  # level 0.99 on 101 leave-one-out scores; a median threshold would flag half


def test_an_xray_unlike_the_training_pictures_is_flagged_by_its_image_statistics(cohort):
    check = cohort["check"]
    _, vectors, _ = patient(cohort, 4)
    smooth = np.tile(np.linspace(0, 1, 96, dtype=np.float32), (40, 1))  # no grain, wide, a plain ramp
    report = check.check({}, {"cxr": vectors["cxr"]}, {"cxr": png(smooth)})  # bytes are decoded
    cxr = report.modality("cxr")
    by_name = {d.detector: d for d in cxr.detectors}
    assert by_name["image_statistics"].flagged and not by_name["embedding"].flagged and cxr.flagged
    assert cxr.reasons[0].startswith("The picture of the X-ray differs from the training X-rays")
    assert "shape (width / height)" in cxr.reasons[0] or "grain" in cxr.reasons[0]
    same = check.check({}, {"cxr": vectors["cxr"]}, {"cxr": xray(4)}).modality("cxr")
    assert not same.flagged


def test_reports_and_checks_round_trip_through_dicts_files_and_a_bundle(cohort, tmp_path):
    from mmnar_core.bundle import load_bundle

    check = cohort["check"]
    values, vectors, images = patient(cohort, 120)  # a test patient: creatinine 50 is out of range
    report = check.check(values, vectors, images)
    data = json.loads(json.dumps(report.to_dict()))
    assert DistributionReport.from_dict(data).to_dict() == report.to_dict()
    assert report.modality("structured").findings[0].value == 50.0
    files = check.to_files()
    assert set(files) == set(FILES) and sum(len(b) for b in files.values()) < 200_000
    assert DistributionCheck.from_files(files).check(values, vectors, images).to_dict() == report.to_dict()
    bundle = load_bundle(tiny_bundle(tmp_path / "b", "x", files))
    loaded = DistributionCheck.from_bundle(bundle)
    assert loaded is not None and loaded.check(values, vectors, images).to_dict() == report.to_dict()
    assert DistributionCheck.from_bundle(load_bundle(tiny_bundle(tmp_path / "plain", "x", {}))) is None
    other = {**ENCODERS, "note": {**ENCODERS["note"], "encoder_id": "text-other"}}
    with pytest.raises(DistributionCheckError, match="text-other"):
        DistributionCheck.from_bundle(load_bundle(tiny_bundle(tmp_path / "other", "x", files, other)))


def test_bad_files_are_refused_with_the_file_named(cohort):
    from safetensors.numpy import load, save

    files = cohort["check"].to_files()
    document = json.loads(files[JSON_FILE])
    tensors = load(files[TENSOR_FILE])

    def refused(changed: dict, match: str) -> None:
        with pytest.raises(DistributionCheckError, match=match):
            DistributionCheck.from_files({**files, **changed})

    refused({JSON_FILE: b"{not json"}, f"{JSON_FILE}: not valid JSON")
    refused({JSON_FILE: json.dumps({**document, "format": "other/9"}).encode()}, "format 'other/9'")
    refused({TENSOR_FILE: b"\x80\x04pickle"}, f"{TENSOR_FILE}: not a valid safetensors")
    shrunk = {**tensors, "note.embedding.reference": tensors["note.embedding.reference"][:, :3].copy()}
    refused({TENSOR_FILE: save(shrunk)}, "note.embedding.reference.*shape")
    broken = json.loads(files[JSON_FILE])
    broken["modalities"][2]["scales"]["embedding"]["quantiles"][5] = 99.0  # no longer non-decreasing
    refused({JSON_FILE: json.dumps(broken).encode()}, "non-decreasing")
    with pytest.raises(DistributionCheckError, match=f"{TENSOR_FILE}: missing"):
        DistributionCheck.from_files({JSON_FILE: files[JSON_FILE]})


def test_the_command_adds_the_check_to_a_copy_of_the_bundle_and_refuses_other_data(cohort, tmp_path, capsys):
    from mmnar_core.bundle import load_bundle
    from mmnar_core.cli import main

    dataset, embeddings = cohort["dataset"], cohort["embeddings"]
    cache = tmp_path / "cache"
    rows = []
    for modality, info in ENCODERS.items():
        store = EmbeddingCache(cache, info["encoder_id"], info["dim"], {"kind": info["kind"]})
        present = np.flatnonzero(embeddings.present[modality])
        keys = [f"{modality}-{i}" for i in present]
        store.put(keys, embeddings.vectors[modality][present])
        store.flush()
        rows += [
            {"patient_id": embeddings.patient_ids[i], "modality": modality, "key": k} for i, k in zip(present, keys)
        ]
    write_index(cache, dataset.manifest.content_hash, pd.DataFrame(rows), ENCODERS)
    source = tiny_bundle(tmp_path / "b", dataset.manifest.content_hash, {})
    wrong = tiny_bundle(tmp_path / "w", "0" * 64, {})
    out = tmp_path / "with-check"
    assert main(["distribution-check", str(wrong), str(dataset.root), "--out", str(out), "--cache", str(cache)]) == 2
    assert "is not the dataset the bundle was trained on" in capsys.readouterr().err and not out.exists()
    assert main(["distribution-check", str(source), str(dataset.root), "--out", str(out), "--cache", str(cache)]) == 0
    copy = load_bundle(out)
    assert set(FILES) <= set(copy.files) and copy.read_bytes("weights.safetensors") == load_bundle(source).read_bytes(
        "weights.safetensors"
    )
    values, vectors, images = patient(cohort, 120)
    assert (
        DistributionCheck.from_bundle(copy).check(values, vectors, images).to_dict()
        == cohort["check"].check(values, vectors, images).to_dict()
    )


def tiny_bundle(out, content_hash: str, extra: dict, encoders: dict | None = None):
    from mmnar_core.bundle import save_bundle
    from mmnar_core.calibration import PatternRectifier, TemperatureScaler
    from mmnar_core.model import MMNARConfig, MMNARModel

    torch.manual_seed(0)
    config = MMNARConfig(
        modalities=list(ENCODERS), input_dims=[3, DIM, DIM], tasks=["death"], d_model=16, n_heads=2, n_layers=1
    )
    rng = np.random.default_rng(0)
    rectifier = PatternRectifier(3).fit(
        rng.integers(1, 8, 500), rng.uniform(0.1, 0.5, 500), (rng.random(500) < 0.3).astype(float), "val"
    )
    return save_bundle(
        out,
        MMNARModel(config).eval(),
        TemperatureScaler([1.0]),
        {"death": rectifier},
        {"name": "ood-fixture", "content_hash": content_hash},
        encoders or ENCODERS,
        {},
        "# card\n",
        extra_files=extra,
    )


@pytest.mark.slow
def test_training_writes_the_check_and_the_predictor_path_feeds_it(tmp_path):
    """synth -> embed -> train with the real encoders: the bundle carries the check, fitted on its training
    split, and a patient encoded by the Predictor is checked; a real-looking change (a note in another
    language, creatinine far above the cohort's) is flagged."""
    from mmnar_core.dataset import load_dataset
    from mmnar_core.predictor import Predictor

    from support.bundles import build_synthetic_bundle

    tiny = {"epochs": 2, "d_model": 32, "n_heads": 2, "n_layers": 1, "batch_size": 32, "pretrain_epochs": 1}
    root = build_synthetic_bundle(tmp_path, n=120, seed=3, config=tiny, resamples=20)
    predictor = Predictor.load(root / "bundle", device="cpu")
    check = DistributionCheck.from_bundle(predictor.bundle)
    assert check is not None and check.trained_on_["n_train"] == predictor.bundle.dataset["split_counts"]["train"]
    dataset = load_dataset(root / "data")
    record = dataset.record(dataset.patients["patient_id"].iloc[dataset.split_indices("train")[0]])
    assert not check.check_record(record, predictor.encode(record)).modality("structured").findings
    record.structured["creatinine"] = 80.0
    record.texts["discharge_note"] = "Le patient est rentré chez lui. Aucun problème. " * 20
    report = check.check_record(record, predictor.encode(record))
    assert report.modality("structured").findings[0].feature == "creatinine"
    assert report.modality("discharge_note").flagged


def test_numbers_read_as_on_a_chart():
    from mmnar_core.ood.words import in_sentence, number

    assert [number(v) for v in (0.3, 4.789, 70.0, 35000.0, 0.000854, -0.444, 0.0)] == [
        "0.3",
        "4.79",
        "70",
        "35,000",
        "0.000854",
        "-0.444",
        "0",
    ]
    assert (in_sentence("Length of the index stay"), in_sentence("NT-proBNP")) == (
        "length of the index stay",
        "NT-proBNP",
    )


def test_grey_levels_count_the_distinct_rounded_levels():
    from mmnar_core.ood.image_stats import NAMES, image_statistics

    # 0, 0.7/255 (rounds up to level 1), 1.6/255 (rounds to 2) and 1.0: four levels; truncating instead of
    # rounding would give three (0, 0, 1, 255)
    pixels = np.array([[0.0, 0.7 / 255, 1.6 / 255, 1.0]] * 4, dtype=np.float64)
    assert image_statistics(pixels)[NAMES.index("levels")] == pytest.approx(4 / 256)
