"""Bad input fails with the file and the column named, and changes nothing."""

import gzip
import warnings

import pandas as pd
import pytest

from mmnar_core.cli import main
from mmnar_core.loaders import build_source
from mmnar_core.loaders.mimic_iv.build import build
from mmnar_core.loaders.tables import LoaderError

from support.mimic_fixture import write_mimic_root


@pytest.fixture()
def root(tmp_path):
    return write_mimic_root(tmp_path / "mimic", notes=False, cxr=False)


def _build(root, out):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build(root, out, progress=False)


def _rewrite(path, edit):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edited = edit(frame)  # returns a new frame, or None after editing in place
    frame = frame if edited is None else edited
    frame.to_csv(path, index=False, compression="gzip" if str(path).endswith(".gz") else None)


def _big_gzip(path, rows=20000):
    """A labevents file large enough that a cut lands in the data, not the header."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = pd.concat([frame] * (rows // len(frame)), ignore_index=True)
    frame.to_csv(path, index=False, compression="gzip")


@pytest.mark.parametrize("fraction", [0.5, 0.9])
def test_truncated_streamed_csv_gz_names_the_file(root, tmp_path, fraction):
    path = root / "hosp" / "labevents.csv.gz"
    _big_gzip(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(LoaderError) as error:
        _build(root, tmp_path / "ds")
    assert error.value.file == str(path) and "labevents.csv.gz" in str(error.value)
    assert "truncated" in str(error.value) and "while reading columns hadm_id, itemid, charttime, valuenum" in str(
        error.value
    )
    assert not (tmp_path / "ds").exists()


def test_truncated_small_csv_gz_names_the_file_and_columns(root, tmp_path):
    path = root / "hosp" / "admissions.csv.gz"
    frame = pd.read_csv(path, dtype=str)
    pd.concat([frame] * 3000).to_csv(path, index=False, compression="gzip")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LoaderError, match="admissions.csv.gz.*(corrupt|truncated).*admittime"):
        _build(root, tmp_path / "ds")


def test_garbage_instead_of_gzip_names_the_file(root, tmp_path):
    path = root / "hosp" / "patients.csv.gz"
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(LoaderError, match="patients.csv.gz"):
        _build(root, tmp_path / "ds")


def test_corrupt_gzip_payload_names_the_file(root, tmp_path):
    path = root / "hosp" / "labevents.csv.gz"
    _big_gzip(path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(LoaderError) as error:  # either the gzip check or a garbled value, always with file + column(s)
        _build(root, tmp_path / "ds")
    assert error.value.file == str(path)
    assert error.value.column in {"hadm_id", "itemid", "charttime", "valuenum"} or "while reading columns" in str(
        error.value
    )


def test_bad_value_in_a_streamed_column_names_file_column_and_line(root, tmp_path):
    path = root / "hosp" / "labevents.csv.gz"
    _rewrite(path, lambda f: f.__setitem__("valuenum", ["abc"] + list(f["valuenum"][1:])))
    with pytest.raises(LoaderError) as error:
        _build(root, tmp_path / "ds")
    assert error.value.file == str(path) and error.value.column == "valuenum" and "line 2" in str(error.value)


def test_bad_timestamp_in_a_small_table_names_file_column_and_row(root, tmp_path):
    path = root / "hosp" / "admissions.csv.gz"
    _rewrite(path, lambda f: f.__setitem__("dischtime", ["not a time"] + list(f["dischtime"][1:])))
    with pytest.raises(LoaderError, match=r"admissions.csv.gz: dischtime: value 'not a time' on data row 1"):
        _build(root, tmp_path / "ds")


@pytest.mark.parametrize(
    "table, column",
    [
        ("hosp/labevents.csv.gz", "charttime"),
        ("hosp/admissions.csv.gz", "dischtime"),
        ("icu/icustays.csv.gz", "intime"),
        ("icu/chartevents.csv.gz", "valuenum"),
    ],
)
def test_missing_required_column_names_file_and_column(root, tmp_path, table, column):
    path = root / table
    _rewrite(path, lambda f: f.drop(columns=[column]))
    with pytest.raises(LoaderError) as error:
        _build(root, tmp_path / "ds")
    assert error.value.file == str(path) and error.value.column == column
    assert "required column is missing" in str(error.value)


def test_missing_required_table(root, tmp_path):
    (root / "hosp" / "labevents.csv.gz").unlink()
    with pytest.raises(LoaderError, match="labevents"):
        _build(root, tmp_path / "ds")


def test_failed_rebuild_keeps_the_previous_dataset(root, tmp_path):
    out = _build(root, tmp_path / "ds")
    before = (out / "patients.parquet").read_bytes()
    with gzip.open(root / "hosp" / "labevents.csv.gz", "wb") as handle:
        handle.write(b"labevent_id,subject_id\n1,1\n")
    with pytest.raises(LoaderError):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build(root, out, overwrite=True, progress=False)
    assert (out / "patients.parquet").read_bytes() == before


def test_cli_reports_one_line_error_and_exit_code_2(root, tmp_path, capsys):
    path = root / "hosp" / "labevents.csv.gz"
    _rewrite(path, lambda f: f.drop(columns=["itemid"]))
    code = main(["build", "mimic-iv", "--root", str(root), "--out", str(tmp_path / "ds"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: {path}: itemid: required column is missing" in err
    assert "Traceback" not in err


def test_unknown_source_and_missing_root(tmp_path):
    with pytest.raises(ValueError, match="unknown source"):
        build_source("mimic-v", tmp_path, tmp_path / "ds")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        build_source("eicu", tmp_path / "nowhere", tmp_path / "ds")
