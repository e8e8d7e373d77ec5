"""Reading ``.gfix`` files: :class:`GFixReader`.

Opening a file checks its header (CRC included) and walks the section heads,
seeking over payloads, to check the file's structure; payloads are read, and
their CRCs checked, one section at a time when asked for.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from types import TracebackType

from gfix_sdk.bitstream.format import (
    CRC_SIZE,
    HEADER_SIZE,
    MAX_PAYLOAD,
    SECTION_HEAD_SIZE,
    SECTION_OVERHEAD,
    FrameFlag,
    SectionType,
    section_type_name,
)
from gfix_sdk.bitstream.header import StreamHeader, decode_header
from gfix_sdk.bitstream.sections import (
    SectionEntry,
    decode_index,
    decode_section_head,
    encode_section_head,
    registered_type,
)
from gfix_sdk.errors import GFixFormatError


_KEY_BIT = int(FrameFlag.KEY)  # a plain int: IntFlag arithmetic is slow per frame


class GFixReader:
    """An open ``.gfix`` file; use it as a context manager.

    The file stays open (and is read one section at a time) until
    :meth:`close` or the end of the ``with`` block.

    Example::

        with GFixReader("clip.gfix") as clip:
            info = clip.stream_info()
            for i in range(clip.header.frame_count):
                data, key = clip.frame_payload(i), clip.frame_is_key(i)

    Args:
        path: the file to open.

    Raises:
        FileNotFoundError: no such file (other OS errors pass through too).
        GFixFormatError: the file is not a valid ``.gfix`` file: wrong magic,
            unsupported major version, header CRC mismatch, a field or section
            length out of range, truncation, a section out of order or of an
            unknown mandatory type, a frame count that disagrees with the
            header, or an INDEX that disagrees with the sections. The message
            says what and at which byte.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._source = str(self._path)
        self._file = open(self._path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self._num_bytes = os.fstat(self._file.fileno()).st_size
            self._header, self._version = decode_header(
                self._file.read(HEADER_SIZE), source=self._source
            )
            self._sections = self._scan_sections()
            by_type = {t: [e for e in self._sections if e.type == t] for t in SectionType}
            self._stream_info_entry = by_type[SectionType.STREAM_INFO][0]
            self._enhancer_entry = next(iter(by_type[SectionType.ENHANCER]), None)
            self._metadata_entry = next(iter(by_type[SectionType.METADATA]), None)
            self._frames = by_type[SectionType.FRAME]
            index_entry = by_type[SectionType.INDEX][0]
            self._frame_keys = decode_index(
                self.read_section(index_entry), self._frames, source=self._source, entry=index_entry
            )
        except BaseException:
            self._file.close()
            raise

    @property
    def path(self) -> Path:
        return self._path

    @property
    def header(self) -> StreamHeader:
        """The file header (its ``frame_count`` equals the number of frames)."""
        return self._header

    @property
    def version(self) -> tuple[int, int]:
        """The file's format version ``(major, minor)``."""
        return self._version

    @property
    def num_bytes(self) -> int:
        """The file's size in bytes."""
        return self._num_bytes

    @property
    def sections(self) -> list[SectionEntry]:
        """Every section in file order, skipped optional ones included."""
        return list(self._sections)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def read_section(self, entry: SectionEntry) -> bytes:
        """Read one section's payload and check its CRC.

        Args:
            entry: one of :attr:`sections`.

        Raises:
            GFixFormatError: CRC mismatch, or the file changed since it was
                opened (the message names the section and its byte offset).
            ValueError: the reader is closed, or ``entry`` does not lie in
                this file.
        """
        self._check_open()
        if not isinstance(entry, SectionEntry) or entry.end > self._num_bytes:
            raise ValueError(f"{entry!r} is not a section of {self._source}")
        self._file.seek(entry.offset)
        head = self._file.read(SECTION_HEAD_SIZE)
        payload = self._file.read(entry.length)
        stored_bytes = self._file.read(CRC_SIZE)
        if len(head) + len(payload) + len(stored_bytes) != entry.end - entry.offset:
            raise self._error(entry, "truncated since the file was opened")
        if head != encode_section_head(entry.type, entry.flags, entry.length):
            raise self._error(entry, "section header changed since the file was opened")
        stored = int.from_bytes(stored_bytes, "little")
        computed = zlib.crc32(payload, zlib.crc32(head))
        if stored != computed:
            raise self._error(
                entry, f"CRC mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})"
            )
        return payload

    def stream_info(self) -> bytes:
        """The STREAM_INFO payload (CRC-checked)."""
        return self.read_section(self._stream_info_entry)

    def enhancer(self) -> bytes | None:
        """The ENHANCER payload (CRC-checked), or None when the file has none."""
        if self._enhancer_entry is None:
            return None
        return self.read_section(self._enhancer_entry)

    def metadata(self) -> dict:
        """The METADATA section's JSON object (CRC-checked), or ``{}`` when the file has none.

        Raises:
            GFixFormatError: the payload is not a UTF-8 JSON object.
        """
        if self._metadata_entry is None:
            return {}
        payload = self.read_section(self._metadata_entry)
        try:
            value = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise self._error(self._metadata_entry, f"not a UTF-8 JSON object: {exc}") from None
        if not isinstance(value, dict):
            raise self._error(self._metadata_entry, "not a JSON object")
        return value

    def frame_payload(self, index: int) -> bytes:
        """Frame ``index``'s coded bytes, without the container's flags byte.

        Raises:
            IndexError: ``index`` is not in ``0..frame_count - 1``.
            GFixFormatError: CRC mismatch, or the frame's KEY flag disagrees
                with the INDEX.
        """
        entry = self._frames[self._check_frame_index(index)]
        payload = self.read_section(entry)
        key = bool(payload[0] & _KEY_BIT)
        if key != self._frame_keys[index]:
            raise self._error(
                entry,
                f"KEY flag is {int(key)} in the frame but "
                f"{int(self._frame_keys[index])} in the INDEX",
            )
        return payload[1:]

    def frame_is_key(self, index: int) -> bool:
        """Whether frame ``index`` decodes without earlier frames (from the INDEX).

        Raises:
            IndexError: ``index`` is not in ``0..frame_count - 1``.
        """
        return self._frame_keys[self._check_frame_index(index)]

    def close(self) -> None:
        """Close the file. Reading afterwards raises ValueError."""
        self._file.close()

    def __enter__(self) -> GFixReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        h = self._header
        return (
            f"GFixReader({self._source!r}: {h.width}x{h.height}, {h.frame_count} frames "
            f"at {h.fps_num}/{h.fps_den} fps, {len(self._sections)} sections)"
        )

    def _check_open(self) -> None:
        if self._file.closed:
            raise ValueError(f"the GFixReader for {self._source} is closed")

    def _check_frame_index(self, index: int) -> int:
        count = len(self._frames)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise IndexError(f"frame index {index!r} is not in 0..{count - 1}")
        return index

    def _scan_sections(self) -> list[SectionEntry]:
        """Walk the section heads from the end of the header to the end of the
        file, checking lengths, order and multiplicity as it goes."""
        sections: list[SectionEntry] = []
        counts: dict[int, int] = {}
        offset = HEADER_SIZE
        while offset < self._num_bytes:
            left = self._num_bytes - offset
            if left < SECTION_OVERHEAD:
                raise GFixFormatError(
                    f"{self._source}: truncated or trailing bytes: {left} bytes at byte "
                    f"{offset} are too few for a section ({SECTION_OVERHEAD} bytes at least)"
                )
            self._file.seek(offset)
            type_code, flags, length = decode_section_head(
                self._file.read(SECTION_HEAD_SIZE), source=self._source, offset=offset
            )
            entry = SectionEntry(
                type=registered_type(type_code),
                flags=flags,
                offset=offset,
                length=length,
                number=counts.get(type_code, 0),
            )
            # Both limits are checked before anything of this size is read.
            if length > MAX_PAYLOAD:
                raise self._error(
                    entry, f"payload length {length} exceeds the maximum {MAX_PAYLOAD} (1 GiB)"
                )
            if SECTION_OVERHEAD + length > left:
                raise self._error(
                    entry,
                    f"truncated: the section needs {SECTION_OVERHEAD + length} bytes "
                    f"but the file has {left} left",
                )
            self._check_order(entry, sections)
            sections.append(entry)
            counts[type_code] = entry.number + 1
            offset = entry.end
        self._check_complete(sections, counts)
        return sections

    def _check_order(self, entry: SectionEntry, before: list[SectionEntry]) -> None:
        """Reject ``entry`` if it cannot follow the sections ``before`` it."""
        if not before and entry.type != SectionType.STREAM_INFO:
            raise self._error(entry, "the first section must be STREAM_INFO")
        if before and before[-1].type == SectionType.INDEX:
            raise self._error(entry, "follows the INDEX, which must be the last section")
        if not entry.known and not entry.optional:
            raise self._error(
                entry,
                f"unknown section {section_type_name(entry.type)} without the OPTIONAL "
                "flag; this reader cannot skip it",
            )
        if entry.type == SectionType.STREAM_INFO and entry.number > 0:
            raise self._error(entry, "a second STREAM_INFO section")
        if entry.type in (SectionType.ENHANCER, SectionType.METADATA) and entry.number > 0:
            raise self._error(entry, f"a second {section_type_name(entry.type)} section")
        if entry.type == SectionType.FRAME:
            if entry.number >= self._header.frame_count:
                raise self._error(
                    entry,
                    "more FRAME sections than the header's frame_count "
                    f"{self._header.frame_count}",
                )
            if entry.length < 1:
                raise self._error(entry, "empty payload, missing the frame flags byte")

    def _error(self, entry: SectionEntry, what: str) -> GFixFormatError:
        # Built only on failure: formatting a label per section slows the scan.
        return GFixFormatError(f"{self._source}: {entry.label}: {what}")

    def _check_complete(self, sections: list[SectionEntry], counts: dict[int, int]) -> None:
        """Checks that need the whole section list: nothing is missing."""
        end = f"{self._source}: at byte {self._num_bytes} (end of file)"
        if not sections:
            raise GFixFormatError(f"{end}: no sections; a STREAM_INFO section is required")
        frames = counts.get(SectionType.FRAME, 0)
        if frames != self._header.frame_count:
            raise GFixFormatError(
                f"{end}: the file holds {frames} FRAME sections but the header's "
                f"frame_count is {self._header.frame_count} (truncated?)"
            )
        if sections[-1].type != SectionType.INDEX:
            raise GFixFormatError(
                f"{end}: the last section must be the INDEX, found {sections[-1].label} "
                "(truncated?)"
            )
