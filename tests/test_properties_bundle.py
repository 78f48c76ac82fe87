"""Property tests of the bundle loader: a copy of a small bundle (built in a temporary folder from
mmnar_core/resources/demo_bundle, which is only read), changed in any way (bundle.json, bundle.sig, any file replaced or
spliced, files added; with bundle.json's hashes rebuilt so the loaders behind the hash check are reached) either
verifies and loads or is refused with a BundleError naming the file, never another exception."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mmnar_core.bundle import BundleError, load_bundle, verify_bundle
from mmnar_lab import fuzz_targets as ft

from support.property_budget import budget


@pytest.fixture(scope="module")
def context():
    context = ft._bundle_setup()
    yield context
    ft._bundle_teardown(context)


def test_the_small_bundle_verifies_signed_and_loads(context):
    index = verify_bundle(context["pristine"], trusted_keys=())
    assert len(index["signed_by"]) == 1 and "reference.safetensors" not in index["files"]
    assert load_bundle(context["pristine"], trusted_keys=()).rectifiers
    assert ft._bundle(context, bytes([1, 2])) == "refused"  # bundle.sig replaced by nothing: not JSON


FILES = len(ft.BUNDLE_KEEP) + 2
JSON_FILES = [i for i, name in enumerate(["bundle.json", "bundle.sig", *ft.BUNDLE_KEEP]) if name.endswith(".json")]


@st.composite
def mutations(draw):
    mode = draw(st.integers(0, len(ft.BUNDLE_MODES) - 1))
    which = draw(st.integers(0, FILES - 1))
    if ft.BUNDLE_MODES[mode] == "splice+rehash":
        payload = draw(st.binary(min_size=2, max_size=2)) + draw(
            st.one_of(
                st.binary(min_size=1, max_size=24),
                st.sampled_from([b"9999999", b"-1", b"null", b"\xff\xfe", b'"x"', b"[]", b"{}", b"1e999", b"0"]),
            )
        )
    else:
        payload = draw(
            st.one_of(
                st.binary(max_size=200),
                st.sampled_from(
                    [
                        b"",
                        b"{}",
                        b"[]",
                        b"null",
                        b'{"format_version": 1, "files": {}}',
                        b"\x80\x04K\x01.",
                        b"PK\x03\x04" + b"\x00" * 26,
                        b'{"format": "mmnar-bundle-signature", "signatures": []}',
                        json.dumps(
                            {
                                "format": "mmnar-bundle-signature",
                                "signatures": [{"key_id": "x", "public_key": "AAAA", "signature": "AAAA"}],
                            }
                        ).encode(),
                    ]
                ),
            )
        )
    return bytes([mode, which]) + payload


@st.composite
def json_edits(draw):
    """A JSON file of the bundle with one value replaced (a number, a string, a list, an object or null) at any
    depth, re-hashed: exercises config.json / calibration.json / dataset.json beyond a parse error."""
    which = draw(st.sampled_from(["config.json", "calibration.json", "encoders.json", "dataset.json", "metrics.json"]))
    return (
        which,
        draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=4)),
        draw(
            st.one_of(
                st.none(),
                st.booleans(),
                st.integers(-3, 10**7),
                st.floats(allow_nan=True),
                st.text(max_size=5),
                st.lists(st.integers(0, 3), max_size=3),
                st.just({}),
                st.just("drop"),
            )
        ),
    )


def _edit(document, path, value):
    node = document
    for depth, step in enumerate(path):
        keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
        if not keys:
            break
        key = keys[step % len(keys)]
        if depth == len(path) - 1 or not isinstance(node[key], (dict, list)):
            if value == "drop":
                del node[key]
            else:
                node[key] = value
            return document
        node = node[key]
    return document


@budget(60)
@given(data=mutations())
@example(data=bytes([1, ft.BUNDLE_KEEP.index("model_card.md") + 2]) + b"# card \xff\xfe")  # was UnicodeDecodeError
@example(data=bytes([4, ft.BUNDLE_KEEP.index("config.json") + 2]) + b"\x6a\x01" + b"9999999")  # huge sizes
@pytest.mark.slow
def test_any_changed_bundle_loads_or_raises_bundle_error(context, data):
    assert ft._bundle(context, data) in ("accepted", "refused")


@budget(40)
@given(edit=json_edits())
@example(edit=("config.json", [0], "drop"))  # a field missing -> still builds? then weights must fit
@example(edit=("calibration.json", [0], {}))  # temperature without temperatures: was a KeyError
@example(edit=("calibration.json", [1, 0, 0], 10**7))  # rectifier for 10,000,000 modalities: 2**n patterns
@pytest.mark.slow
def test_any_json_value_of_a_rehashed_bundle_loads_or_raises_bundle_error(context, edit):
    name, path, value = edit
    document = json.loads((context["pristine"] / name).read_text(encoding="utf-8"))
    content = json.dumps(_edit(document, path, value)).encode()
    index = (["bundle.json", "bundle.sig", *ft.BUNDLE_KEEP]).index(name)
    assert ft._bundle(context, bytes([1, index]) + content) in ("accepted", "refused")


@pytest.mark.parametrize(
    "name, change, words",
    [
        ("config.json", {"n_layers": 3_000_000}, "n_layers = 3,000,000 cannot fit weights.safetensors"),
        ("config.json", {"d_model": 256}, "does not fit config.json"),
        ("config.json", {"d_model": -4}, "d_model is -4, not a positive whole number"),
        ("config.json", {"d_model": "128"}, "config.json: TypeError"),
        ("config.json", {"tasks": ["a"]}, "does not fit config.json"),
        ("calibration.json", {"temperature": {}}, "calibration.json: not a valid calibration (KeyError"),
        ("calibration.json", {"temperature": {"temperatures": [1.0]}}, "3 positive temperatures"),
        ("calibration.json", {"rectifiers": {"icu_90d": {"n_modalities": 1000}}}, "is not for 4 modalities"),
        ("dataset.json", [], "dataset.json: a JSON list, not an object"),
    ],
)
def test_rehashed_bundle_files_that_do_not_fit_are_refused_naming_the_file(context, name, change, words):
    """Regressions: each used to raise KeyError / TypeError / RuntimeError (or allocate without bound) instead."""
    path = context["pristine"] / name
    document = json.loads(path.read_text(encoding="utf-8"))
    document = change if isinstance(change, list) else {**document, **change}
    index = (["bundle.json", "bundle.sig", *ft.BUNDLE_KEEP]).index(name)
    work = ft.mutate_bundle(context, bytes([1, index]) + json.dumps(document).encode())
    verify_bundle(work, trusted_keys=())  # the hashes agree: only the loader can notice
    with pytest.raises(BundleError, match=words.replace("(", r"\(")) as info:
        load_bundle(work, trusted_keys=())
    assert str(info.value).startswith(str(work / name.split()[0])) or "weights.safetensors" in str(info.value)


def test_a_model_card_that_is_not_utf8_is_a_bundle_error(context):
    work = ft.mutate_bundle(context, bytes([1, ft.BUNDLE_KEEP.index("model_card.md") + 2]) + b"# card \xff")
    with pytest.raises(BundleError, match=r"model_card.md: not UTF-8 text \(byte 7\)"):
        load_bundle(work, trusted_keys=())
    shutil.rmtree(work)
