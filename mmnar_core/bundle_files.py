"""Reading a bundle's files safely: plain files only, read once, and safetensors headers parsed by hand.

Why: a file hashed on one read and loaded on another lets a swapped symlink load other weights under a
valid signature, so every file is opened without following links and read once; the same bytes are hashed
and loaded. And a safetensors header can declare any shapes: the loader compares the header's dtypes and
shapes (checked against the file's size) with the config's before anything is allocated.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

# bytes per element of each safetensors dtype (https://github.com/huggingface/safetensors, format)
DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
MAX_HEADER = 100 * 2**20


class UnsafeFileError(ValueError):
    """A bundle file that is not a plain file, or that cannot be read; the message names it."""


def read_plain_file(root: Path, relative: str) -> bytes:
    """The bytes of ROOT/relative, refusing a symbolic link (the file or a folder on the way) and anything but
    a regular file. Opened with O_NOFOLLOW and checked with fstat, so the file read is the file checked."""
    folder = root
    for part in Path(relative).parts[:-1]:
        folder = folder / part
        try:
            mode = os.lstat(folder).st_mode
        except OSError as error:
            raise UnsafeFileError(f"{folder}: cannot be read ({error.strerror or error})") from None
        if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
            raise UnsafeFileError(f"{folder}: a symbolic link or not a folder; a bundle holds plain files only")
    path = root / relative
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as error:
        if error.errno == errno.ELOOP or os.path.islink(path):
            raise UnsafeFileError(f"{path}: a symbolic link; a bundle holds plain files only") from None
        raise UnsafeFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise UnsafeFileError(f"{path}: not a regular file; a bundle holds plain files only")
        return handle.read()


def safetensors_header(head: bytes, size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (dtype, shape) from a safetensors file's first bytes (`head`: at least the 8-byte length
    and the JSON header) and its total `size`. Raises ValueError saying what is wrong: a header that does not
    fit the file, an unknown dtype, a shape whose byte size is not its data_offsets' span, or tensors that
    overlap, leave gaps or do not end where the file does. Nothing is allocated for the tensors."""
    if len(head) < 8:
        raise ValueError("shorter than a safetensors header")
    length = int.from_bytes(head[:8], "little")
    if length > size - 8 or length > MAX_HEADER:
        raise ValueError(f"its header length {length} does not fit the file ({size} bytes)")
    if len(head) < 8 + length:
        raise ValueError("its header is cut short")
    try:
        meta = json.loads(head[8 : 8 + length])
    except (ValueError, UnicodeDecodeError):
        raise ValueError("its header is not JSON") from None
    if not isinstance(meta, dict):
        raise ValueError("its header is not a JSON object")
    tensors, spans = {}, []
    for name, info in meta.items():
        if name == "__metadata__":
            if not (isinstance(info, dict) and all(isinstance(v, str) for v in info.values())):
                raise ValueError("its __metadata__ is not an object of strings")
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"tensor {name!r} is not {{dtype, shape, data_offsets}}")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in DTYPE_SIZES:
            raise ValueError(f"tensor {name!r} has dtype {dtype!r} (accepted: {', '.join(DTYPE_SIZES)})")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise ValueError(f"tensor {name!r} has no valid shape")
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise ValueError(f"tensor {name!r} has no valid data_offsets")
        count = 1
        for dimension in shape:
            count *= dimension
        if offsets[1] - offsets[0] != count * DTYPE_SIZES[dtype]:
            raise ValueError(
                f"tensor {name!r} declares shape {shape} of {dtype} ({count * DTYPE_SIZES[dtype]:,} "
                f"bytes) but data_offsets span {offsets[1] - offsets[0]:,} bytes"
            )
        tensors[name] = (dtype, tuple(shape))
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for start, stop, name in sorted(spans):
        if start != end:
            raise ValueError(f"tensor {name!r} starts at byte {start:,} of the data, not {end:,} (a gap or an overlap)")
        end = stop
    if 8 + length + end != size:
        raise ValueError("its tensors do not add up to the file size")
    return tensors


def header_bytes(path: Path) -> tuple[bytes, int]:
    """The first bytes of a safetensors file up to the end of its header, and the file's size (no symlinks)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(descriptor, "rb") as handle:
        size = os.fstat(descriptor).st_size
        head = handle.read(8)
        if len(head) == 8:
            head += handle.read(min(int.from_bytes(head, "little"), MAX_HEADER, size))
    return head, size
