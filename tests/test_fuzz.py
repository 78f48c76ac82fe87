"""`python -m mmnar_core fuzz` (mmnar_lab.fuzz): a tiny-budget smoke of the coverage-guided run under atheris and
of the fallback engine, crash recording and replay, every target's seeds; and one regression test per parser bug
the fuzzing found (the bundle loader's are in test_properties_bundle.py, the server's 500s in
test_properties_server.py, RemoteService's structured-only 415 in test_serving_auth.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmnar_core.cli import main
from mmnar_core.inputs import (
    InputError,
    InputErrors,
    parse_fhir_bundle,
    parse_structured_form,
    parse_structured_json,
    read_image_upload,
)
from mmnar_lab import fuzz as fuzz_command
from mmnar_lab import fuzz_targets as ft
from mmnar_lab.dicom import dicom_bytes

FEATURES = ft.demo_features()


# ------------------------------------------------------------------------------------------------ the command
@pytest.mark.skipif(fuzz_command.atheris_problem() is not None, reason="atheris is not installed")
@pytest.mark.slow
def test_atheris_smoke_reports_executions_coverage_and_no_crash(tmp_path, capsys):
    report_path = tmp_path / "report.json"
    status = main(
        [
            "fuzz",
            "--seconds",
            "2",
            "--targets",
            "text_upload,structured_csv",
            "--crash-dir",
            str(tmp_path / "crashes"),
            "--json",
            str(report_path),
        ]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    report = json.loads(report_path.read_text())
    assert report["engine"] == "atheris" and [t["target"] for t in report["targets"]] == [
        "text_upload",
        "structured_csv",
    ]
    for target in report["targets"]:
        assert target["exit_status"] == 0 and target["crashes"] == 0
        assert target["libfuzzer_runs"] > 100 and target["coverage_edges"] > 20 and target["corpus"] >= 1
        assert target["accepted"] + target["refused"] > 0
    assert "fuzz report (atheris, 2 s per target)" in out and "crashes 0 (0 distinct)" in out
    assert not (tmp_path / "crashes").exists() or not any((tmp_path / "crashes").iterdir())


def test_random_engine_smoke_and_bad_arguments(tmp_path, capsys):
    assert (
        main(
            [
                "fuzz",
                "--engine",
                "random",
                "--seconds",
                "0.5",
                "--targets",
                "fhir_bundle,structured_form",
                "--crash-dir",
                str(tmp_path),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "fuzz report (random" in out and "fhir_bundle" in out
    assert main(["fuzz", "--targets", "nope"]) == 2
    assert "unknown fuzz target(s): nope; accepted: structured_form" in capsys.readouterr().err
    assert main(["fuzz", "--seconds", "0"]) == 2


def test_crashes_are_counted_once_per_kind_written_and_replayed(tmp_path, capsys):
    def run(context, data):
        if data.startswith(b"boom"):
            return {}["missing"]  # a KeyError: not a documented error
        if data == b"bad":
            raise ft.PropertyViolation("accepted an invalid value for age: 999")
        return "refused"

    target = ft.Target("fhir_bundle", "test", lambda: {}, run, lambda context: [])
    recorder = fuzz_command.Recorder(target, tmp_path, tmp_path / "stats.json", "random")
    for data in (b"boom1", b"boom2", b"ok", b"bad", b"bad"):
        recorder.run({}, data)
    recorder.write()  # (written at most once a second while running, and at each new crash)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["executions"] == 5 and stats["crashes"] == 4 and stats["refused"] == 1
    assert sorted(c["count"] for c in stats["unique_crashes"].values()) == [2, 2]
    saved = sorted(tmp_path.glob("fhir_bundle-*.bin"))
    assert [p.read_bytes() for p in saved if p.read_bytes().startswith(b"boom")] == [b"boom1"]
    text = next(p for p in tmp_path.glob("*.txt") if "KeyError" in p.read_text()).read_text()
    assert "signature: KeyError" in text and "replay: python -m mmnar_core fuzz --replay" in text
    # replayed against the real target, these inputs are handled (refused): the replay passes
    assert main(["fuzz", "--replay", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count(": ok (refused)") == 2


def test_libfuzzer_output_is_parsed():
    text = (
        "#2\tINITED cov: 80 ft: 120 corp: 9/2kb exec/s: 0 rss: 60Mb\n"
        "#4096\tpulse  cov: 83 ft: 166 corp: 30/4Kb lim: 4096 exec/s: 2048 rss: 61Mb\n"
        "Done 81234 runs in 61 second(s)\nstat::number_of_executed_units: 81235\n"
    )
    assert fuzz_command.parse_libfuzzer(text) == {
        "libfuzzer_runs": 81235,
        "corpus": 30,
        "exec_per_s": 2048,
        "coverage_edges": 83,
        "coverage_features": 166,
        "fuzz_seconds": 61,
    }


@pytest.mark.parametrize("name", [n for n in ft.TARGETS if n not in ("server",)])  # server: test_properties_server
def test_every_seed_of_every_target_keeps_its_property(name):
    target = ft.TARGETS[name]
    context = target.setup()
    try:
        outcomes = [target.run(context, seed) for seed in target.seeds(context)]
    finally:
        target.teardown(context)
    assert "accepted" in outcomes or name == "structured_form" and "refused" in outcomes, outcomes


def test_the_dictionary_is_written_in_libfuzzer_syntax(tmp_path):
    path = fuzz_command.write_dictionary(ft.TARGETS["image_upload"], tmp_path / "image.dict")
    lines = path.read_text().splitlines()
    assert lines[0] == '"\\x89PNG\\x0d\\x0a\\x1a\\x0a"' and all(
        line.startswith('"') and line.endswith('"') for line in lines
    )


# ------------------------------------------------------------------------------------------------ regressions
def one(call, *args) -> InputError:
    with pytest.raises((InputError, InputErrors)) as info:
        call(*args)
    ft.check_input_errors(info.value)
    assert len(info.value.errors) == 1, info.value
    return info.value.errors[0]


def observation(**fields) -> bytes:
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"code": "8867-4"}]},
        "valueQuantity": {"value": 80, "unit": "/min"},
        **fields,
    }
    return json.dumps({"resourceType": "Bundle", "entry": [{"resource": resource}]}).encode()


def test_fhir_status_that_is_not_a_code():
    """Was TypeError: unhashable type: 'dict' (fhir.py, `status in SKIPPED_OBSERVATION_STATUS`)."""
    error = one(parse_fhir_bundle, observation(status={"coding": []}), FEATURES)
    assert error.field == "bundle.json entry[0] Observation status"
    assert error.problem == "the status is a JSON object, not a code"


@pytest.mark.parametrize("coding", [True, 7, "8867-4"])
def test_fhir_coding_that_is_not_a_list(coding):
    """Was TypeError: 'bool' object is not iterable (fhir.py, `for coding in concept.get("coding") or []`)."""
    error = one(parse_fhir_bundle, observation(code={"coding": coding}), FEATURES)
    assert error.problem == "the Observation has no code"
    single = parse_fhir_bundle(observation(code={"coding": {"system": "http://loinc.org", "code": "8867-4"}}), FEATURES)
    assert single.values["heart_rate_max"] == 80.0  # one Coding object instead of a list: read as one


def test_fhir_value_beyond_the_float_range():
    """Was OverflowError: int too large to convert to float (fhir.py, `float(number)`)."""
    error = one(parse_fhir_bundle, observation(valueQuantity={"value": 10**400, "unit": "/min"}), FEATURES)
    assert error.problem == "valueQuantity.value is too large to be a number" and "Heart rate" in error.field


def test_form_value_beyond_the_float_range():
    """Was OverflowError from parse_value (a 500 for the server's `structured` field)."""
    error = one(parse_structured_form, {"age": 10**400}, FEATURES)
    assert error.field == "age" and error.problem == "a number of about 400 digits is too large to be a number"


def test_form_value_with_more_digits_than_python_prints():
    """Was ValueError: Exceeds the limit (4300 digits) for integer string conversion (the message's repr)."""
    error = one(parse_structured_form, {"sex": 10**5000}, FEATURES)
    assert error.field == "sex" and error.problem == "a number of about 5,000 digits is not a category"


def test_json_integer_with_more_than_4300_digits():
    """Was ValueError from json.loads (not a JSONDecodeError), so load_json let it through: a 500 on the server."""
    error = one(parse_structured_json, b'{"age": ' + b"1" * 4301 + b"}", FEATURES)
    assert error.field == "upload.json" and error.problem == "a number in the JSON has more than 4,300 digits"


GRAY = (np.add.outer(np.arange(24) * 3, np.arange(32) * 7) % 256).astype(np.uint16) * 16  # the fuzz seeds' image
WINDOWED = dict(WindowCenter="2000", WindowWidth="4000", RescaleSlope="1.5", RescaleIntercept="-10")


@pytest.mark.parametrize(
    "data, problem",
    [
        (
            dicom_bytes(GRAY, Modality="DX", damage=[(b"\x28\x00\x04\x00CS", b"\x28\x00\x04\x00QQ")]),
            "the file is damaged: the DICOM attribute PhotometricInterpretation (0028,0004) cannot be read "
            "(NotImplementedError: Unknown Value Representation 'QQ' in tag (0028,0004))",
        ),
        (
            dicom_bytes(
                GRAY,
                Modality="DX",
                damage=[(b"\x28\x00\x02\x00US\x02\x00\x01\x00", b"\x28\x00\x02\x00US\x04\x00\x01\x00\x01\x00")],
            ),
            "the file is damaged: the DICOM attribute SamplesPerPixel (0028,0002) has 2 values, not one whole number",
        ),
        (
            dicom_bytes(
                GRAY,
                Modality="DX",
                damage=[(b"\x28\x00\x02\x00US\x02\x00\x01\x00", b"\x28\x00\x02\x00US\x03\x00\x01\x00\x00")],
            ),
            "the file is damaged: the DICOM attribute SamplesPerPixel (0028,0002) cannot be read (BytesLengthException",
        ),
        (
            dicom_bytes(GRAY, "MONOCHROME1", Modality="DX", **WINDOWED, damage=[(b"1.5 ", b"1&5 ")]),
            "the file is damaged: the DICOM attribute RescaleSlope (0028,1053) is '1&5', not a number",
        ),
    ],
)
def test_damaged_dicom_attributes_are_input_errors_naming_the_attribute(data, problem):
    """Were NotImplementedError / BytesLengthException / ValueError / TypeError from pydicom's lazy element
    conversion inside the decoder (a 500 for the server's `cxr` field)."""
    error = one(read_image_upload, "cxr.dcm", data)
    assert error.field == "cxr.dcm" and error.problem.startswith(problem)
