"""Structure-aware mutation of ``.gfix`` files and section payloads (for fuzzing).

Plain bit flips of a ``.gfix`` file stop at the first CRC. The
:class:`Mutator` here knows the container instead: it splits a valid file
into its header and sections, changes one thing (a payload byte, a header
field set to its limit, a section dropped, duplicated or moved) and
reassembles the file with every length, CRC and usually the INDEX
recomputed, so that the damage reaches the section parsers and the entropy
decoder -- what a buggy writer or a crafted file produces.

:class:`ByteMutator` damages a single payload (e.g. an ENHANCER's). The
driver that decodes the cases is :mod:`gfix_sdk.runtime.fuzz`.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gfix_sdk.bitstream.format import (
    HEADER_CRC_OFFSET,
    HEADER_FIELD_RANGES,
    HEADER_SIZE,
    SECTION_HEAD_SIZE,
    SECTION_OVERHEAD,
    FrameFlag,
    SectionFlag,
    SectionType,
)
from gfix_sdk.bitstream.sections import encode_index, encode_section_head

# Header fields after magic and version: (name, struct code, byte offset).
_HEADER_FIELDS = (
    ("version_minor", "H", 10),
    ("width", "I", 12),
    ("height", "I", 16),
    ("fps_num", "I", 20),
    ("fps_den", "I", 24),
    ("frame_count", "I", 28),
    ("primaries", "B", 32),
    ("transfer", "B", 33),
    ("matrix", "B", 34),
    ("full_range", "B", 35),
    ("flags", "I", 36),
)
_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
# Multi-byte values that sit on the edges parsers check (lengths, counts, steps).
_INTERESTING_WORDS = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
                      0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)

@dataclass
class Section:
    """One section of a parsed container: the payload without head and CRC."""

    type: int
    flags: int
    payload: bytes


@dataclass
class Container:
    """A ``.gfix`` file taken apart: 44 header bytes and its sections."""

    header: bytes
    sections: list[Section] = field(default_factory=list)

    @classmethod
    def parse(cls, data: bytes) -> Container:
        """Split a *valid* file (a fuzzing seed); raises ValueError otherwise."""
        if len(data) < HEADER_SIZE:
            raise ValueError("not a .gfix seed: shorter than its header")
        sections, offset = [], HEADER_SIZE
        while offset < len(data):
            type_code, flags, length = struct.unpack_from("<HHQ", data, offset)
            start = offset + SECTION_HEAD_SIZE
            if start + length + 4 > len(data):
                raise ValueError(f"not a .gfix seed: section at byte {offset} is truncated")
            sections.append(Section(type_code, flags, bytes(data[start:start + length])))
            offset = start + length + 4
        return cls(bytes(data[:HEADER_SIZE]), sections)

    def assemble(self, *, fix_index: bool = True, fix_frame_count: bool = True) -> bytes:
        """The file's bytes with every section's length and CRC recomputed;
        optionally the INDEX rebuilt from the FRAME sections and the header's
        frame count (and CRC) set to match them."""
        header = bytearray(self.header)
        sections = [Section(s.type, s.flags, s.payload) for s in self.sections]
        count = sum(s.type == SectionType.FRAME for s in sections)
        if fix_frame_count:
            struct.pack_into("<I", header, 28, count)
        struct.pack_into("<I", header, HEADER_CRC_OFFSET, zlib.crc32(header[:HEADER_CRC_OFFSET]))
        if fix_index:
            # Size the INDEX for the frames first: its size depends only on the
            # count, so filling in the offsets afterwards moves nothing.
            for s in sections:
                if s.type == SectionType.INDEX:
                    s.payload = encode_index([(0, 0)] * count)
            offset, entries = HEADER_SIZE, []
            for s in sections:
                if s.type == SectionType.FRAME:
                    entries.append((offset, s.payload[0] if s.payload else 0))
                offset += SECTION_OVERHEAD + len(s.payload)
            for s in sections:
                if s.type == SectionType.INDEX:
                    s.payload = encode_index(entries)
        return bytes(header) + b"".join(_section_bytes(s) for s in sections)

    def copy(self) -> Container:
        return Container(self.header, [Section(s.type, s.flags, s.payload) for s in self.sections])


def _section_bytes(section: Section) -> bytes:
    body = encode_section_head(section.type, section.flags, len(section.payload)) + section.payload
    return body + zlib.crc32(body).to_bytes(4, "little")


class ByteMutator:
    """Damages a byte string the way parsers find hardest: flipped bits, edge
    values of bytes, words and varints, insertions, deletions, truncation.

    Args:
        rng: the random source (shared with a :class:`Mutator`), or an int seed.
    """

    def __init__(self, rng: random.Random | int = 0) -> None:
        self.rng = rng if isinstance(rng, random.Random) else random.Random(rng)

    def mutate(self, data: bytes) -> tuple[bytes, str]:
        """A damaged copy of ``data`` and a description of the damage."""
        rng, buf = self.rng, bytearray(data)
        kind = rng.randrange(8)
        pos = rng.randrange(len(buf)) if buf else 0
        if not buf or kind == 0:
            blob = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            buf[pos:pos] = blob
            return bytes(buf), f"insert {len(blob)} bytes at {pos}"
        if kind == 1:
            bit = rng.randrange(8)
            buf[pos] ^= 1 << bit
            return bytes(buf), f"flip bit {bit} of byte {pos}"
        if kind == 2:
            buf[pos] = rng.choice(_INTERESTING_BYTES)
            return bytes(buf), f"byte {pos} = {buf[pos]:#x}"
        if kind == 3:
            size = rng.choice((2, 4, 8))
            value = rng.choice(_INTERESTING_WORDS) % (1 << (8 * size))
            buf[pos:pos + size] = value.to_bytes(size, "little")
            return bytes(buf), f"{size}-byte word {value:#x} at {pos}"
        if kind == 4:
            # A varint of an interesting size: counts and alphabet sizes are varints.
            value = rng.choice((0, 1, 2, 255, 1 << 16, 1 << 22, (1 << 22) + 1, 1 << 28, (1 << 63)))
            buf[pos:pos + 1] = _varint(value)
            return bytes(buf), f"varint {value} at {pos}"
        if kind == 5:
            end = rng.randint(pos, min(len(buf), pos + 16))
            del buf[pos:end]
            return bytes(buf), f"delete bytes {pos}..{end}"
        if kind == 6:
            return bytes(buf[:pos]), f"truncate at {pos}"
        for _ in range(rng.randint(2, 8)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        return bytes(buf), "random bytes"


class Mutator:
    """Produces damaged variants of seed files and payloads, reproducibly.

    Args:
        seeds: valid ``.gfix`` files (bytes) to start from.
        seed: the random seed; the same seed gives the same cases.
    """

    def __init__(self, seeds: Sequence[bytes], *, seed: int = 0) -> None:
        if not seeds:
            raise ValueError("Mutator needs at least one seed file")
        self._seeds = [Container.parse(s) for s in seeds]
        self.rng = random.Random(seed)
        self.bytes = ByteMutator(self.rng)
        self._ops: list[tuple[str, Callable[[Container], str]]] = [
            ("payload", self._mutate_payload),
            ("payload", self._mutate_payload),
            ("payload", self._mutate_payload),
            ("payload", self._mutate_payload),
            ("header", self._mutate_header),
            ("sections", self._mutate_sections),
            ("frame_flags", self._mutate_frame_flags),
        ]

    def __call__(self) -> tuple[bytes, str]:
        """One mutated file and a short description of what was changed."""
        container = self.rng.choice(self._seeds).copy()
        _, op = self.rng.choice(self._ops)
        what = op(container)
        # Mostly keep the INDEX and frame count consistent, so that the damage
        # gets past the container checks to the codec; sometimes not.
        fix_index = self.rng.random() < 0.9
        fix_count = self.rng.random() < 0.9
        return container.assemble(fix_index=fix_index, fix_frame_count=fix_count), what

    # ----------------------------------------------------------------- mutations
    def _mutate_payload(self, c: Container) -> str:
        at = self.rng.randrange(len(c.sections))
        section = c.sections[at]
        if section.type == SectionType.INDEX and self.rng.random() < 0.8:
            at = self.rng.randrange(len(c.sections))  # the INDEX is rebuilt anyway
            section = c.sections[at]
        same_type = [s.payload for s in c.sections if s.type == section.type and s is not section]
        if same_type and self.rng.random() < 0.1:
            donor = self.rng.choice(same_type)
            cut = self.rng.randrange(len(donor) + 1)
            mine = self.rng.randrange(len(section.payload) + 1)
            section.payload = section.payload[:mine] + donor[cut:]
            return f"splice {_name(section.type)} #{at}"
        section.payload, what = self.bytes.mutate(section.payload)
        return f"{_name(section.type)} #{at}: {what}"

    def _mutate_header(self, c: Container) -> str:
        name, code, offset = self.rng.choice(_HEADER_FIELDS)
        low, high = HEADER_FIELD_RANGES.get(name, (0, 0))
        size = struct.calcsize(code)
        top = (1 << (8 * size)) - 1
        value = self.rng.choice(sorted({low, high, max(low - 1, 0), min(high + 1, top), top, 1}))
        header = bytearray(c.header)
        struct.pack_into("<" + code, header, offset, value)
        c.header = bytes(header)
        return f"header {name} = {value}"

    def _mutate_sections(self, c: Container) -> str:
        rng, n = self.rng, len(c.sections)
        kind = rng.randrange(5)
        i, j = rng.randrange(n), rng.randrange(n)
        if kind == 0:
            c.sections[i], c.sections[j] = c.sections[j], c.sections[i]
            return f"swap sections {i} and {j}"
        if kind == 1:
            c.sections.insert(j, Section(c.sections[i].type, c.sections[i].flags, c.sections[i].payload))
            return f"duplicate section {i} at {j}"
        if kind == 2 and n > 1:
            del c.sections[i]
            return f"drop section {i}"
        if kind == 3:
            c.sections[i].flags ^= int(SectionFlag.OPTIONAL)
            return f"toggle OPTIONAL of section {i}"
        type_code = rng.choice((0, 6, 0x7FFF, 0x8000, 0xFFFF, int(SectionType.ENHANCER),
                                int(SectionType.METADATA)))
        payload = bytes(rng.randrange(256) for _ in range(rng.randint(0, 24)))
        c.sections.insert(j, Section(type_code, rng.choice((0, 1)), payload))
        return f"insert section type {type_code:#x} at {j}"

    def _mutate_frame_flags(self, c: Container) -> str:
        frames = [s for s in c.sections if s.type == SectionType.FRAME and s.payload]
        if not frames:
            return self._mutate_payload(c)
        frame = self.rng.choice(frames)
        flag = self.rng.choice((int(FrameFlag.KEY), 0x80, 0xFE))
        frame.payload = bytes([frame.payload[0] ^ flag]) + frame.payload[1:]
        return f"frame flags ^= {flag:#x}"


def _name(type_code: int) -> str:
    try:
        return SectionType(type_code).name
    except ValueError:
        return f"type {type_code:#x}"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
