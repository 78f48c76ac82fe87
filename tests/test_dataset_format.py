import json
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmnar_core.dataset import DatasetExistsError, DatasetFormatError, Manifest, load_dataset
from mmnar_core.dataset.manifest import CHECKSUMS_FILE

from support.tiny_dataset import write_tiny


@pytest.fixture
def tiny(tmp_path):
    return write_tiny(tmp_path / "tiny")


def test_round_trip(tiny):
    dataset = load_dataset(tiny, verify="all")
    assert dataset.manifest.modality_names == ["structured", "cxr", "note"]
    assert dataset.patients["pattern"].tolist() == [3, 5, 7]
    assert dataset.manifest.split_counts == {"train": 1, "val": 1, "test": 1}
    assert dataset.labels("death").tolist()[:2] == [0, 1] and pd.isna(dataset.labels("death").iloc[2])
    record = dataset.record("p3")
    assert record.texts == {"note": "No effusion."}
    assert record.images["cxr"].name == "p3.png"
    assert record.structured == {"age": None, "sex": "female"}
    again = Manifest.from_dict(json.loads((tiny / "manifest.json").read_text()))
    assert again.to_dict() == dataset.manifest.to_dict()


def test_refuses_to_overwrite(tiny):
    before = (tiny / "manifest.json").read_bytes()
    with pytest.raises(DatasetExistsError, match="--overwrite"):
        write_tiny(tiny)
    assert (tiny / "manifest.json").read_bytes() == before
    write_tiny(tiny, overwrite=True)
    load_dataset(tiny)


def test_failed_write_leaves_destination_untouched(tiny, monkeypatch):
    before = (tiny / "checksums.sha256").read_bytes()
    import mmnar_core.dataset.writer as writer_module

    def explode(self, relative, frame):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer_module.DatasetWriter, "write_table", explode)
    with pytest.raises(RuntimeError):
        write_tiny(tiny, overwrite=True)
    assert (tiny / "checksums.sha256").read_bytes() == before
    assert not list(tiny.parent.glob(".tiny.partial-*"))


def _edit_manifest(root, change):
    data = json.loads((root / "manifest.json").read_text())
    change(data)
    (root / "manifest.json").write_text(json.dumps(data))


def _rewrite_table(root, name, change):
    """Change a table and re-sign it, so only the structural check can catch the problem."""
    import hashlib

    frame = pq.read_table(root / name).to_pandas()
    frame = change(frame)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), root / name)
    lines = []
    for line in (root / CHECKSUMS_FILE).read_text().splitlines():
        digest, _, path = line.partition("  ")
        if path == name:
            digest = hashlib.sha256((root / name).read_bytes()).hexdigest()
        lines.append(f"{digest}  {path}\n")
    (root / CHECKSUMS_FILE).write_text("".join(lines))
    _edit_manifest(root, lambda d: d.update(content_hash=hashlib.sha256("".join(lines).encode()).hexdigest()))


@pytest.mark.parametrize(
    "damage, file, field",
    [
        (lambda r: (r / "manifest.json").unlink(), "manifest.json", "(file)"),
        (lambda r: (r / "manifest.json").write_text("{ not json"), "manifest.json", "line 1 column 3"),
        (lambda r: _edit_manifest(r, lambda d: d.pop("outcomes")), "manifest.json", "outcomes"),
        (
            lambda r: _edit_manifest(r, lambda d: d["modalities"][1].update(kind="audio")),
            "manifest.json",
            "modalities[1]",
        ),
        (lambda r: _edit_manifest(r, lambda d: d.update(format_version=9)), "manifest.json", "format_version"),
        (
            lambda r: _edit_manifest(r, lambda d: d["features"][0].pop("modality")),
            "manifest.json",
            "features[0].modality",
        ),
        (lambda r: _edit_manifest(r, lambda d: d.update(content_hash="0" * 64)), "manifest.json", "content_hash"),
        (lambda r: (r / "patients.parquet").write_bytes(b"PAR1garbage"), "patients.parquet", "(content)"),
        (lambda r: (r / "images" / "p1.png").unlink(), "p1.png", "(file)"),
        (
            lambda r: _rewrite_table(r, "patients.parquet", lambda f: f.drop(columns=["split"])),
            "patients.parquet",
            "split",
        ),
        (
            lambda r: _rewrite_table(r, "patients.parquet", lambda f: f.assign(split=["train", "dev", "test"])),
            "patients.parquet",
            "split",
        ),
        (
            lambda r: _rewrite_table(r, "patients.parquet", lambda f: f.assign(group_id=["a", "a", "b"])),
            "patients.parquet",
            "group_id",
        ),
        (
            lambda r: _rewrite_table(r, "patients.parquet", lambda f: f.assign(pattern=[3, 5, 6])),
            "patients.parquet",
            "pattern",
        ),
        (
            lambda r: _rewrite_table(r, "patients.parquet", lambda f: f.assign(label_death=[0, 2, 1])),
            "patients.parquet",
            "label_death",
        ),
        (
            lambda r: _rewrite_table(r, "text.parquet", lambda f: f.assign(note=[None, None, "x"])),
            "text.parquet",
            "note",
        ),
        (
            lambda r: _rewrite_table(r, "structured.parquet", lambda f: f.assign(sex=["male", "other", "female"])),
            "structured.parquet",
            "sex",
        ),
        (lambda r: _rewrite_table(r, "structured.parquet", lambda f: f.iloc[::-1]), "structured.parquet", "patient_id"),
        (
            lambda r: _rewrite_table(r, "images.parquet", lambda f: f.assign(path=["../p1.png", "images/p3.png"])),
            "images.parquet",
            "path",
        ),
    ],
)
def test_malformed_directory_names_file_and_field(tiny, damage, file, field):
    damage(tiny)
    with pytest.raises(DatasetFormatError) as caught:
        load_dataset(tiny, verify="all")
    assert caught.value.file.endswith(file), caught.value
    assert caught.value.field == field, caught.value


def test_changed_image_caught_only_by_full_verification(tiny):
    (tiny / "images" / "p1.png").write_bytes(b"\x89PNG changed")
    load_dataset(tiny, verify="tables")
    with pytest.raises(DatasetFormatError, match="does not match its checksum"):
        load_dataset(tiny, verify="all")


def test_missing_directory(tmp_path):
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_validate_command(tiny, capsys):
    from mmnar_core.cli import main

    assert main(["validate", str(tiny)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["patterns"] == {"structured+cxr": 1, "structured+note": 1, "structured+cxr+note": 1}
    shutil.rmtree(tiny / "images")
    assert main(["validate", str(tiny)]) == 2
    assert "p1.png" in capsys.readouterr().err
