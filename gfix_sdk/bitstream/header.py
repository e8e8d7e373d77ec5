"""The fixed 44-byte ``.gfix`` file header: :class:`StreamHeader` and its coding."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from gfix_sdk.bitstream.format import (
    DEFAULT_FULL_RANGE,
    DEFAULT_MATRIX,
    DEFAULT_PRIMARIES,
    DEFAULT_TRANSFER,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    HEADER_CRC_OFFSET,
    HEADER_FIELD_RANGES,
    HEADER_SIZE,
    MAGIC,
)
from gfix_sdk.coding.bytestream import ByteReader, ByteWriter
from gfix_sdk.errors import GFixFormatError

# Header fields after the version, in file order, with their byte sizes.
_FIELD_SIZES: tuple[tuple[str, int], ...] = (
    ("width", 4),
    ("height", 4),
    ("fps_num", 4),
    ("fps_den", 4),
    ("frame_count", 4),
    ("primaries", 1),
    ("transfer", 1),
    ("matrix", 1),
    ("full_range", 1),
)
_VERSION_OFFSET = len(MAGIC)
_FIELDS_OFFSET = _VERSION_OFFSET + 4


@dataclass(frozen=True)
class StreamHeader:
    """What the header of a ``.gfix`` file says about its video.

    Every field is checked on construction against the format's limits, so a
    writer cannot produce a header that a reader would reject.

    Attributes:
        width: frame width in pixels, 1..16384.
        height: frame height in pixels, 1..16384.
        fps_num: frame rate numerator, 1..10**6.
        fps_den: frame rate denominator, 1..10**6.
        frame_count: number of frames, 0..10**6.
        primaries: ISO/IEC 23091-2 ColourPrimaries code point (default 6).
        transfer: ISO/IEC 23091-2 TransferCharacteristics code point (default 6).
        matrix: ISO/IEC 23091-2 MatrixCoefficients code point (default 6).
        full_range: 1 for full-range samples, 0 for limited range (default).

    Raises:
        ValueError: a field is not an int or is out of range (the message
            names it).
    """

    width: int
    height: int
    fps_num: int
    fps_den: int
    frame_count: int
    primaries: int = DEFAULT_PRIMARIES
    transfer: int = DEFAULT_TRANSFER
    matrix: int = DEFAULT_MATRIX
    full_range: int = DEFAULT_FULL_RANGE

    def __post_init__(self) -> None:
        for name, (low, high) in HEADER_FIELD_RANGES.items():
            value = getattr(self, name)
            # bool is an int subclass, but True as a width is surely a mistake.
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"{name} must be in {low}..{high}, got {value}")

    @property
    def fps(self) -> float:
        """Frame rate in frames per second, ``fps_num / fps_den``."""
        return self.fps_num / self.fps_den


def encode_header(header: StreamHeader) -> bytes:
    """The 44 header bytes of a version 1.0 file (flags 0), CRC included."""
    writer = ByteWriter()
    writer.raw(MAGIC)
    writer.u16(FORMAT_MAJOR)
    writer.u16(FORMAT_MINOR)
    for name, size in _FIELD_SIZES:
        (writer.u32 if size == 4 else writer.u8)(getattr(header, name))
    writer.u32(0)  # flags: reserved in 1.0
    body = writer.getvalue()
    writer.u32(zlib.crc32(body))
    return writer.getvalue()


def decode_header(data: bytes, *, source: str) -> tuple[StreamHeader, tuple[int, int]]:
    """Parse and validate the header at the start of ``data``.

    Args:
        data: the file's first bytes (up to :data:`HEADER_SIZE`; fewer when
            the file is shorter).
        source: how error messages name the file (e.g. its path).

    Returns:
        The header and the file's ``(major, minor)`` version.

    Raises:
        GFixFormatError: wrong magic, unsupported major version, truncated
            header, CRC mismatch, reserved flags set in a 1.0 file, or a field
            out of range; the message gives the byte offset.
    """
    _check_magic(data, source)
    reader = ByteReader(data[:HEADER_SIZE], context=f"{source}: header")
    reader.raw(len(MAGIC), "magic")
    major = reader.u16("version_major")
    minor = reader.u16("version_minor")
    # A new major version may lay out everything else differently, CRC
    # included, so the version is judged before anything after it.
    if major != FORMAT_MAJOR:
        raise GFixFormatError(
            f"{source}: unsupported .gfix version {major}.{minor} "
            f"(this reader supports {FORMAT_MAJOR}.x)"
        )
    values: dict[str, int] = {}
    offsets: dict[str, int] = {}
    for name, size in _FIELD_SIZES:
        offsets[name] = reader.pos
        values[name] = reader.u32(name) if size == 4 else reader.u8(name)
    flags_offset = reader.pos
    flags = reader.u32("flags")
    stored_crc = reader.u32("header_crc")
    computed_crc = zlib.crc32(data[:HEADER_CRC_OFFSET])
    if stored_crc != computed_crc:
        raise GFixFormatError(
            f"{source}: header at byte 0: CRC mismatch "
            f"(stored 0x{stored_crc:08x}, computed 0x{computed_crc:08x})"
        )
    if minor == 0 and flags != 0:
        raise GFixFormatError(
            f"{source}: header flags 0x{flags:08x} at byte {flags_offset} must be 0 "
            f"in a version {major}.0 file"
        )
    for name, (low, high) in HEADER_FIELD_RANGES.items():
        if not low <= values[name] <= high:
            raise GFixFormatError(
                f"{source}: header field {name} = {values[name]} is outside "
                f"{low}..{high} (at byte {offsets[name]})"
            )
    return StreamHeader(**values), (major, minor)


def _check_magic(data: bytes, source: str) -> None:
    start = bytes(data[: len(MAGIC)])
    if start == MAGIC:
        return
    if not start:
        raise GFixFormatError(f"not a .gfix file: {source} is empty")
    if MAGIC.startswith(start):
        raise GFixFormatError(
            f"{source}: truncated: the file ends inside the magic, at byte {len(start)}"
        )
    hint = ""
    if start[1:4] == MAGIC[1:4]:
        hint = " (the magic looks damaged: a text-mode or 7-bit transfer?)"
    raise GFixFormatError(
        f"not a .gfix file: {source} starts with {start!r}, expected {MAGIC!r}{hint}"
    )
