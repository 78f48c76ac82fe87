"""The decoded-size budget of an image file, checked from its headers before any pixel or deflate work.

Why: a small file can declare (and decompress to) gigabytes. PNG and JPEG state their size and mode in
their headers (Pillow reads only those on open); a DICOM states rows x columns x frames x samples x bits.
A Deflated Explicit VR Little Endian DICOM is worse: pydicom inflates the whole data set in one call
before anything can be checked. So `readable_dicom` reads the file meta itself, inflates at most
HEADER_LIMIT bytes to reach the pixel data's header, checks the declared size, and then inflates the
rest with a hard cap (zlib.decompressobj with max_length), returning an equivalent uncompressed file that
pydicom reads without inflating anything. Every reader of image bytes (load_image, uploads, the server,
`embed`) goes through load_image, which calls these checks.
"""

from __future__ import annotations

import io
import zlib

from mmnar_core.encoders.errors import CorruptImageError, ImageTooLargeError

DECODED_BYTES_PER_PIXEL = 3  # the budget: one max_pixels frame of 8-bit RGB or 16-bit grayscale
HEADER_LIMIT = 4 * 2**20  # inflated DICOM elements allowed before the pixel data
TRAILER_LIMIT = 2**20  # inflated DICOM elements allowed after the pixel data
_INPUT_CHUNK = 2**16
_OUTPUT_CHUNK = 2**20
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})  # pixel data, float and double float pixel data
# decoded bytes per pixel for each Pillow mode (others: 4, the most any mode takes)
_PIL_MODE_BYTES = {
    "1": 1,
    "L": 1,
    "P": 1,
    "LA": 2,
    "PA": 2,
    "La": 2,
    "I;16": 2,
    "I;16B": 2,
    "I;16L": 2,
    "RGB": 3,
    "YCbCr": 3,
    "LAB": 3,
    "HSV": 3,
}


def decoded_budget(max_pixels: int) -> int:
    """The most bytes of decoded pixels one image may take."""
    return DECODED_BYTES_PER_PIXEL * max_pixels


def _budget_text(max_pixels: int) -> str:
    return (
        f"the decoding budget of {decoded_budget(max_pixels):,} bytes (one {max_pixels:,}-pixel frame at "
        f"up to {DECODED_BYTES_PER_PIXEL} bytes per pixel)"
    )


def check_pil_header(name: str, kind: str, image, max_pixels: int) -> None:
    """Refuses a PNG / JPEG whose header declares more decoded bytes than the budget (before image.load())."""
    per_pixel = _PIL_MODE_BYTES.get(image.mode, 4)
    size = image.width * image.height * per_pixel
    if size > decoded_budget(max_pixels):
        raise ImageTooLargeError(
            f"{name}: the {kind.upper()} header declares {image.width} x {image.height} pixels in mode {image.mode} "
            f"= {size:,} bytes decoded, more than {_budget_text(max_pixels)}"
        )


def readable_dicom(data: bytes, name: str, max_pixels: int) -> bytes:
    """`data` as a DICOM pydicom can read without inflating: the same bytes, or for a deflated data set an
    equivalent Explicit VR Little Endian file inflated under the budget. Raises ImageTooLargeError when the
    header declares (or the stream inflates to) more than the budget, CorruptImageError on a damaged meta."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_command_set_elements, _read_file_meta_info, read_preamble
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    fp = DicomBytesIO(data)
    try:  # the very calls pydicom's dcmread makes, so both agree on where the data set starts and how
        read_preamble(fp, False)  # type: ignore[arg-type]  # pydicom hints BinaryIO; DicomBytesIO reads the same
        meta = _read_file_meta_info(fp)  # type: ignore[arg-type]  # pydicom hints BinaryIO; DicomBytesIO reads the same
        command_start = fp.tell()
        _read_command_set_elements(fp)  # type: ignore[arg-type]  # pydicom hints BinaryIO; DicomBytesIO reads the same
        syntax = meta.get("TransferSyntaxUID")
    except Exception as error:  # noqa: BLE001 - pydicom raises many types on a damaged header
        raise CorruptImageError(
            f"{name}: the DICOM header cannot be parsed ({type(error).__name__}: {error})"
        ) from None
    if syntax != DeflatedExplicitVRLittleEndian:
        check_dicom_header(_plain_header(data), name, max_pixels)
        return data
    return _inflated_dicom(data, name, max_pixels, meta, command_start, fp.tell())


def _plain_header(data: bytes):
    """The data set up to its pixel data (pydicom reads no pixel bytes), or None when it cannot be read
    (the decoder then reports why, in its own words)."""
    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception:  # noqa: BLE001
        return None


def _int(ds, keyword: str, default: int) -> int | None:
    """An attribute as a whole number, `default` when absent, None when it cannot be read as one."""
    from pydicom.multival import MultiValue

    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return default
        if isinstance(value, (list, tuple, MultiValue)):
            value = value[0]
        number = float(value)
        return int(number) if number.is_integer() else None
    except Exception:  # noqa: BLE001 - a damaged element; the decoder reports it
        return None


def declared_pixel_bytes(ds) -> int | None:
    """rows x columns x frames x samples x bytes per sample, as decoded; None when unreadable."""
    values = [
        _int(ds, "Rows", 0),
        _int(ds, "Columns", 0),
        _int(ds, "NumberOfFrames", 1),
        _int(ds, "SamplesPerPixel", 1),
        _int(ds, "BitsAllocated", 16),
    ]
    known = [v for v in values if v is not None]
    if len(known) != len(values):
        return None
    rows, columns, frames, samples, bits = (max(v, 0) for v in known)
    if 0x7FE00008 in ds or 0x7FE00009 in ds:  # float / double float pixel data
        bits = max(bits, 32)
    return rows * columns * max(frames, 1) * max(samples, 1) * max(1, (bits + 7) // 8)


def check_dicom_header(ds, name: str, max_pixels: int) -> None:
    """Refuses a DICOM whose header declares more pixels per frame than max_pixels, or more decoded bytes
    in all frames than the budget. `ds` None (unreadable header): nothing to check here."""
    if ds is None:
        return
    rows, columns = _int(ds, "Rows", 0) or 0, _int(ds, "Columns", 0) or 0
    if rows * columns > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {columns} x {rows} = {rows * columns:,} pixels is more than the limit of {max_pixels:,}"
        )
    size = declared_pixel_bytes(ds)
    if size is not None and size > decoded_budget(max_pixels):
        frames, samples, bits = (
            _int(ds, k, d) for k, d in (("NumberOfFrames", 1), ("SamplesPerPixel", 1), ("BitsAllocated", 16))
        )
        raise ImageTooLargeError(
            f"{name}: the DICOM header declares {columns} x {rows} pixels x {frames} frame(s) x {samples} sample(s) "
            f"x {bits} bits = {size:,} bytes of pixel data, more than {_budget_text(max_pixels)}"
        )


def check_encapsulated_frame(ds, name: str) -> None:
    """Refuses a compressed (JPEG, JPEG 2000) first frame whose own header states other dimensions than the
    DICOM's Rows x Columns: the codec decodes what the codestream says, so a 16 x 16 DICOM could otherwise
    make Pillow decode a 9000 x 9000 frame. Reads the codestream's header only."""
    from PIL import Image
    from pydicom.encaps import generate_frames
    from pydicom.uid import RLELossless

    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_encapsulated or syntax == RLELossless or "PixelData" not in ds:
        return  # native pixels and RLE are sized by the header, which check_dicom_header checked
    rows, columns, frames = _int(ds, "Rows", 0), _int(ds, "Columns", 0), _int(ds, "NumberOfFrames", 1)
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=max(frames or 1, 1)), b"")
        with Image.open(io.BytesIO(frame)) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 - not a codestream Pillow reads headers of: the decoder reports it
        return
    if (width, height) != (columns, rows):
        raise CorruptImageError(
            f"{name}: the compressed frame is {width} x {height} pixels but the DICOM header says "
            f"{columns} x {rows}; the pixel data does not belong to this header"
        )


def _inflated_dicom(data: bytes, name: str, max_pixels: int, meta, command_start: int, start: int) -> bytes:
    """Inflates a deflated data set under the budget into an equivalent Explicit VR Little Endian file."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    stream = CappedInflater(memoryview(data)[start:])
    stream.fill(HEADER_LIMIT)
    prefix = stream.joined()
    found: list[int] = []

    def at_pixels(tag, vr, length) -> bool:
        if tag in _PIXEL_TAGS:
            found.append(tag)
            return True
        return False

    header_fp = DicomBytesIO(prefix)
    try:
        header = read_dataset(
            header_fp,  # type: ignore[arg-type]  # pydicom hints BinaryIO; DicomBytesIO reads the same
            is_implicit_VR=False,
            is_little_endian=True,
            stop_when=at_pixels,
        )
    except Exception:  # noqa: BLE001 - a damaged data set: the decoder reports it, if it fits
        header = None
    if found:
        check_dicom_header(header, name, max_pixels)
        declared = declared_pixel_bytes(header)
        pixels = decoded_budget(max_pixels) if declared is None else declared
        cap = header_fp.tell() + 12 + pixels + TRAILER_LIMIT
    elif stream.finished:
        cap = HEADER_LIMIT  # no pixel data: the whole data set is in the prefix
    else:
        raise ImageTooLargeError(
            f"{name}: the deflated DICOM holds more than {HEADER_LIMIT:,} bytes of elements "
            "before its pixel data; accepted: an image DICOM whose header is smaller"
        )
    stream.fill(cap + 1)
    if stream.size > cap:
        raise ImageTooLargeError(
            f"{name}: the deflated DICOM data set inflates to more than {cap:,} bytes, more than "
            f"its header declares (within {_budget_text(max_pixels)})"
        )
    meta = meta.__class__(meta)  # a copy: the caller's parse stays as it was
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if "FileMetaInformationGroupLength" in meta:
        del meta.FileMetaInformationGroupLength
    head = DicomBytesIO()
    head.write(bytes(data[:128]) + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=False)
    head.write(bytes(data[command_start:start]))
    return stream.joined(head.getvalue())


class CappedInflater:
    """A raw-deflate stream inflated on demand, a bounded piece at a time (zlib max_length), so no more
    than asked for is ever in memory."""

    def __init__(self, data: memoryview):
        self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        self._data, self._position, self._tail, self._more = data, 0, b"", False
        self.chunks: list[bytes] = []
        self.size = 0
        self.finished = False

    def fill(self, upto: int) -> None:
        """Inflates until `upto` bytes are out or the stream ends (or its input does)."""
        while self.size < upto and not self.finished:
            feed: bytes | memoryview
            if self._tail:
                feed = self._tail
            elif self._more:
                feed = b""
            elif self._position < len(self._data):
                feed = self._data[self._position : self._position + _INPUT_CHUNK]
                self._position += len(feed)
            else:
                self.finished = True  # input ends without the stream's end: the decoder reports truncation
                break
            wanted = min(_OUTPUT_CHUNK, upto - self.size)
            out = self._inflate.decompress(feed, wanted)
            self._tail, self._more = self._inflate.unconsumed_tail, len(out) == wanted
            if out:
                self.chunks.append(out)
                self.size += len(out)
            self.finished = self._inflate.eof

    def joined(self, head: bytes = b"") -> bytes:
        """`head` then everything inflated so far, as one bytes object."""
        return b"".join([head, *self.chunks])
