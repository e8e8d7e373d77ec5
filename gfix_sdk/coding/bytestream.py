"""Little-endian byte writer/reader with bounds-checked reads.

Every read checks that the bytes exist before touching them and raises
:class:`~gfix_sdk.errors.GFixFormatError` naming the field and the offset, so
that a truncated or corrupted stream fails with a clear message instead of an
IndexError, a wild allocation or a silent misread.
"""

from __future__ import annotations

import struct

import numpy as np

from gfix_sdk.errors import GFixFormatError

MAX_VARINT_BYTES = 10  # enough for any 64-bit value


def zigzag(value: int) -> int:
    """Map signed to unsigned: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    return (value << 1) if value >= 0 else ((-value << 1) - 1)


def unzigzag(value: int) -> int:
    return (value >> 1) if value % 2 == 0 else -((value + 1) >> 1)


class ByteWriter:
    """Accumulates a byte string."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> None:
        self._parts.append(struct.pack("<B", value))

    def u16(self, value: int) -> None:
        self._parts.append(struct.pack("<H", value))

    def u32(self, value: int) -> None:
        self._parts.append(struct.pack("<I", value))

    def u64(self, value: int) -> None:
        self._parts.append(struct.pack("<Q", value))

    def f32(self, value: float) -> None:
        self._parts.append(struct.pack("<f", value))

    def f64(self, value: float) -> None:
        self._parts.append(struct.pack("<d", value))

    def varint(self, value: int) -> None:
        """Unsigned LEB128."""
        if value < 0:
            raise ValueError(f"varint must be non-negative, got {value}")
        out = bytearray()
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                out.append(byte | 0x80)
            else:
                out.append(byte)
                break
        self._parts.append(bytes(out))

    def svarint(self, value: int) -> None:
        """Signed varint (zig-zag + LEB128)."""
        self.varint(zigzag(value))

    def raw(self, data: bytes) -> None:
        self._parts.append(bytes(data))

    def blob(self, data: bytes) -> None:
        """Length-prefixed bytes."""
        self.varint(len(data))
        self.raw(data)

    def u32_array(self, words: np.ndarray) -> None:
        """Count-prefixed little-endian uint32 array."""
        self.varint(len(words))
        self.raw(np.asarray(words, dtype="<u4").tobytes())

    def getvalue(self) -> bytes:
        return b"".join(self._parts)

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts)


class ByteReader:
    """Reads a byte string front to back; ``context`` prefixes error messages."""

    def __init__(self, data: bytes | memoryview, *, context: str = "stream", offset: int = 0) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._context = context
        self._base = offset  # absolute offset of data[0] in the file, for messages

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    @property
    def buffer(self) -> memoryview:
        """All the bytes read from (positions as in :attr:`pos`), for native readers."""
        return self._data

    def skip(self, size: int, field: str = "bytes") -> None:
        """Move past ``size`` bytes (read by someone else, e.g. a native reader)."""
        self._take(size, field)

    def error(self, what: str) -> GFixFormatError:
        return GFixFormatError(f"{self._context}: {what} (at byte {self._base + self._pos})")

    def _take(self, size: int, field: str) -> memoryview:
        if size < 0 or size > self.remaining:
            raise self.error(f"truncated: {field} needs {size} bytes, {self.remaining} left")
        view = self._data[self._pos : self._pos + size]
        self._pos += size
        return view

    def u8(self, field: str = "u8") -> int:
        return self._take(1, field)[0]

    def u16(self, field: str = "u16") -> int:
        return struct.unpack("<H", self._take(2, field))[0]

    def u32(self, field: str = "u32") -> int:
        return struct.unpack("<I", self._take(4, field))[0]

    def u64(self, field: str = "u64") -> int:
        return struct.unpack("<Q", self._take(8, field))[0]

    def f32(self, field: str = "f32") -> float:
        return struct.unpack("<f", self._take(4, field))[0]

    def f64(self, field: str = "f64") -> float:
        return struct.unpack("<d", self._take(8, field))[0]

    def varint(self, field: str = "varint", *, maximum: int | None = None) -> int:
        value = shift = 0
        for _ in range(MAX_VARINT_BYTES):
            byte = self._take(1, field)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if maximum is not None and value > maximum:
                    raise self.error(f"{field} = {value} exceeds the maximum {maximum}")
                return value
            shift += 7
        raise self.error(f"{field}: varint longer than {MAX_VARINT_BYTES} bytes")

    def svarint(self, field: str = "svarint", *, bound: int | None = None) -> int:
        value = unzigzag(self.varint(field))
        if bound is not None and abs(value) > bound:
            raise self.error(f"{field} = {value} outside +-{bound}")
        return value

    def raw(self, size: int, field: str = "bytes") -> bytes:
        return bytes(self._take(size, field))

    def blob(self, field: str = "blob") -> bytes:
        size = self.varint(f"{field} length", maximum=self.remaining)
        return self.raw(size, field)

    def u32_array(self, field: str = "words") -> np.ndarray:
        count = self.varint(f"{field} count", maximum=self.remaining // 4)
        return np.frombuffer(self._take(4 * count, field), dtype="<u4").astype(np.uint32)

    def expect_end(self) -> None:
        if self.remaining:
            raise self.error(f"{self.remaining} unexpected trailing bytes")
