"""Write a file so that a reader (or a crash) sees the old content or the new, never half of it: write a
temporary file in the same folder (same filesystem, so the rename is atomic), flush and fsync it, then
os.replace it onto the target. On any failure the temporary file is removed and the old file is intact."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, mode: int = 0o666) -> Iterator[Path]:
    """A new empty temporary file beside `path` (created with `mode`, less the umask, as open() would) for
    a writer that needs a path (a zip archive); it replaces `path` when the block ends without error."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    try:
        yield partial
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes, mode: int = 0o666) -> Path:
    """`path` holds exactly `data` afterwards, or (on an error) what it held before."""
    with atomic_path(path, mode) as partial, open(partial, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, mode: int = 0o666) -> Path:
    """write_bytes_atomic of `text` in UTF-8."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode)
