"""Backup import limits (issue 18, case 10: a 1 MB archive inflated to 2.1 GB in memory; the duplicate-name
check was quadratic, 20,000 entries in 11 s): the entry count, each entry's and the total inflated size are
checked from the zip's records and again while inflating, only stored/deflate entries are read, duplicates
are found in one pass, and a refusal names what was wrong and the limit and imports nothing."""

from __future__ import annotations

import struct
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import pytest

from mmnar_app.store import open_store
from mmnar_app.store.archive_limits import ArchiveLimits, first_duplicate
from mmnar_app.store.backup import BackupError, export_archive, import_archive, main, verify_archive

from support.backup import counts, populate


@pytest.fixture
def target(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'target' / 'mmnar.sqlite3'}"


def refused(path: Path, url: str, match: str, **limits) -> str:
    """Import `path` under `limits`; it must be refused with `match` and leave the target empty."""
    with open_store(url) as store:
        with pytest.raises(BackupError, match=match) as caught:
            import_archive(store, path, limits=ArchiveLimits(**limits) if limits else None)
    assert not any(counts(url).values()), counts(url)
    return str(caught.value)


def test_an_entry_or_the_total_over_its_cap_is_refused_from_the_headers(archive, target):
    path, _, _ = archive
    with zipfile.ZipFile(path) as z:
        biggest = max(z.infolist(), key=lambda i: i.file_size)
        total = sum(i.file_size for i in z.infolist())
    message = refused(path, target, "declares", max_entry_bytes=biggest.file_size - 1)
    assert biggest.filename in message and f"{biggest.file_size - 1:,} per entry" in message
    message = refused(path, target, "in total", max_total_bytes=total // 2)
    assert f"{total // 2:,} bytes" in message
    with open_store(target) as store:  # within the caps the same archive imports
        assert (
            import_archive(store, path, limits=ArchiveLimits(max_entry_bytes=biggest.file_size, max_total_bytes=total))[
                "assessments"
            ]
            == 4
        )


def test_too_many_entries_are_refused_before_zipfile_reads_the_directory(archive, target, monkeypatch):
    path, _, _ = archive
    with zipfile.ZipFile(path) as z:
        n = len(z.infolist())

    def no_directory(*args, **kwargs):
        raise AssertionError("zipfile read the central directory of an archive over the entry cap")

    monkeypatch.setattr(zipfile, "ZipFile", no_directory)
    message = refused(path, target, "entries", max_entries=n - 1)
    assert f"declares {n:,} entries" in message and f"limit of {n - 1:,}" in message


def _bomb(path: Path, method: int, inflated: int, declared: int) -> Path:
    """One entry named manifest.json of `inflated` zero bytes whose central directory says `declared`."""
    with zipfile.ZipFile(path, "w", method) as z:
        z.writestr("manifest.json", bytes(inflated))
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x01\x02")  # the central directory record: uncompressed size at +24
    data[at + 24 : at + 28] = struct.pack("<I", declared)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, zipfile.ZIP_DEFLATED])
@pytest.mark.slow
def test_a_lying_header_never_inflates_past_the_cap(tmp_path, target, method):
    bomb = _bomb(tmp_path / "bomb.zip", method, inflated=300 << 20, declared=200)
    assert bomb.stat().st_size < 400_000
    tracemalloc.start()
    try:
        message = refused(bomb, target, "compression method|corrupted")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40 << 20, f"{peak >> 20} MiB traced while refusing a {bomb.stat().st_size} byte archive"
    if method != zipfile.ZIP_DEFLATED:  # bzip2 / LZMA inflate a whole read at once: refused from the header
        assert f"compression method {method}" in message and "stored or deflate" in message


def test_an_honest_bomb_is_refused_for_its_ratio_before_inflating(tmp_path, target):
    """300 kB of deflate that inflates to 300 MiB, its header telling the truth: under every size cap, refused
    for its ratio from the header alone (the attack's 1 MB archive reached 2.1 GB in memory)."""
    bomb = _bomb(tmp_path / "bomb.zip", zipfile.ZIP_DEFLATED, inflated=300 << 20, declared=300 << 20)
    tracemalloc.start()
    try:
        message = refused(bomb, target, "ratio")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "a ratio over the limit of 200:1 (--max-ratio" in message and "manifest.json declares 314,572,800" in message
    assert peak < 20 << 20, f"{peak >> 20} MiB traced"


def test_the_streamed_read_stops_at_the_cap_even_if_the_header_is_not_checked(tmp_path, monkeypatch):
    """The streaming cap holds on its own: with the header checks bypassed, a 300 MiB entry declared as
    300 MiB is still cut at the 1 MiB per-entry limit while it inflates."""
    from mmnar_app.store import backup

    bomb = _bomb(tmp_path / "bomb.zip", zipfile.ZIP_DEFLATED, inflated=300 << 20, declared=300 << 20)
    monkeypatch.setattr(backup, "check_headers", lambda *a: None)
    tracemalloc.start()
    try:
        with pytest.raises(BackupError, match="inflates past 1,048,576 bytes"):
            verify_archive(bomb, limits=ArchiveLimits(max_entry_bytes=1 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"{peak >> 20} MiB traced"


class CountingName(str):
    comparisons = 0

    def __eq__(self, other):
        CountingName.comparisons += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_the_duplicate_check_is_one_pass_over_a_set(tmp_path, target):
    names = [CountingName(f"blobs/{i:064x}") for i in range(20_000)] + [CountingName(f"blobs/{19_999:064x}")]
    CountingName.comparisons = 0
    assert first_duplicate(names) == f"blobs/{19_999:064x}"
    assert CountingName.comparisons < 3 * len(names)  # names.count(n) for each name would make 4e8
    path = tmp_path / "many.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we plant
        for name in names:
            z.writestr(str(name), b"")
    message = refused(path, target, "more than once")
    assert f"entry blobs/{19_999:064x} appears more than once" in message


def test_command_line_limits_are_checked_and_named(archive, tmp_path, capsys):
    path, _, _ = archive
    for bad in ("0", "-3", "lots"):
        with pytest.raises(SystemExit) as caught:
            main(["verify", str(path), "--max-entry-mb", bad])
        assert caught.value.code == 2
        assert f"--max-entry-mb: expected a whole number >= 1, got {bad!r}" in capsys.readouterr().err
    assert main(["import", str(path), "--data-dir", str(tmp_path / "t"), "--max-entries", "3"]) == 2
    err = capsys.readouterr().err
    assert "limit of 3 (--max-entries)" in err and "nothing was imported" in err
    with open_store(f"sqlite:///{tmp_path / 't' / 'mmnar.sqlite3'}") as store:
        assert store.count_assessments() == 0 and not store.audit_log()


def test_default_limits_import_a_normal_archive(tmp_path, target):
    with open_store(f"sqlite:///{tmp_path / 'src' / 'mmnar.sqlite3'}") as store:
        populate(store)
        export_archive(store, tmp_path / "b.zip")
    assert verify_archive(tmp_path / "b.zip")["counts"]["assessments"] == 4
    with open_store(target) as store:
        assert import_archive(store, tmp_path / "b.zip")["assessments"] == 4
