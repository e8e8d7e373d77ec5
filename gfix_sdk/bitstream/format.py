"""The ``.gfix`` container format, version 1.1: constants and the specification.

This docstring is the normative description of the format; it is meant to be
enough to write an independent reader.

Conventions
===========

All integers are unsigned and little-endian. Offsets count bytes from the
start of the file. "CRC-32" is the checksum of ISO 3309 / ITU-T V.42 / PNG /
zlib (``zlib.crc32``): reflected polynomial ``0xEDB88320``, initial value and
final XOR ``0xFFFFFFFF``; ``crc32(b"123456789") == 0xCBF43926``.

A file is a fixed 44-byte header followed by sections up to the end of the
file. There is no padding anywhere.

Header (44 bytes)
=================

======  ====  ==================  ==========================================
offset  size  field               meaning
======  ====  ==================  ==========================================
0       8     magic               ``89 47 46 58 0D 0A 1A 0A`` (``b"\\x89GFX\\r\\n\\x1a\\n"``)
8       2     version_major       1
10      2     version_minor       0
12      4     width               luma width in pixels, 1..16384
16      4     height              luma height in pixels, 1..16384
20      4     fps_num             frame rate numerator, 1..1000000
24      4     fps_den             frame rate denominator, 1..1000000
28      4     frame_count         number of FRAME sections, 0..1000000
32      1     primaries           ISO/IEC 23091-2 ColourPrimaries
33      1     transfer            ISO/IEC 23091-2 TransferCharacteristics
34      1     matrix              ISO/IEC 23091-2 MatrixCoefficients
35      1     full_range          VideoFullRangeFlag: 0 (limited) or 1 (full)
36      4     flags               reserved (see "Versions")
40      4     header_crc          CRC-32 of bytes 0..39
======  ====  ==================  ==========================================

The magic works like PNG's: the high-bit first byte catches 7-bit transfers,
``\\r\\n`` and ``\\n`` catch line-ending conversion in either direction, and
``\\x1a`` stops ``type`` on DOS. The frame rate is ``fps_num / fps_den``
frames per second. The colour description is that of the source video; for
RGB frames decoded from BT.601 sources it is 6, 6, 6, 0 (SMPTE 170M
primaries, transfer and matrix, limited range). Colour code points are not
restricted beyond fitting in a byte, since later editions of 23091-2 add new
ones; ``full_range`` must be 0 or 1.

Versions
========

A reader accepts every minor version of the major version it implements and
rejects any other major version (a new major may change everything after the
version fields, so a reader checks the version before the header CRC).

Minor versions only add things a 1.0 reader can safely ignore: new OPTIONAL
section types and meanings for bits of the header ``flags``. The header layout
is the same in every 1.x. ``flags`` must be 0 in a version 1.0 file (a
reader rejects anything else); a reader ignores ``flags`` when the file's
minor version differs from 0. The header CRC covers ``flags`` in every
version.

History: 1.0 first edition; 1.1 adds the OPTIONAL METADATA section (type 5).

Sections
========

Each section is::

    offset       size    field
    0            2       type
    2            2       flags      bit 0 OPTIONAL; bits 1..15 reserved
    4            8       length     payload size in bytes, at most 2**30 (1 GiB)
    12           length  payload
    12 + length  4       crc        CRC-32 of bytes 0 .. 12 + length - 1
                                    (type, flags, length and payload)

so a section takes ``16 + length`` bytes and the next one starts right after
its CRC. Reserved section flag bits are written as 0 and ignored by readers.

A reader that meets a type it does not know skips the section when OPTIONAL
is set and rejects the file otherwise. A reader ignores OPTIONAL on the types
it knows.

Section types:

==========  ============  =====================================================
type        name          contents
==========  ============  =====================================================
0           (reserved)    never written; catches zero-filled data
1           STREAM_INFO   codec parameters for the whole stream (opaque bytes
                          to the container)
2           FRAME         one coded frame: ``frame_flags u8`` then the codec's
                          frame data (opaque bytes to the container)
3           ENHANCER      the enhancer's adapter (opaque bytes to the container)
4           INDEX         seek table and end-of-file marker (below)
5           METADATA      informational notes of the encoder (since 1.1): a
                          UTF-8 JSON object; a decoder needs none of it
6..0x7FFF   (reserved)    for later versions of this specification
0x8000..    experiments   private use; follow the OPTIONAL rule above
==========  ============  =====================================================

``frame_flags``: bit 0 KEY (the frame decodes without any earlier frame);
bits 1..7 reserved, written as 0, ignored by readers.

INDEX payload: ``count u32`` (equal to ``frame_count``), then ``count``
entries of 9 bytes each: ``offset u64``, the byte offset of that FRAME
section's ``type`` field, and ``flags u8``, a copy of that frame's
``frame_flags``. The payload is exactly ``4 + 9 * count`` bytes.

Order and multiplicity (a reader rejects a file that breaks any of these):

1. STREAM_INFO: exactly one, the first section.
2. FRAME: exactly ``frame_count``, in presentation order (frame *i* is the
   *i*-th FRAME section, counting from 0); each payload holds at least the
   ``frame_flags`` byte.
3. ENHANCER: at most one, anywhere between STREAM_INFO and INDEX. Writers set
   OPTIONAL so that readers without an enhancer can skip it.
4. METADATA: at most one, anywhere between STREAM_INFO and INDEX. Writers
   set OPTIONAL. Known keys: ``"enhancer"``, an object saying whether the
   encoder kept the enhancer adapter (``"kept"``, boolean) and why
   (``"reason"``, text), with the scores it decided on.
5. INDEX: exactly one, the last section; its entries must name the FRAME
   sections' actual offsets and agree with their KEY bits. Writers set
   OPTIONAL. It is required because it is the end-of-file marker: without it
   a file cut exactly between two sections would look complete.
6. Other types: anywhere between STREAM_INFO and INDEX.

Limits
======

A reader checks these before allocating anything they size:

* the header fields' ranges above;
* a section's ``length`` is at most 2**30 and ``16 + length`` does not exceed
  the bytes left in the file from the section's start;
* bytes left after a section are either none or a whole section (fewer than
  16 bytes left over is an error).

CRCs are independent: the header CRC is checked when the file is opened, a
section's when its payload is read.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

MAGIC = b"\x89GFX\r\n\x1a\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 1

HEADER_SIZE = 44
HEADER_CRC_OFFSET = 40  # the header CRC covers bytes [0, HEADER_CRC_OFFSET)
SECTION_HEAD_SIZE = 12  # type u16, flags u16, length u64
CRC_SIZE = 4
SECTION_OVERHEAD = SECTION_HEAD_SIZE + CRC_SIZE
INDEX_ENTRY_SIZE = 9  # offset u64, flags u8

MAX_DIMENSION = 16384
MAX_FPS_TERM = 1_000_000
MAX_FRAME_COUNT = 1_000_000
MAX_PAYLOAD = 1 << 30
MAX_SECTION_TYPE = 0xFFFF
FIRST_EXPERIMENTAL_TYPE = 0x8000

# Colour description of RGB frames decoded from BT.601 sources (SMPTE 170M).
DEFAULT_PRIMARIES = 6
DEFAULT_TRANSFER = 6
DEFAULT_MATRIX = 6
DEFAULT_FULL_RANGE = 0

# Allowed range of each header field, shared by StreamHeader (ValueError) and
# the reader (GFixFormatError) so that a writer cannot produce a file the
# reader rejects.
HEADER_FIELD_RANGES: dict[str, tuple[int, int]] = {
    "width": (1, MAX_DIMENSION),
    "height": (1, MAX_DIMENSION),
    "fps_num": (1, MAX_FPS_TERM),
    "fps_den": (1, MAX_FPS_TERM),
    "frame_count": (0, MAX_FRAME_COUNT),
    "primaries": (0, 0xFF),
    "transfer": (0, 0xFF),
    "matrix": (0, 0xFF),
    "full_range": (0, 1),
}


class SectionType(IntEnum):
    """Section types registered by version 1.1 (``type`` field of a section)."""

    STREAM_INFO = 1
    FRAME = 2
    ENHANCER = 3
    INDEX = 4
    METADATA = 5  #: since 1.1


class SectionFlag(IntFlag):
    """Bits of a section's ``flags`` field."""

    OPTIONAL = 1
    """A reader that does not know the section's type may skip it."""


class FrameFlag(IntFlag):
    """Bits of the ``frame_flags`` byte that starts every FRAME payload."""

    KEY = 1
    """The frame decodes without any earlier frame."""


def section_type_name(type_code: int) -> str:
    """``"FRAME"`` for a registered type, ``"type 0x8001"`` for any other."""
    try:
        return SectionType(type_code).name
    except ValueError:
        return f"type 0x{type_code:04x}"
