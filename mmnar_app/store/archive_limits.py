"""Limits on a backup archive before and while it is read (issue 18, case 10).

Why: a 1 MB archive inflated to 2.1 GB in memory, and the duplicate-name check was quadratic (20,000
entries: 11 s). Here every limit is checked from the zip's own records first (the entry count from the
end-of-central-directory record, before `zipfile` builds one object per entry; then each entry's declared
size, the total, the compression method and duplicate names, in one pass), and again while an entry is
inflated: a header that lies about the size cannot make a read go past the cap.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .core import StoreError

MiB = 1 << 20
RATIO_FLOOR = MiB  # entries inflating to less than this are never refused for their compression ratio
_CHUNK = MiB
# The export writes only these; bzip2 and LZMA inflate a whole read at once (no output cap in zipfile).
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


class BackupError(StoreError):
    """A backup archive that cannot be written, read or restored; the message names the entry."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on an archive being verified or imported (defaults fit any store this app writes: one file
    is at most 512 MiB, see core.MAX_FILE_BYTES)."""

    max_entries: int = 1_000_000
    max_entry_bytes: int = 1 << 30  # 1 GiB inflated, per entry (an entry is held in memory while checked)
    max_total_bytes: int = 64 << 30  # 64 GiB inflated, all entries together
    max_ratio: int = 200  # inflated / compressed, for entries over 1 MiB (the export's JSON deflates ~2-10:1;
    #                       files are stored): with the read stopping at the declared size, bytes inflated
    #                       stay below max_ratio x the archive's size

    def __post_init__(self) -> None:
        for name in ("max_entries", "max_entry_bytes", "max_total_bytes", "max_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BackupError(f"archive limit {name} must be a positive integer, got {value!r}")


def declared_entry_count(path: Path) -> int | None:
    """Entries the archive's end-of-central-directory record declares (zip64 too), or None if unreadable
    (zipfile then reports the damage)."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        tail_len = min(size, 22 + 65535 + 20)
        handle.seek(size - tail_len)
        tail = handle.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) < at + 22:
            return None
        total = struct.unpack("<H", tail[at + 10 : at + 12])[0]
        locator = at - 20
        if total == 0xFFFF and locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
            offset = struct.unpack("<Q", tail[locator + 8 : locator + 16])[0]
            if offset + 56 <= size:
                handle.seek(offset)
                record = handle.read(56)
                if record[:4] == b"PK\x06\x06":
                    total = struct.unpack("<Q", record[32:40])[0]
        return total


def check_entry_count(path: Path, limits: ArchiveLimits) -> None:
    """Refuse before zipfile reads the central directory (it keeps one object per entry)."""
    declared = declared_entry_count(path)
    if declared is not None and declared > limits.max_entries:
        raise BackupError(
            f"{path}: the archive declares {declared:,} entries, more than the limit of "
            f"{limits.max_entries:,} (--max-entries); nothing was imported"
        )


def first_duplicate(names: Iterable[str]) -> str | None:
    """The first name seen twice (one pass over a set: linear in the number of entries)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def check_headers(path: Path, infos: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    """Count, duplicate names, compression method and declared sizes, from the central directory alone."""
    if len(infos) > limits.max_entries:
        raise BackupError(
            f"{path}: the archive has {len(infos):,} entries, more than the limit of "
            f"{limits.max_entries:,} (--max-entries); nothing was imported"
        )
    duplicate = first_duplicate(info.filename for info in infos)
    if duplicate is not None:
        raise BackupError(f"{path}: entry {duplicate} appears more than once in the archive")
    total = 0
    for info in infos:
        if info.compress_type not in METHODS:
            raise BackupError(
                f"{path}: entry {info.filename} uses compression method {info.compress_type}; "
                "backups use only stored or deflate (the export writes nothing else); nothing was "
                "imported"
            )
        if info.file_size > limits.max_entry_bytes:
            raise BackupError(
                f"{path}: entry {info.filename} declares {info.file_size:,} bytes inflated, more "
                f"than the limit of {limits.max_entry_bytes:,} per entry (--max-entry-mb); nothing "
                "was imported"
            )
        if info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise BackupError(
                f"{path}: entry {info.filename} declares {info.file_size:,} bytes from "
                f"{info.compress_size:,} compressed, a ratio over the limit of {limits.max_ratio}:1 "
                "(--max-ratio; a decompression bomb?); nothing was imported"
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise BackupError(
                f"{path}: the entries declare more than {limits.max_total_bytes:,} bytes inflated "
                f"in total (the limit, --max-total-mb; reached at entry {info.filename}); nothing "
                "was imported"
            )


class InflationBudget:
    """Bytes inflated so far across the archive; each read stops at its entry's cap and at the total."""

    def __init__(self, path: Path, limits: ArchiveLimits):
        self.path, self.limits, self.total = path, limits, 0
        self._counted: set[str] = set()  # an entry read twice (verify, then restore) counts once

    def _cap(self, info: zipfile.ZipInfo) -> int:
        return min(info.file_size, self.limits.max_entry_bytes)

    def chunks(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo):
        """The entry's inflated bytes in chunks of at most 1 MiB, never past its declared size or the caps."""
        cap, read = self._cap(info), 0
        first = info.filename not in self._counted
        self._counted.add(info.filename)
        try:
            handle: BinaryIO
            with archive.open(info) as handle:
                while True:
                    block = handle.read(min(_CHUNK, cap - read + 1))
                    if not block:
                        break
                    read += len(block)
                    self.total += len(block) if first else 0
                    if read > cap:
                        raise BackupError(
                            f"{self.path}: entry {info.filename} inflates past "
                            f"{cap:,} bytes (its header says {info.file_size:,}, the limit per entry "
                            f"is {self.limits.max_entry_bytes:,}); nothing was imported"
                        )
                    if self.total > self.limits.max_total_bytes:
                        raise BackupError(
                            f"{self.path}: the entries inflate past {self.limits.max_total_bytes:,} "
                            f"bytes in total (the limit; reached in {info.filename}); nothing was "
                            "imported"
                        )
                    yield block
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise BackupError(
                f"{self.path}: entry {info.filename} is corrupted ({exc}); nothing was imported"
            ) from None

    def read(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        data = bytearray()
        for block in self.chunks(archive, info):
            data += block
        return bytes(data)
