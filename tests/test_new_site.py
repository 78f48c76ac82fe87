"""A new site: unseen categories counted in embed and evaluate, evaluate refuses embeddings from other
encoders with the exact command, the predictor opens categories its encoder can take, and eICU splits by
hospital (hand-made blocks, a tiny eICU fixture in the published format, and the real eICU demo)."""

import hashlib
import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mmnar_core.dataset import load_dataset
from mmnar_core.encoders.config import TabularEncoderConfig
from mmnar_core.encoders.embed import embed_dataset
from mmnar_core.encoders.errors import TabularInputError
from mmnar_core.encoders.tabular import TabularEncoder
from mmnar_core.evaluation.new_site import EmbeddingMismatchError, load_bundle_embeddings, unknown_category_counts
from mmnar_core.evaluation.report import unknown_categories_markdown
from mmnar_core.loaders.eicu import build as build_eicu
from mmnar_core.loaders.site_split import SiteSplitError, assert_site_disjoint, hospital_blocks, split_by_hospital
from mmnar_core.loaders.tables import LoaderError
from mmnar_core.schema import FeatureSpec

from support.tiny_dataset import write_tiny

AGE = FeatureSpec("age", "numeric", "structured", unit="years", valid_range=(18, 110))
SEX_FEMALE_ONLY = FeatureSpec("sex", "categorical", "structured", categories=("female",))


@pytest.fixture
def tiny(tmp_path):
    return load_dataset(write_tiny(tmp_path / "tiny"))  # p1 male (train), p2 female (val), p3 female (test)


def bundle_like(tmp_path, mode="unknown"):
    """A bundle's encoder layout (encoders/<id>/tabular_state.json) fitted on a site that never saw 'male'."""
    encoder = TabularEncoder([AGE, SEX_FEMALE_ONLY], TabularEncoderConfig(unknown_category=mode))
    encoder.fit(pd.DataFrame({"age": [50.0, 60.0], "sex": ["female", "female"]}))
    state = encoder.save(tmp_path / "bundle" / "encoders" / "tabular-x" / "tabular_state.json")
    return SimpleNamespace(
        root=tmp_path / "bundle", encoders={"structured": {"kind": "tabular", "encoder_id": "tabular-x"}}
    ), state


# ----------------------------------------------------------------------------- unseen categories
def test_embed_with_a_foreign_state_counts_unseen_values_and_encodes_them_as_unknown(tiny, tmp_path):
    _, state = bundle_like(tmp_path)
    report = embed_dataset(tiny, tmp_path / "cache", progress=False, tabular_states={"structured": state})
    assert report.unknown_categories == {"structured": {"sex": {"male": 1}}}  # p1 is the only male
    from mmnar_core.encoders.cache import load_embeddings

    vectors = load_embeddings(tiny, tmp_path / "cache").vectors["structured"]
    # age, age:missing, sex=female, sex=<unknown>, sex=<missing>: p1 (male) -> <unknown>, p2 -> female
    np.testing.assert_array_equal(vectors[:, 2:5], [[0, 1, 0], [1, 0, 0], [1, 0, 0]])
    again = embed_dataset(tiny, tmp_path / "cache", progress=False, tabular_states={"structured": state})
    assert (
        again.computed["structured"] == 0 and again.unknown_categories == report.unknown_categories
    )  # cached rows count too


def test_embed_with_an_error_state_refuses_naming_every_unseen_value_and_writes_nothing(tiny, tmp_path):
    _, state = bundle_like(tmp_path, mode="error")
    with pytest.raises(TabularInputError, match=r"unknown_category='error'.*sex: 'male' x1"):
        embed_dataset(tiny, tmp_path / "cache", progress=False, tabular_states={"structured": state})
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))
    assert not (tmp_path / "cache" / "datasets").exists()


def test_embed_command_prints_the_counts(tiny, tmp_path, monkeypatch, capsys):
    from mmnar_core.encoders import command

    _, state = bundle_like(tmp_path)
    monkeypatch.setattr(command, "bundle_tabular_states", lambda bundle: {"structured": state})
    args = SimpleNamespace(
        dataset=str(tiny.root),
        cache=str(tmp_path / "cache"),
        from_bundle="BUNDLE",
        shard=None,
        device="cpu",
        no_images=True,
        no_text=True,
        image_embeddings=None,
        batch_size=8,
        quiet=True,
    )
    assert command.run(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["unknown_categories"] == {"structured": {"sex": {"male": 1}}}
    assert "structured: 1 value(s) of 1 feature(s) are not categories" in captured.err


def test_evaluate_refuses_embeddings_of_other_encoders_with_the_exact_command(tiny, tmp_path):
    bundle, state = bundle_like(tmp_path)
    with pytest.raises(EmbeddingMismatchError, match="has no cached embeddings") as info:
        load_bundle_embeddings(bundle, tiny, "B", tmp_path / "cache")
    assert f"python -m mmnar_core embed {tiny.root} --from-bundle B --cache {tmp_path / 'cache'}" in str(info.value)
    embed_dataset(tiny, tmp_path / "cache", progress=False)  # its own encoder, fitted on its own train split
    with pytest.raises(EmbeddingMismatchError, match="structured: cached tabular-[0-9a-f]+, bundle tabular-x") as info:
        load_bundle_embeddings(bundle, tiny, "B", tmp_path / "cache")
    assert str(info.value).endswith(
        f"python -m mmnar_core embed {tiny.root} --from-bundle B --cache {tmp_path / 'cache'}"
    )
    report = embed_dataset(tiny, tmp_path / "cache", progress=False, tabular_states={"structured": state})
    bundle.encoders["structured"]["encoder_id"] = report.encoders["structured"]["encoder_id"]
    state.parent.rename(state.parent.with_name(bundle.encoders["structured"]["encoder_id"]))
    assert load_bundle_embeddings(bundle, tiny, "B", tmp_path / "cache").vectors["structured"].shape == (3, 5)


def test_evaluate_counts_unseen_values_of_the_evaluated_rows_only(tiny, tmp_path):
    bundle, _ = bundle_like(tmp_path)
    assert unknown_category_counts(bundle, tiny) == {"structured": {"sex": {"male": 1}}}
    assert unknown_category_counts(bundle, tiny, np.array([1, 2])) == {"structured": {}}  # p2, p3: female
    section = "\n".join(unknown_categories_markdown({"structured": {"sex": {"male": 3, "x": 1}}}))
    assert "| structured | sex | 4 | 2 | `male` 3, `x` 1 |" in section
    assert "None: every categorical value" in "\n".join(unknown_categories_markdown({"structured": {}}))


def test_predictor_opens_only_categories_its_encoder_can_take():
    from mmnar_core.bundle import DatasetInfo
    from mmnar_core.model_info import _features
    from mmnar_core.predictor import _mark_open_categories

    sex = FeatureSpec("sex", "categorical", "structured", categories=("female", "male"))
    features = [AGE, sex]
    fit = pd.DataFrame({"age": [1.0], "sex": ["male"]})
    new = TabularEncoder(features).fit(fit)
    old = TabularEncoder(features, TabularEncoderConfig(unknown_category="error")).fit(fit)
    opened = _mark_open_categories(features, SimpleNamespace(tabular={"structured": new}))
    assert [f.accepts_unknown for f in opened] == [False, True]
    assert [
        f.accepts_unknown for f in _mark_open_categories(features, SimpleNamespace(tabular={"structured": old}))
    ] == [False, False]
    specs = _features(DatasetInfo(features=features), SimpleNamespace(features=opened))
    assert [f.accepts_unknown for f in specs] == [False, True]
    assert [FeatureSpec.from_dict(f.to_dict()).accepts_unknown for f in specs] == [False, True]  # GET /info keeps it


# ----------------------------------------------------------------------------- split by hospital
def test_hand_made_hospitals_fill_test_then_val_then_train():
    # 8 hospitals x 10 stays = 80: test takes hospitals until it holds >= 20 (2 hospitals), val until >= 12
    # (2 hospitals: 10 < 12), train the other 4; which ones: the documented hash order
    hospitals = [h for h in range(1, 9) for _ in range(10)]
    persons = [f"p{i}" for i in range(80)]
    splits, scheme = split_by_hospital(hospitals, persons, seed=3)
    order = sorted(
        map(str, range(1, 9)),
        key=lambda h: int.from_bytes(hashlib.sha256(f"3:hospital:{h}".encode()).digest()[:8], "big"),
    )
    assert scheme["hospitals"] == {
        "test": sorted(order[:2], key=int),
        "val": sorted(order[2:4], key=int),
        "train": sorted(order[4:], key=int),
    }
    assert scheme["stays"] == {"train": 40, "val": 20, "test": 20}
    assert pd.Series(splits).value_counts().to_dict() == {"train": 40, "val": 20, "test": 20}
    again, _ = split_by_hospital(list(reversed(hospitals)), list(reversed(persons)), seed=3)
    assert list(again) == list(reversed(splits))  # a hospital's split does not depend on row order
    assert any(
        split_by_hospital(hospitals, persons, seed=s)[1]["hospitals"] != scheme["hospitals"] for s in range(4, 8)
    )


def test_hospitals_sharing_a_patient_stay_together():
    hospitals = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]
    persons = ["a", "b", "c", "a", "d", "e", "f", "g", "h", "i", "j", "j"]  # a: hospitals 1 and 2
    assert hospital_blocks([str(h) for h in hospitals], persons) == {
        "1": ["1", "2"],
        "3": ["3"],
        "4": ["4"],
        "5": ["5"],
        "6": ["6"],
    }
    for seed in range(10):
        splits, scheme = split_by_hospital(hospitals, persons, seed=seed)
        assert splits[0] == splits[2] and scheme["linked_hospitals"] == [["1", "2"]]
        assert_site_disjoint(splits, np.array(hospitals), np.array(persons))


def test_bad_hospital_splits_are_specific_errors():
    with pytest.raises(AssertionError, match="hospital '1' is in more than one split"):
        assert_site_disjoint(np.array(["train", "test"]), np.array(["1", "1"]), np.array(["a", "b"]))
    with pytest.raises(AssertionError, match="person 'a'"):
        assert_site_disjoint(np.array(["train", "test"]), np.array(["1", "2"]), np.array(["a", "a"]))
    with pytest.raises(SiteSplitError, match="at least 3 separable hospitals; these stays have 2"):
        split_by_hospital([1, 2, 3], ["a", "b", "b"])
    for missing in (None, float("nan"), pd.NA):
        with pytest.raises(SiteSplitError, match="1 stay\\(s\\) have no hospital id"):
            split_by_hospital([1, missing, 3], ["a", "b", "c"])


PATIENT_COLUMNS = [
    "patientunitstayid",
    "patienthealthsystemstayid",
    "uniquepid",
    "gender",
    "age",
    "ethnicity",
    "hospitalid",
    "hospitaladmitoffset",
    "hospitaladmitsource",
    "hospitaldischargestatus",
    "unittype",
    "unitadmitsource",
    "unitvisitnumber",
    "unitstaytype",
    "admissionheight",
    "admissionweight",
    "unitdischargestatus",
]


def tiny_eicu(root: Path, hospitals: int = 6, per_hospital: int = 4, with_hospital: bool = True) -> Path:
    """patient.csv.gz in the published eICU 2.0 layout: `hospitals` x `per_hospital` stays; person 'P0'
    has a stay in hospital 1 and one in hospital 2."""
    rows = []
    for h in range(1, hospitals + 1):
        for k in range(per_hospital):
            stay = 1000 * h + k
            person = "P0" if (h, k) in ((1, 0), (2, 0)) else f"P{stay}"
            rows.append(
                [
                    stay,
                    stay,
                    person,
                    "Female" if k % 2 else "Male",
                    str(40 + k),
                    "Caucasian",
                    h,
                    -60,
                    "Emergency",
                    "Expired" if k == 0 else "Alive",
                    "MICU",
                    "Emergency Department",
                    1,
                    "admit",
                    170,
                    80,
                    "Alive",
                ]
            )
    frame = pd.DataFrame(rows, columns=PATIENT_COLUMNS)
    root.mkdir(parents=True, exist_ok=True)
    (frame if with_hospital else frame.drop(columns="hospitalid")).to_csv(root / "patient.csv.gz", index=False)
    return root


def build_quietly(*args, **kwargs) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # absent tables are expected here
        return build_eicu(*args, progress=False, **kwargs)


def test_tiny_eicu_fixture_split_by_hospital(tmp_path):
    root = tiny_eicu(tmp_path / "eicu")
    dataset = load_dataset(build_quietly(root, tmp_path / "ds", split_by="hospital", seed=1))
    p = dataset.patients
    assert p.groupby("hospitalid")["split"].nunique().max() == 1 and p.groupby("group_id")["split"].nunique().max() == 1
    assert (
        p.loc[p["group_id"] == "P0", "hospitalid"].tolist() == [1, 2]
        and p.loc[p["group_id"] == "P0", "split"].nunique() == 1
    )
    scheme = dataset.manifest.provenance["split"]
    # 24 stays: test until >= 6 (2 blocks of 4, or the 8-stay block 1+2), val until >= 3.6
    assert scheme["by"] == "hospital" and scheme["linked_hospitals"] == [["1", "2"]]
    assert scheme["stays"] == {s: int((p["split"] == s).sum()) for s in ("train", "val", "test")}
    assert 6 <= scheme["stays"]["test"] <= 8 and 4 <= scheme["stays"]["val"] <= 8
    again = load_dataset(build_quietly(root, tmp_path / "ds2", split_by="hospital", seed=1))
    assert (
        again.patients["split"].tolist() == p["split"].tolist()
        and again.manifest.content_hash == dataset.manifest.content_hash
    )
    by_person = load_dataset(build_quietly(root, tmp_path / "ds3"))
    assert by_person.manifest.provenance["split"]["by"] == "patient"


def test_tiny_eicu_fixture_split_errors_change_nothing(tmp_path):
    with pytest.raises(LoaderError, match="hospitalid.*--split-by hospital"):
        build_quietly(tiny_eicu(tmp_path / "nohosp", with_hospital=False), tmp_path / "ds", split_by="hospital")
    with pytest.raises(SiteSplitError, match="at least 3"):
        build_quietly(tiny_eicu(tmp_path / "two", hospitals=2), tmp_path / "ds", split_by="hospital")
    with pytest.raises(ValueError, match="split_by 'ward'"):
        build_quietly(tiny_eicu(tmp_path / "eicu"), tmp_path / "ds", split_by="ward")
    assert not (tmp_path / "ds").exists()


@pytest.fixture(scope="module")
def eicu_by_hospital(shared_data, tmp_path_factory):
    return load_dataset(
        build_quietly(shared_data / "eicu-demo", tmp_path_factory.mktemp("eicu") / "ds", split_by="hospital")
    )


def test_real_eicu_demo_split_by_hospital(eicu_by_hospital, shared_data):
    dataset = eicu_by_hospital
    raw = pd.read_csv(
        shared_data / "eicu-demo" / "patient.csv.gz", usecols=["patientunitstayid", "uniquepid", "hospitalid"]
    )
    raw = raw.set_index(raw["patientunitstayid"].astype(str))
    p = dataset.patients
    hospital, person = p["patient_id"].map(raw["hospitalid"]), p["patient_id"].map(raw["uniquepid"])
    assert (hospital == p["hospitalid"]).all() and (person == p["group_id"]).all()
    assert p.groupby(hospital)["split"].nunique().max() == 1 and p.groupby(person)["split"].nunique().max() == 1
    n, largest = len(p), raw["hospitalid"].value_counts().max()
    share = p["split"].value_counts() / n
    assert 0.25 <= share["test"] <= 0.25 + 2 * largest / n and 0.15 <= share["val"] <= 0.15 + 2 * largest / n
    scheme = dataset.manifest.provenance["split"]
    assert sum(len(v) for v in scheme["hospitals"].values()) == raw["hospitalid"].nunique()
    assert {s: set(map(int, ids)) for s, ids in scheme["hospitals"].items()} == {
        s: set(p.loc[p["split"] == s, "hospitalid"]) for s in ("train", "val", "test")
    }
    splits, again = split_by_hospital(raw.loc[p["patient_id"], "hospitalid"].tolist(), person.tolist(), seed=0)
    assert list(splits) == p["split"].tolist() and again == scheme  # deterministic
    test = p[p["split"] == "test"]
    assert test["ref_apache_iva_hospital_mortality"].between(0, 1).sum() > 100  # APACHE IVa kept on the test stays


def _category_page():
    import streamlit as st

    from mmnar_app.patient_form import _category_input
    from mmnar_core.schema import FeatureSpec

    for name, open_ in (("disposition", True), ("sex", False)):
        _category_input(
            st,
            FeatureSpec(
                name, "categorical", "structured", description=name, categories=("home", "snf"), accepts_unknown=open_
            ),
        )


def test_the_form_keeps_an_unseen_value_with_a_visible_note_only_where_the_model_takes_it():
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_function(_category_page)
    app.session_state["patient_gen"] = 0
    # as a file upload leaves it: the new generation's values, given to its widgets as their defaults
    app.session_state["form_values"] = {"feat_disposition": "hospice"}
    app.run()
    assert not app.exception
    assert [box.value for box in app.selectbox] == ["hospice", app.selectbox[1].options[0]]
    assert [c.value for c in app.caption] == [
        "'hospice' is not a category the model was trained on; treated as unknown"
    ]
    app.selectbox[0].select("home").run()
    assert not app.caption
