"""Section framing shared by the writer and the reader: the 12-byte section
head, :class:`SectionEntry` (where a section lies in a file) and the INDEX
payload."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gfix_sdk.bitstream.format import (
    INDEX_ENTRY_SIZE,
    SECTION_HEAD_SIZE,
    SECTION_OVERHEAD,
    FrameFlag,
    SectionFlag,
    SectionType,
    section_type_name,
)
from gfix_sdk.coding.bytestream import ByteReader, ByteWriter
from gfix_sdk.errors import GFixFormatError

_INDEX_ENTRY = struct.Struct("<QB")  # offset u64, frame flags u8
_KEY_BIT = int(FrameFlag.KEY)  # plain ints: enum arithmetic is slow per section
_REGISTERED_TYPES = {int(member): member for member in SectionType}


@dataclass(frozen=True)
class SectionEntry:
    """One section of an open ``.gfix`` file, as found by scanning it.

    Attributes:
        type: the section's type code; a :class:`SectionType` member when the
            type is registered, a plain int otherwise.
        flags: the section's ``flags`` field (see :class:`SectionFlag`).
        offset: byte offset of the section's first byte (its ``type`` field).
        length: payload size in bytes.
        number: how many sections of the same type come before this one, so
            ``FRAME #3`` is frame 3 (counting from 0).
    """

    type: int
    flags: int
    offset: int
    length: int
    number: int

    @property
    def optional(self) -> bool:
        """Whether a reader that does not know the type may skip the section."""
        return bool(self.flags & SectionFlag.OPTIONAL)

    @property
    def known(self) -> bool:
        """Whether the type is registered by this version of the format."""
        return isinstance(self.type, SectionType)

    @property
    def payload_offset(self) -> int:
        return self.offset + SECTION_HEAD_SIZE

    @property
    def end(self) -> int:
        """Byte offset just past the section's CRC: where the next one starts."""
        return self.offset + SECTION_OVERHEAD + self.length

    @property
    def label(self) -> str:
        """How error messages name the section, e.g. ``"section FRAME #3 at byte 120"``."""
        return f"section {section_type_name(self.type)} #{self.number} at byte {self.offset}"


def encode_section_head(type_code: int, flags: int, length: int) -> bytes:
    """The 12 bytes that open a section: type u16, flags u16, length u64."""
    writer = ByteWriter()
    writer.u16(type_code)
    writer.u16(flags)
    writer.u64(length)
    return writer.getvalue()


def decode_section_head(data: bytes, *, source: str, offset: int) -> tuple[int, int, int]:
    """Parse a section head read at ``offset``; return ``(type, flags, length)``.

    Raises:
        GFixFormatError: fewer than 12 bytes (the message names the offset).
    """
    reader = ByteReader(data, context=f"{source}: section header", offset=offset)
    type_code = reader.u16("type")
    flags = reader.u16("flags")
    length = reader.u64("length")
    return type_code, flags, length


def registered_type(type_code: int) -> int:
    """``type_code`` as a :class:`SectionType` when registered, else unchanged."""
    return _REGISTERED_TYPES.get(type_code, type_code)


def encode_index(frames: list[tuple[int, int]]) -> bytes:
    """INDEX payload for ``(section offset, frame flags)`` pairs, in frame order."""
    writer = ByteWriter()
    writer.u32(len(frames))
    writer.raw(b"".join(_INDEX_ENTRY.pack(offset, flags) for offset, flags in frames))
    return writer.getvalue()


def decode_index(
    payload: bytes, frames: list[SectionEntry], *, source: str, entry: SectionEntry
) -> list[bool]:
    """Check an INDEX payload against the FRAME sections found by scanning the
    file and return each frame's KEY bit.

    Raises:
        GFixFormatError: wrong count or size, or an entry that does not point
            at its FRAME section.
    """
    where = f"{source}: {entry.label}"
    reader = ByteReader(payload, context=where, offset=entry.payload_offset)
    count = reader.u32("count")
    if count != len(frames):
        raise GFixFormatError(f"{where}: lists {count} frames but the file holds {len(frames)}")
    expected = 4 + INDEX_ENTRY_SIZE * count
    if len(payload) != expected:
        raise GFixFormatError(
            f"{where}: payload is {len(payload)} bytes, expected {expected} for {count} frames"
        )
    keys: list[bool] = []
    table = reader.raw(reader.remaining)
    for number, (offset, flags) in enumerate(_INDEX_ENTRY.iter_unpack(table)):
        if offset != frames[number].offset:
            raise GFixFormatError(
                f"{where}: entry {number} points at byte {offset}, but "
                f"{frames[number].label}"
            )
        keys.append(bool(flags & _KEY_BIT))
    return keys
